//! The cost of one syscall the collector does not hook (getppid), in nanoseconds: run with and without the
//! collector loaded, it shows what attaching syscall tracepoints costs every syscall on the node (the kernel then
//! sends each one through its tracing path, hooked or not).
//!
//!   syscall-cost [CALLS]      (default 5 000 000)

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let calls: u64 = std::env::args().nth(1).map(|text| text.parse()).transpose()?.unwrap_or(5_000_000);
    anyhow::ensure!(calls > 0, "usage: syscall-cost [CALLS]");
    let start = Instant::now();
    for _ in 0..calls {
        // SAFETY: getppid has no preconditions; called through syscall(2) so libc cannot cache it.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    println!("{:.1}", start.elapsed().as_nanos() as f64 / calls as f64);
    Ok(())
}
