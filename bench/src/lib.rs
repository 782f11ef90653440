//! Benchmarks live in `benches/`; run them with `cargo bench -p palisade-bench`. The load generators and memory
//! figures in `src/bin/` share the counting allocator below.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting the bytes held. A binary that measures memory installs it:
/// `#[global_allocator] static ALLOCATOR: palisade_bench::Counting = palisade_bench::Counting;`
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Bytes held through `Counting` now.
pub fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}
