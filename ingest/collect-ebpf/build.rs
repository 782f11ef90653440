//! Rebuild when bpf-linker changes (a new nightly means a new bpf-linker; see scripts/toolchain.sh).
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
