//! The node `match` rules: one `NodeEvent` decides. Each rule is a pure function of the event and the lists,
//! paired with its catalogue entry in `RULES`; a rule returns the details an analyst needs, or `None`.

use palisade_schemas::{NodeEvent, NodeEventKind};

use super::lists::{NodeLists, SharedNodeLists};
use super::view::*;
use crate::engine::{Event, Finding, StatelessDetector};
use crate::meta::{AlertTypeMeta, catalogue_entry};

pub type Details = Vec<(&'static str, String)>;
type Rule = fn(&NodeView<'_>, &NodeLists) -> Option<Details>;

/// Every node match rule, by alert type.
pub const RULES: &[(&str, Rule)] = &[
    ("K8S.NODE_NamespaceCreation", namespace_creation),
    ("K8S.NODE_HistoryFileCleared", history_file_cleared),
    ("K8S.NODE_SuspectConnection", suspect_connection),
    ("K8S.NODE_TimerServiceDisabled", timer_service_disabled),
    ("K8S.NODE_CommonBot", common_bot),
    ("K8S.NODE_PrivilegedExecutionInContainer", privileged_execution_in_container),
    ("K8S.NODE_PrivilegedContainerArtifacts", privileged_container_artifacts),
    ("K8S.NODE_SuspectDownload", suspect_download),
    ("K8S.NODE_SuspectDownloadArtifacts", suspect_download_artifacts),
    ("K8S.NODE_SuspectNohup", suspect_nohup),
    ("K8S.NODE_SuspectUserAddition", suspect_user_addition),
    ("K8S.NODE_DigitalCurrencyMining", digital_currency_mining),
    ("K8S.NODE_ImageBuildOnNode", image_build_on_node),
    ("K8S.NODE_KnownLinuxDDoSToolkit", known_ddos_toolkit),
    ("K8S.NODE_KnownLinuxAttackTool", known_attack_tool),
    ("K8S.NODE_ExploitAttempt", exploit_attempt),
    ("K8S.NODE_KnownLinuxCredentialAccessTool", known_credential_access_tool),
    ("K8S.NODE_CryptoCoinMinerDownload", miner_download),
    ("K8S.NODE_SystemLogRemoval", system_log_removal),
    ("K8S.NODE_SuspectPasswordChange", suspect_password_change),
    ("K8S.NODE_SuspectPortForwarding", suspect_port_forwarding),
    ("K8S.NODE_ReverseShell", reverse_shell),
    ("K8S.NODE_CryptoCoinMinerArtifacts", miner_in_container),
    ("K8S.NODE_SshKeyAccess", ssh_key_access),
    ("K8S.NODE_SuspectProcessTermination", suspect_process_termination),
    ("K8S.NODE_ContainerSSH", container_ssh),
    ("K8S.NODE_TimestampTampering", timestamp_tampering),
    ("K8S.NODE_KubernetesAPI", kubernetes_api),
    ("K8S.NODE_KubernetesDashboard", kubernetes_dashboard),
    ("K8S.NODE_CryptoCoinMinerExecution", miner_execution),
    ("K8S.NODE_SuspectPasswordFileAccess", password_file_access),
    ("K8S.NODE_Webshell", webshell),
    ("K8S.NODE_DownloadAndRunCombo", download_and_run_combo),
    ("K8S.NODE_KubeConfigAccess", kubeconfig_access),
    ("K8S.NODE_ImdsCall", imds_call),
    ("K8S.NODE_MitreCalderaTools", caldera_tools),
];

/// Every rule as one detector: the event's view and the lists are taken once per event, not once per rule.
pub struct NodeRules {
    rules: Vec<(&'static AlertTypeMeta, Rule)>,
    lists: SharedNodeLists,
}

impl NodeRules {
    pub fn new(lists: &SharedNodeLists) -> Self {
        Self { rules: RULES.iter().map(|(id, rule)| (catalogue_entry(id), *rule)).collect(), lists: lists.clone() }
    }
}

impl StatelessDetector for NodeRules {
    fn meta(&self) -> &'static AlertTypeMeta {
        self.rules[0].0
    }

    fn metas(&self) -> Vec<&'static AlertTypeMeta> {
        self.rules.iter().map(|(meta, _)| *meta).collect()
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        self.detect_all(event).into_iter().map(|(_, finding)| finding).collect()
    }

    fn detect_all(&self, event: &Event<'_>) -> Vec<(&'static AlertTypeMeta, Finding)> {
        let Event::Node(node) = event else { return Vec::new() };
        let view = NodeView::new(node);
        let lists = self.lists.current();
        let mut out = Vec::new();
        for (meta, rule) in &self.rules {
            let Some(details) = rule(&view, &lists) else { continue };
            let mut finding = Finding::default();
            finding.details.insert("in_container".into(), node.in_container.to_string());
            finding.details.extend(details.into_iter().map(|(key, value)| (key.to_owned(), value)));
            out.push((*meta, finding));
        }
        out
    }
}

fn listed(list: &[String], name: &str) -> bool {
    list.iter().any(|entry| entry == name)
}

/// The exec's name when it (or argv[0]) is on `list`.
fn exec_listed(view: &NodeView<'_>, list: &[String]) -> Option<String> {
    let name = view.exec()?;
    [name, view.argv0.as_str()].into_iter().find(|candidate| listed(list, candidate)).map(str::to_owned)
}

fn one(key: &'static str, value: impl Into<String>) -> Option<Details> {
    Some(vec![(key, value.into())])
}

fn file_path(event: &NodeEvent) -> Option<&str> {
    event.file.as_ref().map(|file| file.path.as_str())
}

const O_ACCMODE: i64 = 0o3;
const O_CREAT: i64 = 0o100;
const O_TRUNC: i64 = 0o1000;

/// An open for writing, creating or truncating.
fn opens_for_write(event: &NodeEvent) -> bool {
    event.kind == NodeEventKind::FileOpen
        && event.file.as_ref().is_some_and(|f| f.flags & O_ACCMODE != 0 || f.flags & (O_CREAT | O_TRUNC) != 0)
}

/// The file is emptied or removed: truncate(2), open with O_TRUNC, unlink, or renamed over by /dev/null.
fn wipes(event: &NodeEvent) -> bool {
    match event.kind {
        NodeEventKind::FileTruncate | NodeEventKind::FileUnlink => true,
        NodeEventKind::FileOpen => event.file.as_ref().is_some_and(|f| f.flags & O_TRUNC != 0),
        _ => false,
    }
}

// ---- processes ------------------------------------------------------------------------------------------------

/// The container runtime sets up a container's namespaces from inside its cgroup (runc's `runc:[1:CHILD]`, crun);
/// that is how every container starts, not an escape.
fn is_runtime_init(view: &NodeView<'_>) -> bool {
    let name = view.name.as_str();
    ["runc", "crun", "runsc", "youki"].contains(&name)
        || name.starts_with("containerd-shim")
        || view.event.comm.starts_with("runc:")
}

fn namespace_creation(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    let namespace = event.namespace.as_ref()?;
    (event.in_container && namespace.flags != 0 && !is_runtime_init(view))
        .then(|| vec![("syscall", namespace.syscall.clone()), ("flags", format!("{:#x}", namespace.flags))])
}

fn timer_service_disabled(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let name = view.exec()?;
    let line = view.line();
    let stops = ["stop", "disable", "mask", "kill"].iter().any(|verb| has_word(line, verb));
    (name == "systemctl" && stops && line.contains("apt-daily-upgrade")).then(|| vec![("command", line.to_owned())])
}

fn common_bot(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if let Some(name) = exec_listed(view, &lists.bot_names) {
        return one("bot", name);
    }
    let path = event.executable.as_deref()?.to_lowercase();
    (event.kind == NodeEventKind::Exec && listed(&lists.bot_names, &path)).then(|| vec![("bot", path)])
}

/// All capabilities up to CAP_CHECKPOINT_RESTORE (40) that matter for an escape: SYS_ADMIN (21) and SYS_PTRACE (19)
/// and SYS_MODULE (16).
const ESCAPE_CAPABILITIES: i64 = (1 << 21) | (1 << 19) | (1 << 16);

fn privileged_execution_in_container(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    let line = view.line();
    let runtimes = ["docker", "podman", "nerdctl", "crictl"];
    if runtimes.contains(&name) && has_word(line, "exec") && line.contains("--privileged") {
        return one("command", line.to_owned());
    }
    // A process started into a container by the runtime (its parent is runc or a shim, not a process of the
    // container) with the capabilities of a privileged container.
    let caps = event.capabilities_effective?;
    let entered = parent_name(event).is_some_and(|p| p == "runc" || p.starts_with("containerd-shim") || p == "crun");
    (event.in_container && entered && caps & ESCAPE_CAPABILITIES == ESCAPE_CAPABILITIES)
        .then(|| vec![("capabilities_effective", format!("{caps:#x}")), ("command", line.to_owned())])
}

fn privileged_container_artifacts(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let name = view.exec()?;
    let line = view.line();
    let starts = match name {
        "docker" | "podman" | "nerdctl" => has_word(line, "run") || has_word(line, "create"),
        "ctr" => has_word(line, "run"),
        _ => false,
    };
    (starts && line.contains("--privileged")).then(|| vec![("command", line.to_owned())])
}

fn suspect_nohup(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    if view.exec()? != "nohup" {
        return None;
    }
    let target = event.argv.get(1)?;
    let temp = ["/tmp/", "/var/tmp/", "/dev/shm/"].iter().any(|p| target.starts_with(p));
    (temp && basename(target).starts_with('.')).then(|| vec![("runs", target.clone())])
}

fn suspect_user_addition(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    if !["useradd", "adduser", "usermod"].contains(&name) {
        return None;
    }
    let args: Vec<&str> = event.argv.iter().skip(1).map(String::as_str).collect();
    let mut reasons = Vec::new();
    for (index, arg) in args.iter().enumerate() {
        let value = args.get(index + 1).copied().unwrap_or_default();
        match *arg {
            "-u" | "--uid" if value == "0" => reasons.push("uid 0"),
            "-o" | "--non-unique" => reasons.push("non-unique uid"),
            "-G" | "-g" | "--groups" | "--gid" | "-aG"
                if value.split(',').any(|g| ["root", "sudo", "wheel", "admin", "docker", "0"].contains(&g)) =>
            {
                reasons.push("privileged group")
            }
            _ => {}
        }
    }
    if name != "usermod" && event.in_container {
        reasons.push("in a container");
    }
    (!reasons.is_empty()).then(|| vec![("why", reasons.join(", ")), ("command", view.line().to_owned())])
}

fn digital_currency_mining(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    exec_listed(view, &lists.miner_binaries).and_then(|name| one("miner", name))
}

fn miner_in_container(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if !event.in_container {
        return None;
    }
    digital_currency_mining(view, lists).or_else(|| miner_execution(view, lists))
}

fn miner_execution(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    view.exec()?;
    if let Some(flag) = lists.miner_flag_matcher.find(view.lower_line()) {
        return one("marker", flag);
    }
    one("pool", lists.miner_pool_matcher.find(view.lower_line())?)
}

fn image_build_on_node(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    let line = view.line();
    let second = event.argv.get(1).map(String::as_str).unwrap_or_default();
    let builds = match name {
        "docker" | "podman" | "nerdctl" => {
            second == "build"
                || (second == "buildx" && has_word(line, "build"))
                || second == "image" && has_word(line, "build")
        }
        "buildah" => ["bud", "build", "from"].contains(&second),
        "img" => second == "build",
        "executor" | "kaniko" => line.contains("--dockerfile") || line.contains("--context"),
        "buildctl" => second == "build",
        _ => false,
    };
    builds.then(|| vec![("command", line.to_owned())])
}

fn known_ddos_toolkit(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if let Some(name) = exec_listed(view, &lists.ddos_tools) {
        return one("toolkit file", name);
    }
    let path = file_path(event)?.to_lowercase();
    let written = opens_for_write(event) || event.kind == NodeEventKind::FileRename;
    let matches = listed(&lists.ddos_tools, &path) || listed(&lists.ddos_tools, basename(&path));
    (written && matches).then(|| vec![("toolkit file", path)])
}

fn known_attack_tool(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    exec_listed(view, &lists.attack_tools).and_then(|name| one("tool", name))
}

fn known_credential_access_tool(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if let Some(name) = exec_listed(view, &lists.credential_tools) {
        return one("tool", name);
    }
    // Scripts run by an interpreter: `python3 laZagne.py all`, `bash mimipenguin.sh`.
    view.exec()?;
    let script = event.argv.get(1).map(|a| basename(a).to_lowercase())?;
    listed(&lists.credential_tools, &script).then(|| vec![("tool", script)])
}

fn exploit_attempt(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    view.exec()?;
    let line = view.line();
    let lower = view.lower_line();
    let markers = [
        ("${jndi:", "Log4Shell (CVE-2021-44228)"),
        ("() { :;};", "Shellshock (CVE-2014-6271)"),
        ("() { :; };", "Shellshock (CVE-2014-6271)"),
        ("pwnkit", "PwnKit (CVE-2021-4034)"),
        ("dirtycow", "Dirty COW (CVE-2016-5195)"),
        ("dirtypipe", "Dirty Pipe (CVE-2022-0847)"),
        ("cve-2022-0185", "CVE-2022-0185"),
        ("cve-2021-4034", "PwnKit (CVE-2021-4034)"),
        ("cve-2019-5736", "runc escape (CVE-2019-5736)"),
    ];
    let (_, name) = markers.iter().find(|(marker, _)| lower.contains(marker))?;
    Some(vec![("exploit", (*name).to_owned()), ("command", line.to_owned())])
}

fn caldera_tools(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let name = view.exec()?;
    let line = view.line();
    let agent_names = ["sandcat", "sandcat.go", "54ndc47", "sandcat.go-linux", "splunkd"];
    let named = agent_names.contains(&name) || agent_names.contains(&view.argv0.as_str());
    // sandcat's own flags; `splunkd` is its default disguise, so the name alone is not enough there.
    let flags = line.contains("-server ") && (line.contains("-group ") || line.contains("-paw "));
    let fetch = line.contains("/file/download") && line.contains("file:sandcat");
    ((named && (flags || name != "splunkd")) || fetch).then(|| vec![("command", line.to_owned())])
}

fn container_ssh(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    (event.in_container && ["sshd", "dropbear"].contains(&name)).then(|| vec![("server", name.to_owned())])
}

fn suspect_password_change(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    let line = view.line();
    let pre_hashed = match name {
        "chpasswd" | "chgpasswd" => event.argv.iter().any(|a| a == "-e" || a == "--encrypted"),
        "usermod" => event.argv.iter().any(|a| a == "-p" || a == "--password"),
        _ if is_shell(name) => {
            line.contains("openssl passwd") && (line.contains("chpasswd") || line.contains("usermod"))
                || line.contains("chpasswd -e")
                || line.contains("usermod -p")
        }
        _ => false,
    };
    pre_hashed.then(|| vec![("command", line.to_owned())])
}

fn is_loopback_or_private(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        Ok(std::net::IpAddr::V6(v6)) => v6.is_loopback(),
        Err(_) => host == "localhost",
    }
}

/// The hosts forwarded to in `ssh -L/-R` specs (`[bind:]port:host:hostport`).
fn ssh_forward_hosts(argv: &[String]) -> Vec<String> {
    let mut hosts = Vec::new();
    for (index, arg) in argv.iter().enumerate() {
        let spec = match arg.as_str() {
            "-L" | "-R" => argv.get(index + 1).map(String::as_str),
            _ => arg.strip_prefix("-L").or_else(|| arg.strip_prefix("-R")).filter(|s| !s.is_empty()),
        };
        if let Some(spec) = spec {
            let parts: Vec<&str> = spec.split(':').collect();
            if parts.len() >= 3 {
                hosts.push(parts[parts.len() - 2].to_owned());
            }
        }
    }
    hosts
}

fn suspect_port_forwarding(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    let line = view.line();
    let forwards = match name {
        "ssh" => {
            let dynamic = event.argv.iter().any(|a| a == "-D" || a.starts_with("-D") && a.len() > 2);
            dynamic || ssh_forward_hosts(&event.argv).iter().any(|host| !is_loopback_or_private(host))
        }
        "socat" => {
            let lower = view.lower_line();
            lower.contains("tcp-listen:") && lower.matches("tcp").count() >= 2 && !lower.contains("exec:")
        }
        "iptables" | "iptables-nft" | "iptables-legacy" | "nft" => line.contains("DNAT") || line.contains("dnat"),
        "rinetd" | "redir" | "gost" | "frpc" | "ngrok" => true,
        _ => false,
    };
    forwards.then(|| vec![("command", line.to_owned())])
}

fn reverse_shell(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    let line = view.line();
    let socket_stdio = event.stdio.iter().take(2).any(|kind| kind == "socket");
    if is_shell(name) && socket_stdio {
        return Some(vec![
            ("why", "shell with a network socket as stdin/stdout".into()),
            ("stdio", event.stdio.join(",")),
        ]);
    }
    let lower = view.lower_line();
    let one_liner = (is_shell(name) && (lower.contains("/dev/tcp/") || lower.contains("/dev/udp/")))
        || (["nc", "ncat", "netcat", "nc.traditional", "nc.openbsd"].contains(&name)
            && event.argv.iter().any(|a| a == "-e" || a == "-c" || a.starts_with("--exec") || a == "--sh-exec"))
        || (name == "socat" && (lower.contains("exec:") || lower.contains("system:")) && lower.contains("tcp"))
        || (name.starts_with("python")
            && lower.contains("socket")
            && (lower.contains("dup2") || lower.contains("pty.spawn")))
        || (name == "perl" && lower.contains("socket") && lower.contains("open(stdin"))
        || (name.starts_with("php") && lower.contains("fsockopen"))
        || (name == "ruby" && lower.contains("tcpsocket") && lower.contains("exec"));
    one_liner.then(|| vec![("why", "reverse-shell one-liner".into()), ("command", line.to_owned())])
}

fn suspect_process_termination(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if let Some(signal) = &event.signal {
        // SIGKILL, SIGTERM, SIGSTOP, SIGINT, SIGQUIT.
        if ![9, 15, 19, 2, 3].contains(&signal.signal) {
            return None;
        }
        let target = signal.target_executable.as_deref().map(|t| basename(t).to_lowercase())?;
        return listed(&lists.security_processes, &target)
            .then(|| vec![("target", target), ("signal", signal.signal.to_string())]);
    }
    let name = view.exec()?;
    if !["pkill", "killall"].contains(&name) {
        return None;
    }
    let target = event
        .argv
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .find(|a| listed(&lists.security_processes, &a.to_lowercase()))?;
    Some(vec![("target", target.clone()), ("command", view.line().to_owned())])
}

// ---- downloads ------------------------------------------------------------------------------------------------

fn is_raw_ip(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

const PASTE_SITES: [&str; 6] =
    ["pastebin.com", "paste.ee", "transfer.sh", "hastebin.com", "ghostbin.co", "termbin.com"];

fn downloader_urls(view: &NodeView<'_>) -> Option<(String, Vec<String>)> {
    let event = view.event;
    let name = view.exec()?;
    if !is_downloader(name) {
        return None;
    }
    let urls = urls(event);
    (!urls.is_empty()).then(|| (name.to_owned(), urls))
}

fn suspect_download(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let (_, urls) = downloader_urls(view)?;
    let url = urls.iter().find(|url| {
        let host = url_host(url);
        lists.malware_sources.iter().any(|source| {
            let (source_host, source_path) = source.split_once('/').unwrap_or((source, ""));
            (host == source_host || host.ends_with(&format!(".{source_host}")))
                && (source_path.is_empty() || url.contains(&format!("{source_host}/{source_path}")))
        })
    })?;
    one("url", url.clone())
}

fn suspect_download_artifacts(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    let (_, urls) = downloader_urls(view)?;
    let mut reasons = Vec::new();
    if let Some(url) = urls.iter().find(|url| {
        let host = url_host(url);
        is_raw_ip(host) && !is_loopback_or_private(host) && host != "169.254.169.254"
    }) {
        reasons.push(format!("from a raw IP address ({url})"));
    }
    if let Some(url) = urls.iter().find(|url| PASTE_SITES.iter().any(|site| url_host(url).ends_with(site))) {
        reasons.push(format!("from a paste site ({url})"));
    }
    if let Some(target) = download_targets(&event.argv).into_iter().find(|t| is_dropper_target(t)) {
        reasons.push(format!("to a temporary or hidden path ({target})"));
    }
    (!reasons.is_empty()).then(|| vec![("why", reasons.join("; ")), ("command", view.line().to_owned())])
}

fn miner_download(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let (_, urls) = downloader_urls(view)?;
    let url = urls.iter().find(|url| {
        let file = basename(url.split(['?', '#']).next().unwrap_or(url));
        lists.miner_binaries.iter().any(|miner| file.starts_with(miner.as_str()))
            || url.contains("github.com/xmrig/")
            || url.contains("xmrig") && (url.ends_with(".tar.gz") || url.ends_with(".zip"))
            || file.contains("xmr") && file.ends_with(".sh")
    })?;
    one("url", url.clone())
}

fn download_and_run_combo(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    if !is_shell(name) {
        return None;
    }
    let line = view.line();
    let downloads = DOWNLOADERS.iter().any(|tool| has_word(line, tool));
    if !downloads {
        return None;
    }
    // `curl … | sh`, `wget -O- … | bash`
    let piped = line.split('|').skip(1).any(|stage| {
        let first = stage.split_whitespace().next().map(basename).unwrap_or_default();
        is_shell(first) || SCRIPTING.contains(&first)
    });
    // `curl -o f … ; chmod +x f ; ./f` (or `sh f`)
    let targets = download_targets(&event.argv);
    let runs_target = targets.iter().any(|target| {
        let after = line.split_once(target.as_str()).map(|(_, rest)| rest).unwrap_or_default();
        let base = basename(target);
        after.contains(&format!("./{base}"))
            || after.contains(&format!(" {target}")) && after.contains("chmod")
            || SHELLS.iter().any(|shell| after.contains(&format!("{shell} {target}")))
    });
    (piped || runs_target).then(|| vec![("command", line.to_owned())])
}

// ---- files ----------------------------------------------------------------------------------------------------

fn is_history_file(path: &str) -> bool {
    let name = basename(path);
    name.ends_with("_history") || name == ".history"
}

fn history_file_cleared(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    if let Some(file) = &event.file {
        let cleared = wipes(event)
            || (event.kind == NodeEventKind::FileRename
                && file.new_path.as_deref().is_some_and(is_history_file)
                && file.path == "/dev/null");
        let path = if event.kind == NodeEventKind::FileRename { file.new_path.as_deref()? } else { &file.path };
        return (cleared && is_history_file(path)).then(|| vec![("file", path.to_owned())]);
    }
    let name = view.exec()?;
    let line = view.line();
    let shell_clear = is_shell(name)
        && (line.contains("history -c") || line.contains("unset HISTFILE") || line.contains("HISTFILE=/dev/null"));
    let linked = name == "ln" && line.contains("/dev/null") && event.argv.iter().any(|a| is_history_file(a));
    (shell_clear || linked).then(|| vec![("command", line.to_owned())])
}

const USER_ACTIVITY_LOGS: [&str; 10] = [
    "/var/log/wtmp",
    "/var/log/btmp",
    "/var/log/lastlog",
    "/var/log/auth.log",
    "/var/log/secure",
    "/var/log/syslog",
    "/var/log/messages",
    "/var/log/audit/audit.log",
    "/var/run/utmp",
    "/run/utmp",
];

fn system_log_removal(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    if let Some(path) = file_path(event) {
        // Log rotation renames and recreates; only emptying or removing the live file counts.
        return (wipes(event) && USER_ACTIVITY_LOGS.contains(&path)).then(|| vec![("file", path.to_owned())]);
    }
    let name = view.exec()?;
    if !["shred", "rm", "truncate", "wipe", "srm"].contains(&name) {
        return None;
    }
    let path = event.argv.iter().skip(1).find(|a| USER_ACTIVITY_LOGS.contains(&a.as_str()))?;
    Some(vec![("file", path.clone()), ("command", view.line().to_owned())])
}

fn ssh_key_access(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    let file = event.file.as_ref()?;
    let target = if event.kind == NodeEventKind::FileRename { file.new_path.as_deref()? } else { &file.path };
    let keys = basename(target) == "authorized_keys" || basename(target) == "authorized_keys2";
    let modifies = opens_for_write(event)
        || matches!(event.kind, NodeEventKind::FileRename | NodeEventKind::FileChmod | NodeEventKind::FileTruncate);
    // sshd and the cloud agents that provision keys are how keys normally change.
    let provisioner = ["ssh-copy-id", "cloud-init", "google_guest_agent", "waagent", "amazon-ssm-agent"]
        .contains(&view.name.clone().as_str());
    (keys && modifies && !provisioner).then(|| vec![("file", target.to_owned()), ("process", view.name.clone())])
}

const SYSTEM_PREFIXES: [&str; 8] =
    ["/bin/", "/sbin/", "/usr/", "/lib/", "/lib64/", "/etc/", "/boot/", "/var/lib/kubelet/"];

fn timestamp_tampering(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    if event.kind == NodeEventKind::FileUtimes {
        let file = event.file.as_ref()?;
        // Explicit times (not "now"): what copying another file's times or backdating does.
        let explicit = file.mtime_ns.is_some() || file.atime_ns.is_some();
        let system = SYSTEM_PREFIXES.iter().any(|p| file.path.starts_with(p));
        return (explicit && system).then(|| vec![("file", file.path.clone())]);
    }
    if view.exec()? != "touch" {
        return None;
    }
    let sets_time = event.argv.iter().skip(1).any(|a| {
        ["-r", "-t", "-d", "--reference", "--date"].iter().any(|flag| a == flag || a.starts_with(&format!("{flag}=")))
    });
    sets_time.then(|| vec![("command", view.line().to_owned())])
}

const KUBECONFIGS: [&str; 6] = [
    "/var/lib/kubelet/kubeconfig",
    "/etc/kubernetes/kubelet.conf",
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/bootstrap-kubelet.conf",
    "/var/lib/kubelet/pki/kubelet-client-current.pem",
    "/etc/kubernetes/super-admin.conf",
];

fn kubeconfig_access(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    if event.kind != NodeEventKind::FileOpen {
        return None;
    }
    let path = file_path(event)?;
    let sensitive = KUBECONFIGS.contains(&path) || path.starts_with("/var/lib/kubelet/pki/") && path.ends_with(".pem");
    let name = view.name.clone();
    let system = ["kubelet", "kubeadm", "kube-proxy", "k3s", "k3s-agent", "rke2", "hyperkube"].contains(&name.as_str());
    (sensitive && !system).then(|| vec![("file", path.to_owned()), ("process", name)])
}

/// Processes that read the shadow files as part of their job (never reported; the baseline half skips them too).
pub const SHADOW_READERS: [&str; 18] = [
    "passwd",
    "chpasswd",
    "chage",
    "useradd",
    "usermod",
    "userdel",
    "unix_chkpwd",
    "login",
    "sshd",
    "su",
    "sudo",
    "pwck",
    "grpck",
    "vipw",
    "newusers",
    "gpasswd",
    "groupadd",
    "cron",
];

fn password_file_access(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    if event.kind != NodeEventKind::FileOpen {
        return None;
    }
    let path = file_path(event)?;
    let name = view.name.clone();
    let shadow = path == "/etc/shadow" || path == "/etc/gshadow";
    // The match half: a shell, a file or text tool, a script interpreter or a cracking tool reading it. Any other
    // process new to the node or workload is the baseline half's (`baselines::ShadowReaderBaseline`).
    let interactive = is_shell(&name) || is_downloader(&name) || SHADOW_TOOLS.contains(&name.as_str());
    (shadow && interactive && !SHADOW_READERS.contains(&name.as_str()))
        .then(|| vec![("file", path.to_owned()), ("process", name)])
}

/// Tools that read a file for a person or a script, and password crackers.
const SHADOW_TOOLS: [&str; 31] = [
    "cat",
    "head",
    "tail",
    "less",
    "more",
    "base64",
    "strings",
    "grep",
    "egrep",
    "fgrep",
    "awk",
    "gawk",
    "mawk",
    "sed",
    "dd",
    "cp",
    "tar",
    "xxd",
    "od",
    "hexdump",
    "vi",
    "vim",
    "nano",
    "python",
    "python3",
    "perl",
    "ruby",
    "john",
    "unshadow",
    "hashcat",
    "mimipenguin",
];

// ---- network --------------------------------------------------------------------------------------------------

fn suspect_connection(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    if event.kind == NodeEventKind::NetSend {
        let head = event.net.as_ref()?.payload_head.as_deref()?;
        let socks5 =
            head.len() >= 3 && head[0] == 5 && head[1] >= 1 && head.len() >= 2 + head[1] as usize && head[1] <= 10;
        let socks4 = head.len() >= 8 && head[0] == 4 && (head[1] == 1 || head[1] == 2);
        let destination = event.net.as_ref().and_then(|n| n.dst_addr.clone()).unwrap_or_default();
        return (socks5 || socks4).then(|| {
            vec![("protocol", if socks5 { "SOCKS5" } else { "SOCKS4" }.to_owned()), ("destination", destination)]
        });
    }
    let name = view.exec()?;
    let tools = ["proxychains", "proxychains4", "microsocks", "3proxy", "dante", "sockd", "tsocks"];
    tools.contains(&name).then(|| vec![("tool", name.to_owned())])
}

const METADATA_ADDRESSES: [&str; 3] = ["169.254.169.254", "fd00:ec2::254", "169.254.170.2"];

/// Paths of the metadata services that hand out credentials: AWS role credentials (IMDS and the ECS task
/// endpoint), GCP service-account tokens and identities (`/computeMetadata/…`), Azure managed-identity tokens.
/// Written lower-case: they are compared without case, since downloaders' URLs reach the rules lower-cased.
const CREDENTIAL_PATHS: [&str; 5] = [
    "/latest/meta-data/iam/security-credentials",
    "/latest/meta-data/identity-credentials",
    "/v2/credentials",
    "/computemetadata/v1/instance/service-accounts",
    "/metadata/identity/oauth2/token",
];

fn credential_path(path: &str) -> bool {
    let path = path.to_ascii_lowercase();
    CREDENTIAL_PATHS.iter().any(|prefix| path.starts_with(prefix))
}

/// The match half: a container asks the metadata service for an identity token, seen in the first bytes of the
/// request it sends or in a downloader's URL. Other contacts are the baseline half's
/// (`baselines::DestinationBaseline::metadata_service`).
fn imds_call(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    if !event.in_container {
        return None;
    }
    if let Some(net) = &event.net {
        let address = net.dst_addr.as_deref()?;
        if event.kind != NodeEventKind::NetSend || !METADATA_ADDRESSES.contains(&address) {
            return None;
        }
        let head = String::from_utf8_lossy(net.payload_head.as_deref()?);
        let request = head.lines().next()?;
        let path = request.split_once(' ').and_then(|(_, rest)| rest.split([' ', '?']).next())?;
        return credential_path(path)
            .then(|| vec![("destination", address.to_owned()), ("request", request.to_owned())]);
    }
    let (_, urls) = downloader_urls(view)?;
    let url = urls.iter().find(|url| {
        let host = url_host(url);
        let metadata = METADATA_ADDRESSES.contains(&host) || host == "metadata.google.internal";
        let path = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        metadata && path.find('/').is_some_and(|slash| credential_path(&path[slash..]))
    })?;
    one("url", url.clone())
}

const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

fn kubernetes_api(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    if !event.in_container {
        return None;
    }
    let name = view.name.clone();
    let interactive = is_shell(&name)
        || is_downloader(&name)
        || ["cat", "head", "tail", "less", "more", "base64"].contains(&name.as_str());
    if event.kind == NodeEventKind::FileOpen {
        let path = file_path(event)?;
        let token = path == SERVICE_ACCOUNT_TOKEN || path == SERVICE_ACCOUNT_TOKEN.trim_start_matches("/var");
        return (token && interactive)
            .then(|| vec![("why", "service-account token read by a shell or tool".into()), ("process", name)]);
    }
    let (_, urls) = downloader_urls(view)?;
    let url = urls.iter().find(|url| {
        let host = url_host(url);
        host == "kubernetes.default"
            || host.starts_with("kubernetes.default.svc")
            || url.contains("/api/v1/") && url.contains(":6443")
    })?;
    one("url", url.clone())
}

fn kubernetes_dashboard(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    if !event.in_container {
        return None;
    }
    if event.kind == NodeEventKind::NetSend {
        let head = String::from_utf8_lossy(event.net.as_ref()?.payload_head.as_deref()?).to_lowercase();
        return (head.contains("kubernetes-dashboard") || head.contains("/api/v1/csrftoken/login"))
            .then(|| vec![("request", head.lines().next().unwrap_or_default().to_owned())]);
    }
    let (_, urls) = downloader_urls(view)?;
    let url = urls
        .iter()
        .find(|url| url_host(url).starts_with("kubernetes-dashboard") || url.contains("/api/v1/csrftoken"))?;
    one("url", url.clone())
}

fn webshell(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    let parent = parent_name(event)?;
    if !listed(&lists.web_servers, &parent) {
        return None;
    }
    let suspicious = is_shell(name) || listed(&lists.recon_commands, name) || is_downloader(name);
    suspicious.then(|| vec![("web server", parent), ("command", view.line().to_owned())])
}
