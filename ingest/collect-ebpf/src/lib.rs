//! Empty host-side library: lets the collector's build script depend on this crate so cargo rebuilds the
//! eBPF object when it changes. The programs are in `main.rs`, built for `bpfel-unknown-none`.
#![no_std]
