#!/usr/bin/env bash
# Installs the pinned toolchains Palisade builds with: the host Rust (rust-toolchain.toml), the dated nightly
# with rust-src for the eBPF side, and bpf-linker linked against that nightly's own libLLVM (see
# ../shared/notes/ebpf-on-these-machines.md). Idempotent; tools are cached in $PALISADE_CACHE/tools.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
HOST_TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$here/rust-toolchain.toml")
BPF_TOOLCHAIN=${BPF_TOOLCHAIN:-nightly-2026-05-20}
BPF_LINKER_VERSION=0.13.0
CARGO_FUZZ_VERSION=0.13.2
CACHE=${PALISADE_CACHE:-$HOME/.cache/palisade}
TOOLS=$CACHE/tools
mkdir -p "$TOOLS/bin"

command -v cc >/dev/null || { apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev; }
# rdkafka's bundled librdkafka builds with cmake; its CMake build includes curl.h whenever it finds OpenSSL.
missing=""
for package in cmake pkg-config libssl-dev libcurl4-openssl-dev; do
  dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
  apt-get update -q && apt-get install -y -q --no-install-recommends $missing
fi

# Never `rustup update`: it would move the nightly to another LLVM and break bpf-linker.
rustup run "$HOST_TOOLCHAIN" rustc -V >/dev/null 2>&1 ||
  rustup toolchain install "$HOST_TOOLCHAIN" --profile minimal --component rustfmt,clippy --no-self-update
rustup component add rustfmt clippy --toolchain "$HOST_TOOLCHAIN" >/dev/null 2>&1 || true
if rustup run "$BPF_TOOLCHAIN" rustc -V >/dev/null 2>&1; then
  rustup component add rust-src --toolchain "$BPF_TOOLCHAIN" >/dev/null
else
  rustup toolchain install "$BPF_TOOLCHAIN" --profile minimal --component rust-src --no-self-update
fi

sysroot=$(rustup run "$BPF_TOOLCHAIN" rustc --print sysroot)
llvm_major=$(rustup run "$BPF_TOOLCHAIN" rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
libllvm=$(ls "$sysroot"/lib/libLLVM.so.* | head -n1)
llvm_prefix="$TOOLS/llvm/$(basename "$sysroot")"
mkdir -p "$llvm_prefix/lib"
ln -sfn "$libllvm" "$llvm_prefix/lib/libLLVM.so"
ln -sfn "$libllvm" "$llvm_prefix/lib/$(basename "$libllvm")"
if ! { [ -x "$TOOLS/bin/bpf-linker" ] && "$TOOLS/bin/bpf-linker" --version | grep -q "$BPF_LINKER_VERSION" &&
       ldd "$TOOLS/bin/bpf-linker" | grep -q "$(basename "$libllvm") => $llvm_prefix"; }; then
  LLVM_PREFIX="$llvm_prefix" cargo +"$HOST_TOOLCHAIN" install bpf-linker --version "$BPF_LINKER_VERSION" --locked \
    --force --no-default-features --features "llvm-$llvm_major" --root "$TOOLS"
fi
# cargo-fuzz drives the fuzz targets (scripts/fuzz) with the same pinned nightly; the image build has no use for it.
if [ "${1:-}" != --no-fuzz ] && ! { [ -x "$TOOLS/bin/cargo-fuzz" ] && "$TOOLS/bin/cargo-fuzz" --version | grep -q "$CARGO_FUZZ_VERSION"; }; then
  cargo +"$HOST_TOOLCHAIN" install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --force --root "$TOOLS"
fi
echo "host=$HOST_TOOLCHAIN bpf=$BPF_TOOLCHAIN bpf-linker=$("$TOOLS/bin/bpf-linker" --version)" \
  "cargo-fuzz=$("$TOOLS/bin/cargo-fuzz" --version 2>/dev/null || echo none)"
