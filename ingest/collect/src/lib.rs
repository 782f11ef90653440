//! `palisade collect`: loads the eBPF programs into the node's kernel, turns ring-buffer records into
//! `NodeEvent`s with container attribution and process ancestry, and hands them to the pipeline through a
//! bounded channel (a full channel drops with a counter, never blocks the kernel reader).

mod btf;
pub mod cgroup;
mod collector;
pub mod cri;
pub mod loader;
mod paths;
pub mod process_table;
mod records;
mod syscalls;
pub mod task;
mod watched_files;

/// Entry points for the fuzz targets (`fuzz/`): the parsers of bytes from the kernel and the CRI runtime.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes a ring-buffer record as the collector does.
    pub fn ring_record(bytes: &[u8]) {
        let _ = crate::records::decode(bytes);
    }

    /// Reads a gRPC ContainerStatus answer as the CRI client does.
    pub fn cri_answer(bytes: &[u8]) {
        crate::cri::decode_answer(bytes);
    }
}

pub use collector::{CollectConfig, CollectError, Collector, CollectorStats};
