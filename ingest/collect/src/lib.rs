//! `palisade collect`: loads the eBPF programs into the node's kernel, turns ring-buffer records into
//! `NodeEvent`s with container attribution and process ancestry, and hands them to the pipeline through a
//! bounded channel (a full channel drops with a counter, never blocks the kernel reader).

mod btf;
pub mod cgroup;
mod collector;
pub mod cri;
pub mod loader;
pub mod process_table;
mod records;
mod syscalls;
pub mod task;

pub use collector::{CollectConfig, CollectError, Collector, CollectorStats};
