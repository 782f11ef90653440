//! Load generator for the audit webhook's exposure to unauthenticated peers (issue 14): prints the figures, asserts
//! nothing. Two attacks against a running `palisade run`/`palisade audit` (plain HTTP, so no TLS library is
//! needed here: start it with PALISADE__AUDIT__TLS_DISABLED=true and a token file):
//!
//! - held bodies: N connections announce a body of M MiB without credentials, send all but its last byte and
//!   hold it; the server's resident memory is sampled throughout (baseline, peak);
//! - slow headers: C connections send a header line every second and never finish; after S seconds, how many
//!   the server still keeps open.
//!
//!   webhook-attack ADDR PID [connections=16] [announce_mib=15] [slow_connections=1000] [slow_seconds=40]

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One held-body connection: what the server answered before the client stopped sending, if anything.
async fn hold_body(addr: String, announce: usize, hold: Duration) -> String {
    let Ok(mut stream) = TcpStream::connect(&addr).await else { return "connect failed".into() };
    let head = format!("POST /audit/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: {announce}\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return "closed during headers".into();
    }
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    let mut outcome = "held".to_owned();
    while sent + chunk.len() < announce {
        if stream.write_all(&chunk).await.is_err() {
            outcome = format!("closed after {} KiB of body", sent / 1024);
            break;
        }
        sent += chunk.len();
    }
    tokio::time::sleep(hold).await;
    let mut answer = vec![0u8; 64];
    if let Ok(Ok(read)) = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut answer)).await
        && read > 0
    {
        let line = String::from_utf8_lossy(&answer[..read]).lines().next().unwrap_or_default().to_owned();
        outcome = format!("{outcome}; answered {line}");
    }
    outcome
}

/// One slow-header connection: whether the server still had it open after `seconds`.
async fn slow_headers(addr: String, seconds: u64) -> bool {
    let Ok(mut stream) = TcpStream::connect(&addr).await else { return false };
    if stream.write_all(b"POST /audit/webhook HTTP/1.1\r\n").await.is_err() {
        return false;
    }
    for second in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if stream.write_all(format!("X-Slow-{second}: y\r\n").as_bytes()).await.is_err() {
            return false;
        }
    }
    // Open means: no end of stream and no error waiting to be read.
    let mut byte = [0u8; 1];
    tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte)).await.is_err()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(pid)) = (args.get(1), args.get(2).and_then(|p| p.parse::<u32>().ok())) else {
        anyhow::bail!("usage: webhook-attack ADDR PID [connections] [announce_mib] [slow_connections] [slow_seconds]");
    };
    let number = |index: usize, default: usize| args.get(index).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (connections, announce_mib) = (number(3, 16), number(4, 15));
    let (slow_connections, slow_seconds) = (number(5, 1000), number(6, 40) as u64);

    let baseline = rss_mib(pid);
    let sampling = tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            peak = peak.max(rss_mib(pid));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    });
    let holds: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(hold_body(addr.clone(), announce_mib << 20, Duration::from_secs(10))))
        .collect();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for hold in holds {
        *outcomes.entry(hold.await?).or_default() += 1;
    }
    let peak = sampling.await?;
    println!("held bodies: {connections} unauthenticated connections announcing {announce_mib} MiB each");
    println!("  server RSS: {baseline:.0} MiB before, {peak:.0} MiB peak (+{:.0} MiB)", peak - baseline);
    for (outcome, count) in outcomes {
        println!("  {count:>5} x {outcome}");
    }

    let before = rss_mib(pid);
    let started = Instant::now();
    let slow: Vec<_> = (0..slow_connections).map(|_| tokio::spawn(slow_headers(addr.clone(), slow_seconds))).collect();
    let mut open = 0;
    for connection in slow {
        open += usize::from(connection.await?);
    }
    println!("slow headers: {slow_connections} connections sending a header line a second for {slow_seconds} s");
    println!(
        "  still open at the end: {open}; server RSS {before:.0} -> {:.0} MiB; took {:.0} s",
        rss_mib(pid),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
