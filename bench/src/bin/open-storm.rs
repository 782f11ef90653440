//! A paced load for the collector: opens (and closes) a watched file at a fixed rate for a fixed time, from one
//! thread, and prints the rate it reached. Python's loop cost ~15 µs an open and shared the two cores with the
//! collector and Kafka; this costs the two syscalls, so a sustained 50k events/s can be offered at all.
//!
//!   open-storm RATE_PER_SECOND SECONDS [PATH]      (PATH defaults to /etc/passwd, a watched prefix)

use std::ffi::CString;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: open-storm RATE_PER_SECOND SECONDS [PATH]";
    let rate: u64 = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let seconds: u64 = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let path = CString::new(args.next().unwrap_or_else(|| "/etc/passwd".into()))?;
    anyhow::ensure!(rate > 0 && seconds > 0, "{usage}");
    let total = rate * seconds;
    // Paced in slices of 1 ms: each slice opens its share, then sleeps to the slice's end.
    let per_slice = (rate / 1000).max(1);
    let start = Instant::now();
    let mut done = 0u64;
    let mut failed = 0u64;
    while done < total {
        for _ in 0..per_slice.min(total - done) {
            // SAFETY: a NUL-terminated path; the descriptor is closed at once.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd >= 0 {
                // SAFETY: closing the descriptor just opened.
                unsafe { libc::close(fd) };
            } else {
                failed += 1;
            }
            done += 1;
        }
        let due = start + Duration::from_secs_f64(done as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "opened {done} times in {elapsed:.2} s = {:.0}/s (asked {rate}/s); {failed} failed",
        done as f64 / elapsed
    );
    Ok(())
}
