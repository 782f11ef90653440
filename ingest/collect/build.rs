//! Builds the eBPF programs (ingest/collect-ebpf) with the pinned nightly and bpf-linker; the object is embedded
//! in the collector. `BPF_TOOLCHAIN` overrides the nightly (scripts/toolchain.sh installs it).
fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=BPF_TOOLCHAIN");
    let toolchain = std::env::var("BPF_TOOLCHAIN").unwrap_or_else(|_| "nightly-2026-05-20".to_owned());
    let package = aya_build::Package {
        name: "palisade-collect-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../collect-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(&toolchain))
}
