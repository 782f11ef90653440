//! The node `match` rules: one `NodeEvent` decides. Each rule is a pure function of the event and the lists,
//! paired with its catalogue entry in `RULES`; a rule returns the details an analyst needs, or `None`.

use palisade_schemas::{NodeEvent, NodeEventKind};

use super::false_positives::{
    ACCOUNT_MANAGEMENT, ADMIN_TOOLING, API_CLIENTS, CLEAN_UP, MINER_SCANNING, REMOTE_SUPPORT,
};
use super::lists::{NodeLists, SharedNodeLists};
use super::view::*;
use crate::lists::Names;
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, Severity, Source};
use crate::unit::{Event, Finding, StatelessDetector};

pub type Details = Vec<(&'static str, String)>;
type Rule = fn(&NodeView<'_>, &NodeLists) -> Option<Details>;

/// Every node match rule, by alert type.
pub const RULES: &[(&AlertTypeMeta, Rule)] = &[
    (NAMESPACE_CREATION, namespace_creation),
    (HISTORY_FILE_CLEARED, history_file_cleared),
    (SUSPECT_CONNECTION, suspect_connection),
    (TIMER_SERVICE_DISABLED, timer_service_disabled),
    (COMMON_BOT, common_bot),
    (PRIVILEGED_EXECUTION_IN_CONTAINER, privileged_execution_in_container),
    (PRIVILEGED_CONTAINER_ARTIFACTS, privileged_container_artifacts),
    (SUSPECT_DOWNLOAD, suspect_download),
    (SUSPECT_DOWNLOAD_ARTIFACTS, suspect_download_artifacts),
    (SUSPECT_NOHUP, suspect_nohup),
    (SUSPECT_USER_ADDITION, suspect_user_addition),
    (DIGITAL_CURRENCY_MINING, digital_currency_mining),
    (IMAGE_BUILD_ON_NODE, image_build_on_node),
    (KNOWN_DDOS_TOOLKIT, known_ddos_toolkit),
    (KNOWN_ATTACK_TOOL, known_attack_tool),
    (EXPLOIT_ATTEMPT, exploit_attempt),
    (KNOWN_CREDENTIAL_ACCESS_TOOL, known_credential_access_tool),
    (MINER_DOWNLOAD, miner_download),
    (SYSTEM_LOG_REMOVAL, system_log_removal),
    (SUSPECT_PASSWORD_CHANGE, suspect_password_change),
    (SUSPECT_PORT_FORWARDING, suspect_port_forwarding),
    (REVERSE_SHELL, reverse_shell),
    (MINER_IN_CONTAINER, miner_in_container),
    (SSH_KEY_ACCESS, ssh_key_access),
    (SUSPECT_PROCESS_TERMINATION, suspect_process_termination),
    (CONTAINER_SSH, container_ssh),
    (TIMESTAMP_TAMPERING, timestamp_tampering),
    (KUBERNETES_API, kubernetes_api),
    (KUBERNETES_DASHBOARD, kubernetes_dashboard),
    (MINER_EXECUTION, miner_execution),
    (PASSWORD_FILE_ACCESS, password_file_access),
    (WEBSHELL, webshell),
    (DOWNLOAD_AND_RUN_COMBO, download_and_run_combo),
    (KUBECONFIG_ACCESS, kubeconfig_access),
    (IMDS_CALL, imds_call),
    (CALDERA_TOOLS, caldera_tools),
];

/// Every rule as one detector: the event's view and the lists are taken once per event, not once per rule, and
/// an event meets only the rules that declare its kind.
pub struct NodeRules {
    rules: Vec<(&'static AlertTypeMeta, Rule)>,
    /// By `NodeEventKind as usize`: the rules (indexes into `rules`) that declare that kind.
    by_kind: Vec<Vec<usize>>,
    lists: SharedNodeLists,
}

impl NodeRules {
    pub fn new(lists: &SharedNodeLists) -> Self {
        let rules = RULES.to_vec();
        let by_kind = NodeEventKind::ALL
            .iter()
            .map(|kind| {
                let reads = |meta: &AlertTypeMeta| meta.inputs.contains(&Input::Node(*kind));
                rules.iter().enumerate().filter(|(_, (meta, _))| reads(meta)).map(|(index, _)| index).collect()
            })
            .collect();
        Self { rules, by_kind, lists: lists.clone() }
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
        let Some(rules) = self.by_kind.get(node.kind as usize) else { return Vec::new() };
        if rules.is_empty() {
            return Vec::new();
        }
        let view = NodeView::new(node);
        let lists = self.lists.current();
        let mut out = Vec::new();
        for (meta, rule) in rules.iter().map(|&index| &self.rules[index]) {
            let Some(details) = rule(&view, &lists) else { continue };
            let mut finding = Finding::default();
            finding.details.insert("in_container".into(), node.in_container.to_string());
            finding.details.extend(details.into_iter().map(|(key, value)| (key.to_owned(), value)));
            out.push((*meta, finding));
        }
        out
    }
}

fn listed(list: &Names, name: &str) -> bool {
    list.contains(name)
}

/// The exec's name when it (or argv[0]) is on `list`.
fn exec_listed(view: &NodeView<'_>, list: &Names) -> Option<String> {
    let name = view.exec()?;
    [name, view.argv0.as_ref()].into_iter().find(|candidate| listed(list, candidate)).map(str::to_owned)
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
fn is_runtime_init(view: &NodeView<'_>, lists: &NodeLists) -> bool {
    let name = view.name.as_ref();
    lists.runtime_inits.contains(name) || name.starts_with("containerd-shim") || view.event.comm.starts_with("runc:")
}

pub const NAMESPACE_CREATION: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_NamespaceCreation",
    title: "Linux namespace created from a container",
    severity: Severity::Informational,
    tactics: &["Privilege Escalation"],
    techniques: &["T1611", "T1068"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::NamespaceChange)],
    maturity: Maturity::Stable,
    description: "Fires when a process in a container creates a new Linux namespace (unshare/clone with CLONE_NEW* flags, or setns) — a container-escape technique (e.g. CVE-2022-0185 exploits).",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn namespace_creation(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if event.kind != NodeEventKind::NamespaceChange {
        return None;
    }
    let namespace = event.namespace.as_ref()?;
    (event.in_container && namespace.flags != 0 && !is_runtime_init(view, lists))
        .then(|| vec![("syscall", namespace.syscall.clone()), ("flags", format!("{:#x}", namespace.flags))])
}

pub const TIMER_SERVICE_DISABLED: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_TimerServiceDisabled",
    title: "apt-daily-upgrade timer stopped or disabled",
    severity: Severity::Informational,
    tactics: &["Defense Evasion"],
    techniques: &["T1489"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when an attempt to stop or disable apt-daily-upgrade.timer.",
    false_positives: CLEAN_UP,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn timer_service_disabled(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    if view.exec()? != "systemctl" {
        return None;
    }
    let line = view.line();
    let stops = ["stop", "disable", "mask", "kill"].iter().any(|verb| has_word(line, verb));
    (stops && line.contains("apt-daily-upgrade")).then(|| vec![("command", line.to_owned())])
}

pub const COMMON_BOT: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_CommonBot",
    title: "Common Linux botnet behaviour",
    severity: Severity::Medium,
    tactics: &["Execution", "Collection", "Command and Control"],
    techniques: &["T1071"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when execution typical of common Linux botnets (known names, paths, argument patterns).",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

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

pub const PRIVILEGED_EXECUTION_IN_CONTAINER: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_PrivilegedExecutionInContainer",
    title: "Privileged command run in a container",
    severity: Severity::Informational,
    tactics: &["Privilege Escalation"],
    techniques: &["T1611", "T1610"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a privileged command runs in a container (e.g. docker exec --privileged, or an exec'd process with full capabilities in a container).",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn privileged_execution_in_container(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    let line = view.line();
    if lists.container_clis.contains(name) && has_word(line, "exec") && line.contains("--privileged") {
        return one("command", line.to_owned());
    }
    // A process started into a container by the runtime (its parent is runc or a shim, not a process of the
    // container) with the capabilities of a privileged container. runc's own init is not one: it re-executes runc
    // (from a sealed memfd, `/dev/fd/N`, or /proc/self/exe) as `runc init` inside the new container's cgroup with
    // all of runc's capabilities, and drops them before it executes the container's process, which is judged on
    // its own. Seen on every container start and every `kubectl exec` on a real kubelet.
    if is_runc_init(event) {
        return None;
    }
    let caps = event.capabilities_effective?;
    // runc's init stages clone one another (CLONE_PARENT), so the container's first process has one of them, still
    // `runc init` from runc's memfd, as the parent the kernel's fork events name: that is runc too.
    let entered = parent_name(event).is_some_and(|p| p == "runc" || p.starts_with("containerd-shim") || p == "crun")
        || event.ancestry.first().is_some_and(|parent| parent.argv == ["runc", "init"]);
    (event.in_container && entered && caps & ESCAPE_CAPABILITIES == ESCAPE_CAPABILITIES)
        .then(|| vec![("capabilities_effective", format!("{caps:#x}")), ("command", line.to_owned())])
}

/// runc's init step: argv exactly `runc init`, run from runc's own copy of itself (its sealed memfd as /dev/fd/N,
/// /proc/self/fd/N or by its name, or /proc/self/exe), by runc. A program of the container's own under that name runs from a
/// path of the container's file system. What this cannot tell apart: a process in a privileged container that
/// copies a shell to `runc` and from it executes a descriptor as `runc init` (README, "What is not built yet");
/// the children of that process are still judged (a `runc init` parent counts as the runtime).
fn is_runc_init(event: &NodeEvent) -> bool {
    let executable = event.executable.as_deref().unwrap_or_default();
    let descriptor = |prefix: &str| {
        executable.strip_prefix(prefix).is_some_and(|fd| !fd.is_empty() && fd.bytes().all(|b| b.is_ascii_digit()))
    };
    // The collector names a memfd by its name when it can read it in time: runc's is `runc_cloned:/proc/self/exe`.
    let memfd = executable == "/memfd:runc_cloned:/proc/self/exe (deleted)";
    let own_copy = executable == "/proc/self/exe" || descriptor("/dev/fd/") || descriptor("/proc/self/fd/") || memfd;
    // The parent is runc's file, not a memfd that only calls itself runc.
    let by_runc = event.ancestry.first().is_some_and(|parent| basename(&parent.executable) == "runc");
    own_copy && event.argv == ["runc", "init"] && by_runc
}

pub const PRIVILEGED_CONTAINER_ARTIFACTS: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_PrivilegedContainerArtifacts",
    title: "Privileged container started on the node",
    severity: Severity::Informational,
    tactics: &["Privilege Escalation", "Execution"],
    techniques: &["T1611", "T1610"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a container runtime command starts a privileged container (docker run --privileged, ctr run --privileged, nerdctl …).",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

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

pub const SUSPECT_NOHUP: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_SuspectNohup",
    title: "Suspicious use of nohup",
    severity: Severity::Medium,
    tactics: &["Persistence", "Defense Evasion"],
    techniques: &["T1564.001", "T1059.004"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when nohup runs a hidden file from a temp directory (e.g. nohup /tmp/.x).",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn suspect_nohup(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    if view.exec()? != "nohup" {
        return None;
    }
    let target = event.argv.get(1)?;
    let temp = ["/tmp/", "/var/tmp/", "/dev/shm/"].iter().any(|p| target.starts_with(p));
    (temp && basename(target).starts_with('.')).then(|| vec![("runs", target.clone())])
}

pub const SUSPECT_USER_ADDITION: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_SuspectUserAddition",
    title: "Suspicious user account added",
    severity: Severity::Medium,
    tactics: &["Persistence"],
    techniques: &["T1136.001"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when suspicious use of useradd/adduser (in a container, with uid 0, into privileged groups, …).",
    false_positives: ACCOUNT_MANAGEMENT,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn suspect_user_addition(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    if !lists.account_tools.contains(name) {
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
                if value.split(',').any(|g| lists.privileged_groups.contains(g)) =>
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

pub const DIGITAL_CURRENCY_MINING: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_DigitalCurrencyMining",
    title: "Digital currency mining",
    severity: Severity::High,
    tactics: &["Execution"],
    techniques: &["T1496.001"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec), Input::Node(NodeEventKind::NetSend)],
    maturity: Maturity::Stable,
    description: "Fires when a process or command associated with digital-currency mining.",
    false_positives: MINER_SCANNING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn digital_currency_mining(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    if view.event.kind == NodeEventKind::NetSend {
        return stratum_login(view.event);
    }
    listed_miner(view, lists)
}

/// A listed miner executed.
fn listed_miner(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    exec_listed(view, &lists.miner_binaries).and_then(|name| one("miner", name))
}

/// A mining client logging in to its pool over plain stratum, whatever the process is called and wherever its pool
/// is configured: Bitcoin-style `mining.subscribe` / `mining.authorize`, Ethereum's `eth_submitLogin`, and the
/// Monero pools' JSON-RPC `login` whose parameters carry the miner's login, password and agent or algorithms
/// (XMRig and its forks). TLS-wrapped stratum is not visible here.
fn stratum_login(event: &NodeEvent) -> Option<Details> {
    let head = event.net.as_ref()?.payload_head.as_deref()?;
    let text: String = String::from_utf8_lossy(head).chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let text = text.to_lowercase();
    let method =
        ["\"method\":\"mining.subscribe\"", "\"method\":\"mining.authorize\"", "\"method\":\"eth_submitlogin\""]
            .into_iter()
            .find(|method| text.contains(method))
            .or_else(|| {
                let monero = text.contains("\"method\":\"login\"")
                    && text.contains("\"pass\"")
                    && (text.contains("\"agent\"") || text.contains("\"algo\""));
                monero.then_some("\"method\":\"login\"")
            })?;
    let destination =
        event.net.as_ref().and_then(|net| Some(format!("{}:{}", net.dst_addr.as_deref()?, net.dst_port?)));
    let mut details = vec![("stratum", method.trim_start_matches("\"method\":").trim_matches('"').to_owned())];
    details.extend(destination.map(|pool| ("pool", pool)));
    Some(details)
}

pub const MINER_IN_CONTAINER: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_CryptoCoinMinerArtifacts",
    title: "Crypto-miner process in a container",
    severity: Severity::Medium,
    tactics: &["Execution", "Exploitation"],
    techniques: &["T1496.001"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a process associated with mining runs inside a container.",
    false_positives: MINER_SCANNING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn miner_in_container(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if !event.in_container {
        return None;
    }
    listed_miner(view, lists).or_else(|| miner_execution(view, lists))
}

pub const MINER_EXECUTION: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_CryptoCoinMinerExecution",
    title: "Process started with crypto-miner arguments",
    severity: Severity::Medium,
    tactics: &["Execution"],
    techniques: &["T1496.001"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a process started the way miners start (stratum+tcp:// URLs, pool/wallet arguments, --donate-level, known miner flags).",
    false_positives: MINER_SCANNING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn miner_execution(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    view.exec()?;
    // Asked twice per exec (here and by the in-container rule): the command line is searched once.
    let found = view.miner.get_or_init(|| {
        if let Some(flag) = lists.miner_flag_matcher.find(view.lower_line()) {
            return one("marker", flag);
        }
        one("pool", lists.miner_pool_matcher.find(view.lower_line())?)
    });
    found.clone()
}

pub const IMAGE_BUILD_ON_NODE: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_ImageBuildOnNode",
    title: "Container image built on a node",
    severity: Severity::Informational,
    tactics: &["Defense Evasion"],
    techniques: &["T1612"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a container image build on a node (docker/buildah/podman/nerdctl build, kaniko).",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

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

pub const KNOWN_DDOS_TOOLKIT: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_KnownLinuxDDoSToolkit",
    title: "Known Linux DDoS toolkit",
    severity: Severity::Medium,
    tactics: &["Persistence", "Lateral Movement", "Execution", "Exploitation"],
    techniques: &["T1498", "T1499"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[
        Input::Node(NodeEventKind::Exec),
        Input::Node(NodeEventKind::FileOpen),
        Input::Node(NodeEventKind::FileRename),
    ],
    maturity: Maturity::Stable,
    description: "Fires when file names belonging to a known DDoS malware toolkit are written or executed.",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn known_ddos_toolkit(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if let Some(name) = exec_listed(view, &lists.ddos_tools) {
        return one("toolkit file", name);
    }
    // A rename writes the toolkit's file under its new name.
    let file = event.file.as_ref()?;
    let target = if event.kind == NodeEventKind::FileRename { file.new_path.as_deref()? } else { &file.path };
    let path = target.to_lowercase();
    let written = opens_for_write(event) || event.kind == NodeEventKind::FileRename;
    let matches = listed(&lists.ddos_tools, &path) || listed(&lists.ddos_tools, basename(&path));
    (written && matches).then(|| vec![("toolkit file", path)])
}

pub const KNOWN_ATTACK_TOOL: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_KnownLinuxAttackTool",
    title: "Known Linux attack tool run",
    severity: Severity::Medium,
    tactics: &["Execution", "Collection", "Command and Control", "Probing"],
    techniques: &["T1046"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a known offensive tool is run (scanners, brute-forcers, post-exploitation kits, container escape kits).",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn known_attack_tool(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    exec_listed(view, &lists.attack_tools).and_then(|name| one("tool", name))
}

pub const KNOWN_CREDENTIAL_ACCESS_TOOL: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_KnownLinuxCredentialAccessTool",
    title: "Known credential-access tool run",
    severity: Severity::Medium,
    tactics: &["Credential Access"],
    techniques: &["T1552", "T1003"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a known credential-access tool runs (identified by process and command line).",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

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

pub const EXPLOIT_ATTEMPT: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_ExploitAttempt",
    title: "Exploit attempt against a known vulnerability",
    severity: Severity::Medium,
    tactics: &["Exploitation"],
    techniques: &["T1190", "T1068"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a command line carries an exploit for a known vulnerability (e.g. Log4Shell ${jndi:, Shellshock () { :;};, known PoC names).",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

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
    if let Some((_, name)) = markers.iter().find(|(marker, _)| lower.contains(marker)) {
        return Some(vec![("exploit", (*name).to_owned()), ("command", line.to_owned())]);
    }
    // Log4j resolves nested lookups before it sees `jndi`: `${${env:X:-j}ndi:…}`, `${${lower:j}ndi:…}`,
    // `${${::-j}${::-n}di:…}`, and a URL may carry it percent-encoded.
    let maybe = lower.contains("${") || lower.contains("%24") || lower.contains("%25");
    // The first 16 KiB (the collector captures 2 KiB of argv): resolving is linear in depth times length.
    let head = &lower[..lower.floor_char_boundary(16 * 1024)];
    (maybe && resolve_log4j_lookups(&percent_decoded(&percent_decoded(head))).contains("${jndi:")).then(|| {
        vec![("exploit", "Log4Shell (CVE-2021-44228), obfuscated lookup".to_owned()), ("command", line.to_owned())]
    })
}

/// `text` with every `%XX` decoded (invalid escapes kept as written; a result that is not UTF-8 gives `text`).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%'
            && let (Some(high), Some(low)) = (hex(at + 1), hex(at + 2))
        {
            out.push((high * 16 + low) as u8);
            at += 3;
            continue;
        }
        out.push(bytes[at]);
        at += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// `text` with the log4j lookups that only spell characters resolved, innermost first: `${anything:-x}` is `x` (a
/// default; not for a `jndi:` name, which is looked up first), `${lower:x}` and `${upper:x}` are `x`; other
/// lookups stay as written. No recursion: a stack of open
/// lookups, so any nesting depth costs one pass.
fn resolve_log4j_lookups(text: &str) -> String {
    let mut open: Vec<String> = vec![String::new()];
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("${") {
            open.push(String::new());
            rest = &rest[2..];
            continue;
        }
        rest = &rest[c.len_utf8()..];
        if c == '}' && open.len() > 1 {
            let inner = open.pop().unwrap_or_default();
            // log4j looks a name up before it falls back to the default: a jndi name is looked up whatever follows.
            let value = match inner.split_once(":-").filter(|(name, _)| !name.starts_with("jndi:")) {
                Some((_, default)) => default.to_owned(),
                None => {
                    if let Some(spelled) = inner.strip_prefix("lower:") {
                        spelled.to_owned()
                    } else if let Some(spelled) = inner.strip_prefix("upper:") {
                        // Java upper-cases `ı` to `I`; the name is then compared without case.
                        spelled.to_uppercase().to_lowercase()
                    } else if let Some(quoted) = inner.strip_prefix("date:'").and_then(|q| q.strip_suffix('\'')) {
                        // A date pattern's quoted text is printed as written.
                        quoted.to_owned()
                    } else {
                        format!("${{{inner}}}")
                    }
                }
            };
            open.last_mut().expect("the outermost level is never popped").push_str(&value);
        } else {
            open.last_mut().expect("the outermost level is never popped").push(c);
        }
    }
    // Lookups left open are kept as written.
    let mut resolved = open.remove(0);
    for unclosed in open {
        resolved.push_str("${");
        resolved.push_str(&unclosed);
    }
    resolved
}

pub const CALDERA_TOOLS: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_MitreCalderaTools",
    title: "MITRE Caldera agent",
    severity: Severity::Medium,
    tactics: &[
        "Persistence",
        "Privilege Escalation",
        "Defense Evasion",
        "Credential Access",
        "Discovery",
        "Lateral Movement",
        "Execution",
        "Collection",
        "Exfiltration",
        "Command and Control",
        "Probing",
        "Exploitation",
    ],
    techniques: &["T1059", "T1105"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when the MITRE Caldera agent (sandcat, \"54ndc47\") runs.",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn caldera_tools(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let name = view.exec()?;
    let line = view.line();
    let named = lists.caldera_agents.contains(name) || lists.caldera_agents.contains(&view.argv0);
    // sandcat's own flags; `splunkd` is its default disguise, so the name alone is not enough there.
    let flags = line.contains("-server ") && (line.contains("-group ") || line.contains("-paw "));
    let fetch = line.contains("/file/download") && line.contains("file:sandcat");
    ((named && (flags || name != "splunkd")) || fetch).then(|| vec![("command", line.to_owned())])
}

pub const CONTAINER_SSH: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_ContainerSSH",
    title: "SSH server running in a container",
    severity: Severity::Informational,
    tactics: &["Execution"],
    techniques: &["T1021.004"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when an SSH server (sshd, dropbear) runs inside a container.",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn container_ssh(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    (event.in_container && lists.ssh_servers.contains(name)).then(|| vec![("server", name.to_owned())])
}

pub const SUSPECT_PASSWORD_CHANGE: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_SuspectPasswordChange",
    title: "Password changed with a pre-computed hash",
    severity: Severity::Medium,
    tactics: &["Credential Access"],
    techniques: &["T1098"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a password is changed with a pre-computed crypt hash (chpasswd -e, usermod -p, openssl passwd piped into a user change).",
    false_positives: ACCOUNT_MANAGEMENT,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn suspect_password_change(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    let line = view.line();
    let pre_hashed = match name {
        "chpasswd" | "chgpasswd" => event.argv.iter().any(|a| a == "-e" || a == "--encrypted"),
        "usermod" => event.argv.iter().any(|a| a == "-p" || a == "--password"),
        _ if lists.shells.contains(name) => {
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
/// ssh's options that take an argument (OpenSSH's getopt string): in a flag group, the rest of the group or the
/// next word is the argument.
const SSH_OPTIONS_WITH_ARGUMENT: &str = "bceilmopBDEFIJLOPQRSwW";

/// The forwards an ssh command line asks for, as (`L`, `R` or `D`, its specification), however written: `-R spec`,
/// `-Rspec`, at the end of a flag group (`-NfR spec`), between the destination and the command (ssh parses options
/// again there, not in the command: `ssh host ls -R /` forwards nothing), or as `-o LocalForward=…` /
/// `RemoteForward` / `DynamicForward` (`=` or white space, any case). `--` ends the options.
fn ssh_forwards(argv: &[String]) -> Vec<(char, String)> {
    let mut forwards = Vec::new();
    let mut words = argv.iter().skip(1);
    let mut destination_seen = false;
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        let Some(group) = word.strip_prefix('-').filter(|g| !g.is_empty()) else {
            if destination_seen {
                break; // the command's first word
            }
            destination_seen = true;
            continue;
        };
        for (at, flag) in group.char_indices() {
            if !SSH_OPTIONS_WITH_ARGUMENT.contains(flag) {
                continue;
            }
            let rest = &group[at + flag.len_utf8()..];
            let value = if rest.is_empty() { words.next().cloned().unwrap_or_default() } else { rest.to_owned() };
            match flag {
                'L' | 'R' | 'D' => forwards.push((flag, value)),
                'o' => {
                    let value = value.trim_start();
                    let (key, spec) = value.split_once(|c: char| c == '=' || c.is_whitespace()).unwrap_or((value, ""));
                    let kind = match key.trim().to_ascii_lowercase().as_str() {
                        "localforward" => 'L',
                        "remoteforward" => 'R',
                        "dynamicforward" => 'D',
                        _ => break,
                    };
                    // The config syntax separates the listen port from the target with white space.
                    forwards.push((kind, spec.split_whitespace().collect::<Vec<_>>().join(":")));
                }
                _ => {}
            }
            break;
        }
    }
    forwards
}

/// The host a local forward (`[bind:]port:host:hostport`, or with `/` for `:`, as ssh accepts) reaches.
fn forward_host(spec: &str) -> Option<&str> {
    let parts: Vec<&str> = if spec.contains('/') { spec.split('/').collect() } else { spec.split(':').collect() };
    (parts.len() >= 3).then(|| parts[parts.len() - 2].trim_matches(['[', ']']))
}

pub const SUSPECT_PORT_FORWARDING: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_SuspectPortForwarding",
    title: "Port forwarding to an external address",
    severity: Severity::Medium,
    tactics: &["Exfiltration", "Command and Control"],
    techniques: &["T1572"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when port forwarding to an external IP is started (ssh -L/-R/-D, socat, iptables DNAT, rinetd, …).",
    false_positives: REMOTE_SUPPORT,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn suspect_port_forwarding(view: &NodeView<'_>, _: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    let line = view.line();
    let forwards = match name {
        // A dynamic forward is a SOCKS proxy; a remote forward opens a port elsewhere into this host (wherever it
        // points: `-R 8080:localhost:80` exposes a local service); a local forward to a public host relays out.
        "ssh" => ssh_forwards(&event.argv).iter().any(|(kind, spec)| match kind {
            'D' | 'R' => true,
            _ => forward_host(spec).is_some_and(|host| !is_loopback_or_private(host)),
        }),
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

pub const REVERSE_SHELL: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_ReverseShell",
    title: "Possible reverse shell",
    severity: Severity::Medium,
    tactics: &["Exfiltration", "Exploitation"],
    techniques: &["T1059.004", "T1095"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a possible reverse shell: a shell whose stdin/stdout is a network socket, or known one-liners (/dev/tcp/, nc -e, socat exec:, python/perl/php socket+dup2).",
    false_positives: REMOTE_SUPPORT,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn reverse_shell(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    let line = view.line();
    let socket_stdio = event.stdio.iter().take(2).any(|kind| kind == "socket");
    if lists.shells.contains(name) && socket_stdio {
        return Some(vec![
            ("why", "shell with a network socket as stdin/stdout".into()),
            ("stdio", event.stdio.join(",")),
        ]);
    }
    let lower = view.lower_line();
    let one_liner = (lists.shells.contains(name) && (lower.contains("/dev/tcp/") || lower.contains("/dev/udp/")))
        || (lists.netcats.contains(name)
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

pub const SUSPECT_PROCESS_TERMINATION: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_SuspectProcessTermination",
    title: "Attempt to kill a security-monitoring process",
    severity: Severity::Low,
    tactics: &["Persistence"],
    techniques: &["T1562.001"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec), Input::Node(NodeEventKind::Signal)],
    maturity: Maturity::Stable,
    description: "Fires when an attempt to kill security-monitoring processes (this product's own collector included).",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn suspect_process_termination(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if let Some(signal) = event.signal.as_ref().filter(|_| event.kind == NodeEventKind::Signal) {
        // SIGKILL, SIGTERM, SIGSTOP, SIGINT, SIGQUIT.
        if ![9, 15, 19, 2, 3].contains(&signal.signal) {
            return None;
        }
        let target = signal.target_executable.as_deref().map(|t| basename(t).to_lowercase())?;
        return listed(&lists.security_processes, &target)
            .then(|| vec![("target", target), ("signal", signal.signal.to_string())]);
    }
    let name = view.exec()?;
    if !lists.process_killers.contains(name) {
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

fn downloader_urls(view: &NodeView<'_>, lists: &NodeLists) -> Option<(String, Vec<String>)> {
    let event = view.event;
    let name = view.exec()?;
    if !lists.downloaders.contains(name) {
        return None;
    }
    let urls = urls(event);
    (!urls.is_empty()).then(|| (name.to_owned(), urls))
}

pub const SUSPECT_DOWNLOAD: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_SuspectDownload",
    title: "Suspicious file download",
    severity: Severity::Medium,
    tactics: &["Privilege Escalation", "Execution", "Exfiltration", "Command and Control"],
    techniques: &["T1105"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a file is downloaded from a source known to distribute malware (threat-intel list of domains/IPs/URL patterns).",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn suspect_download(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let (_, urls) = downloader_urls(view, lists)?;
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

pub const SUSPECT_DOWNLOAD_ARTIFACTS: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_SuspectDownloadArtifacts",
    title: "Download from a suspicious source",
    severity: Severity::Informational,
    tactics: &["Persistence"],
    techniques: &["T1105"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a suspicious download of a remote file (downloader to a raw IP, to a temp or hidden path, from paste sites).",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn suspect_download_artifacts(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    let (tool, urls) = downloader_urls(view, lists)?;
    let mut reasons = Vec::new();
    if let Some(url) = urls.iter().find(|url| {
        let host = url_host(url);
        is_raw_ip(host) && !is_loopback_or_private(host) && host != "169.254.169.254"
    }) {
        reasons.push(format!("from a raw IP address ({url})"));
    }
    if let Some(url) = urls.iter().find(|url| lists.paste_sites.iter().any(|site| url_host(url).ends_with(site))) {
        reasons.push(format!("from a paste site ({url})"));
    }
    if let Some(target) = download_targets(&tool, &event.argv).into_iter().find(|t| is_dropper_target(t)) {
        reasons.push(format!("to a temporary or hidden path ({target})"));
    }
    (!reasons.is_empty()).then(|| vec![("why", reasons.join("; ")), ("command", view.line().to_owned())])
}

pub const MINER_DOWNLOAD: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_CryptoCoinMinerDownload",
    title: "Crypto-miner download",
    severity: Severity::Medium,
    tactics: &["Defense Evasion", "Command and Control", "Exploitation"],
    techniques: &["T1496.001", "T1105"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a download of a file associated with mining (miner release archives, pool-installer scripts).",
    false_positives: MINER_SCANNING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn miner_download(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let (_, urls) = downloader_urls(view, lists)?;
    let url = urls.iter().find(|url| {
        let file = basename(url.split(['?', '#']).next().unwrap_or(url));
        lists.miner_binaries.iter().any(|miner| file.starts_with(miner.as_str()))
            || url.contains("github.com/xmrig/")
            || url.contains("xmrig") && (url.ends_with(".tar.gz") || url.ends_with(".zip"))
            || file.contains("xmr") && file.ends_with(".sh")
    })?;
    one("url", url.clone())
}

pub const DOWNLOAD_AND_RUN_COMBO: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_DownloadAndRunCombo",
    title: "File downloaded and run in one command",
    severity: Severity::Medium,
    tactics: &["Execution", "Command and Control", "Exploitation"],
    techniques: &["T1105", "T1059.004"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec), Input::Node(NodeEventKind::NetConnect)],
    maturity: Maturity::Stable,
    description: "Fires when a file is downloaded and run in the same command (`curl … | sh`, `wget -O- … | bash`, `curl -o f && chmod +x f && ./f`), or when what a network client writes into a pipe is run by the process reading it.",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: Some(
        "per container (per node on the host), the pipes behind each command's stdin and stdout: a pipe whose writer (or an upstream stage's) made an internet connection, read by a shell or interpreter reading its program from stdin or by a process that starts two different programs, whatever the names (`curl … | sh` from a script, a renamed shell, `python3 urllib … | bash`, `/dev/tcp` into `sh`, `curl | base64 -d | sh`); the rule half reads one command line",
    ),
    unit: file!(),
};

fn download_and_run_combo(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    if !lists.shells.contains(name) {
        return None;
    }
    let line = view.line();
    let downloads = lists.downloaders.iter().any(|tool| has_word(line, tool));
    if !downloads {
        return None;
    }
    // `curl … | sh`, `wget -O- … | bash`; not `curl … | python3 -c '…'` (the program is the argument).
    let piped = line.split('|').skip(1).any(|stage| {
        let words: Vec<String> = stage.split_whitespace().map(str::to_owned).collect();
        reads_program_from_stdin(&words, lists)
    });
    // `curl -o f … ; chmod +x f ; ./f` (or `sh f`)
    // The downloader runs inside the shell line: the options every downloader shares.
    let targets = download_targets("", &event.argv);
    let runs_target = targets.iter().any(|target| {
        let after = line.split_once(target.as_str()).map(|(_, rest)| rest).unwrap_or_default();
        let base = basename(target);
        after.contains(&format!("./{base}"))
            || after.contains(&format!(" {target}")) && after.contains("chmod")
            || lists.shells.iter().any(|shell| after.contains(&format!("{shell} {target}")))
    });
    (piped || runs_target).then(|| vec![("command", line.to_owned())])
}

// ---- files ----------------------------------------------------------------------------------------------------

fn is_history_file(path: &str) -> bool {
    let name = basename(path);
    name.ends_with("_history") || name == ".history"
}

pub const HISTORY_FILE_CLEARED: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_HistoryFileCleared",
    title: "Shell history file cleared",
    severity: Severity::Medium,
    tactics: &["Defense Evasion"],
    techniques: &["T1070.003"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[
        Input::Node(NodeEventKind::Exec),
        Input::Node(NodeEventKind::FileOpen),
        Input::Node(NodeEventKind::FileTruncate),
        Input::Node(NodeEventKind::FileUnlink),
        Input::Node(NodeEventKind::FileRename),
    ],
    maturity: Maturity::Stable,
    description: "Fires when a shell history file is cleared (truncated, removed, linked to /dev/null, history -c, HISTFILE unset).",
    false_positives: CLEAN_UP,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn history_file_cleared(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
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
    let shell_clear = lists.shells.contains(name)
        && (line.contains("history -c") || line.contains("unset HISTFILE") || line.contains("HISTFILE=/dev/null"));
    let linked = name == "ln" && line.contains("/dev/null") && event.argv.iter().any(|a| is_history_file(a));
    (shell_clear || linked).then(|| vec![("command", line.to_owned())])
}

pub const SYSTEM_LOG_REMOVAL: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_SystemLogRemoval",
    title: "System log files removed or wiped",
    severity: Severity::Medium,
    tactics: &["Defense Evasion"],
    techniques: &["T1070.002"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[
        Input::Node(NodeEventKind::Exec),
        Input::Node(NodeEventKind::FileOpen),
        Input::Node(NodeEventKind::FileTruncate),
        Input::Node(NodeEventKind::FileUnlink),
    ],
    maturity: Maturity::Stable,
    description: "Fires when log files that track user activity are removed or wiped (wtmp, btmp, lastlog, auth.log, secure, syslog, messages, audit.log; rm, shred, truncate, > file).",
    false_positives: CLEAN_UP,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn system_log_removal(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if let Some(path) = file_path(event) {
        // Log rotation renames and recreates; only emptying or removing the live file counts.
        return (wipes(event) && lists.user_activity_logs.contains(path)).then(|| vec![("file", path.to_owned())]);
    }
    let name = view.exec()?;
    if !lists.file_wipers.contains(name) {
        return None;
    }
    let path = event.argv.iter().skip(1).find(|a| lists.user_activity_logs.contains(a))?;
    Some(vec![("file", path.clone()), ("command", view.line().to_owned())])
}

pub const SSH_KEY_ACCESS: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_SshKeyAccess",
    title: "SSH authorized_keys modified",
    severity: Severity::Informational,
    tactics: &["Unknown"],
    techniques: &["T1098.004"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[
        Input::Node(NodeEventKind::FileOpen),
        Input::Node(NodeEventKind::FileRename),
        Input::Node(NodeEventKind::FileChmod),
        Input::Node(NodeEventKind::FileTruncate),
    ],
    maturity: Maturity::Stable,
    description: "Fires when ~/.ssh/authorized_keys is written or modified in a way seen in malware campaigns.",
    false_positives: ACCOUNT_MANAGEMENT,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn ssh_key_access(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    let file = event.file.as_ref()?;
    let target = if event.kind == NodeEventKind::FileRename { file.new_path.as_deref()? } else { &file.path };
    let keys = basename(target) == "authorized_keys" || basename(target) == "authorized_keys2";
    let modifies = opens_for_write(event)
        || matches!(event.kind, NodeEventKind::FileRename | NodeEventKind::FileChmod | NodeEventKind::FileTruncate);
    // sshd and the cloud agents that provision keys are how keys normally change.
    let provisioner = lists.ssh_key_provisioners.contains(&view.name);
    (keys && modifies && !provisioner).then(|| vec![("file", target.to_owned()), ("process", view.name.to_string())])
}

pub const TIMESTAMP_TAMPERING: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_TimestampTampering",
    title: "Suspicious file timestamp change",
    severity: Severity::Low,
    tactics: &["Persistence", "Defense Evasion"],
    techniques: &["T1070.006"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec), Input::Node(NodeEventKind::FileUtimes)],
    maturity: Maturity::Stable,
    description: "Fires when a system file's times are set explicitly (touch -r/-t/-d on a system path, or copying a system file's times onto another file with touch -r; utimensat with explicit times on a system path by anything but an archive, package or copy tool).",
    false_positives: CLEAN_UP,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn timestamp_tampering(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    let system = |path: &str| lists.system_path_prefixes.iter().any(|p| path.starts_with(p));
    if event.kind == NodeEventKind::FileUtimes {
        let file = event.file.as_ref()?;
        // Explicit times (not "now"): what copying another file's times or backdating does. Archive, package and
        // copy tools restore the times they carry on every install; that is not tampering.
        let explicit = file.mtime_ns.is_some() || file.atime_ns.is_some();
        let preserver = lists.timestamp_preservers.contains(&view.name);
        return (explicit && system(&file.path) && !preserver).then(|| vec![("file", file.path.clone())]);
    }
    // touch, or busybox's and toybox's touch applet: `busybox touch …`, or a link to busybox whose argv[0] is
    // `touch` (the applet is chosen by argv[0], whatever the executable's name).
    let multicall = matches!(view.exec()?, "busybox" | "toybox");
    let argv = match view.exec()? {
        "touch" => &event.argv[..],
        _ if multicall && event.argv.get(1).is_some_and(|a| a == "touch") => &event.argv[1..],
        _ if multicall && event.argv.first().is_some_and(|a| basename(a) == "touch") => &event.argv[..],
        _ => return None,
    };
    // Copying a system file's times onto another file, or setting a system file's times. A build setting its
    // outputs to a fixed epoch (`touch -d @$SOURCE_DATE_EPOCH out`) is neither.
    let touch = TouchArguments::parse(argv);
    let cwd = event.cwd.as_deref().unwrap_or("/");
    let absolute = |path: &str| if path.starts_with('/') { path.to_owned() } else { format!("{cwd}/{path}") };
    let reference = touch.reference.map(absolute).filter(|r| system(r));
    let target = touch.targets.iter().map(|t| absolute(t)).find(|t| system(t));
    (touch.sets_time && (reference.is_some() || target.is_some())).then(|| {
        let mut details = vec![("command", view.line().to_owned())];
        details.extend(reference.map(|r| ("reference", r)));
        details.extend(target.map(|t| ("file", t)));
        details
    })
}

/// touch(1)'s arguments as it reads them: `-r`/`--reference` (a file whose times are copied), `-t`/`-d`/`--date`
/// (a time), in separate, attached (`-rFILE`, `--date=…`), combined (`-cmr FILE`) or abbreviated (`--ref=`,
/// `--da`: getopt accepts any unambiguous prefix) form; the rest are files.
#[derive(Default)]
struct TouchArguments<'a> {
    sets_time: bool,
    reference: Option<&'a str>,
    targets: Vec<&'a str>,
}

impl<'a> TouchArguments<'a> {
    fn parse(argv: &'a [String]) -> Self {
        let mut parsed = Self::default();
        let mut arguments = argv.iter().skip(1).map(String::as_str);
        let mut options = true;
        while let Some(argument) = arguments.next() {
            if !options || argument == "-" || !argument.starts_with('-') {
                parsed.targets.push(argument);
            } else if argument == "--" {
                options = false;
            } else if let Some(long) = argument.strip_prefix("--") {
                let (name, value) = long.split_once('=').map_or((long, None), |(n, v)| (n, Some(v)));
                let reference = !name.is_empty() && "reference".starts_with(name);
                if reference || (!name.is_empty() && "date".starts_with(name)) {
                    parsed.sets_time = true;
                    let value = value.or_else(|| arguments.next());
                    if reference {
                        parsed.reference = value;
                    }
                }
            } else {
                // Short options, combined: the first of r, t, d takes the rest of the word or the next argument.
                let flags = &argument[1..];
                if let Some(index) = flags.find(['r', 't', 'd']) {
                    parsed.sets_time = true;
                    let rest = &flags[index + 1..];
                    let value = if rest.is_empty() { arguments.next() } else { Some(rest) };
                    if flags.as_bytes()[index] == b'r' {
                        parsed.reference = value;
                    }
                }
            }
        }
        parsed
    }
}

pub const KUBECONFIG_ACCESS: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_KubeConfigAccess",
    title: "Kubelet kubeconfig or certificate read",
    severity: Severity::Medium,
    tactics: &["Credential Access"],
    techniques: &["T1552.001"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::FileOpen)],
    maturity: Maturity::Stable,
    description: "Fires when the kubelet kubeconfig (or admin.conf, kubelet client certificates) on the host is read by a process other than kubelet.",
    false_positives: API_CLIENTS,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn kubeconfig_access(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if event.kind != NodeEventKind::FileOpen {
        return None;
    }
    let path = file_path(event)?;
    let sensitive =
        lists.kubelet_credentials.contains(path) || path.starts_with("/var/lib/kubelet/pki/") && path.ends_with(".pem");
    let name = view.name.to_string();
    let system = lists.kubernetes_node_processes.contains(&name);
    (sensitive && !system).then(|| vec![("file", path.to_owned()), ("process", name)])
}

pub const PASSWORD_FILE_ACCESS: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_SuspectPasswordFileAccess",
    title: "Suspicious read of password hashes",
    severity: Severity::Informational,
    tactics: &["Persistence"],
    techniques: &["T1003.008"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::FileOpen)],
    maturity: Maturity::Stable,
    description: "Fires when a suspicious read of encrypted user passwords (/etc/shadow, /etc/gshadow) by a process that normally does not.",
    false_positives: ACCOUNT_MANAGEMENT,
    audit_level: None,
    learned: Some(
        "per workload (per node on the host), the processes that read /etc/shadow or /etc/gshadow besides the shipped readers (`detect.baselines.shadow_readers`); after learning, a new one alerts once. The rule half fires on shells, file and text tools, interpreters and crackers at any time",
    ),
    windowed: None,
    unit: file!(),
};

fn password_file_access(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if event.kind != NodeEventKind::FileOpen {
        return None;
    }
    let path = file_path(event)?;
    let name = view.name.to_string();
    let shadow = path == "/etc/shadow" || path == "/etc/gshadow";
    // The match half: a shell, a file or text tool, a script interpreter or a cracking tool reading it. Any other
    // process new to the node or workload is the baseline half's (`baselines::ShadowReaderBaseline`).
    let interactive =
        lists.shells.contains(&name) || lists.downloaders.contains(&name) || lists.file_tools.contains(&name);
    (shadow && interactive && !lists.shadow_readers.contains(&name))
        .then(|| vec![("file", path.to_owned()), ("process", name)])
}

// ---- network --------------------------------------------------------------------------------------------------

pub const SUSPECT_CONNECTION: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_SuspectConnection",
    title: "SOCKS connection from a process",
    severity: Severity::Medium,
    tactics: &["Execution", "Exfiltration", "Exploitation"],
    techniques: &["T1090"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec), Input::Node(NodeEventKind::NetSend)],
    maturity: Maturity::Stable,
    description: "Fires when an uncommon connection that speaks SOCKS (handshake bytes or SOCKS tooling), rare in normal operation.",
    false_positives: REMOTE_SUPPORT,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn suspect_connection(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
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
    lists.socks_proxies.contains(name).then(|| vec![("tool", name.to_owned())])
}

fn credential_path(path: &str, lists: &NodeLists) -> bool {
    let path = path.to_ascii_lowercase();
    lists.metadata_credential_paths.iter().any(|prefix| path.starts_with(prefix))
}

pub const IMDS_CALL: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_ImdsCall",
    title: "Container called the instance metadata service",
    severity: Severity::Medium,
    tactics: &["Credential Access"],
    techniques: &["T1552.005"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[
        Input::Node(NodeEventKind::Exec),
        Input::Node(NodeEventKind::NetSend),
        Input::Node(NodeEventKind::NetConnect),
    ],
    maturity: Maturity::Stable,
    description: "Fires when a container contacts the cloud instance metadata service (169.254.169.254, fd00:ec2::254, metadata.google.internal) for an identity token.",
    false_positives: API_CLIENTS,
    audit_level: None,
    learned: Some(
        "per workload, the processes that connect to the metadata service (`detect.baselines.metadata_service`); after learning, a new one alerts once. The rule half fires on identity-token requests (credential paths in the request line or URL) at any time",
    ),
    windowed: None,
    unit: file!(),
};

/// The match half: a container asks the metadata service for an identity token, seen in the first bytes of the
/// request it sends or in a downloader's URL. Other contacts are the baseline half's
/// (`baselines::DestinationBaseline::metadata_service`).
fn imds_call(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if !event.in_container {
        return None;
    }
    if let Some(net) = &event.net {
        let address = net.dst_addr.as_deref()?;
        if event.kind != NodeEventKind::NetSend || !lists.metadata_addresses.contains(address) {
            return None;
        }
        let head = String::from_utf8_lossy(net.payload_head.as_deref()?);
        let request = head.lines().next()?;
        let path = request.split_once(' ').and_then(|(_, rest)| rest.split([' ', '?']).next())?;
        return credential_path(path, lists)
            .then(|| vec![("destination", address.to_owned()), ("request", request.to_owned())]);
    }
    let (_, urls) = downloader_urls(view, lists)?;
    let url = urls.iter().find(|url| {
        let host = url_host(url);
        let metadata = lists.metadata_addresses.contains(host) || host == "metadata.google.internal";
        let path = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        metadata && path.find('/').is_some_and(|slash| credential_path(&path[slash..], lists))
    })?;
    one("url", url.clone())
}

const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

pub const KUBERNETES_API: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_KubernetesAPI",
    title: "Suspicious request to the Kubernetes API from a container",
    severity: Severity::Medium,
    tactics: &["Lateral Movement"],
    techniques: &["T1613", "T1552.007", "T1059.013"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[
        Input::Node(NodeEventKind::Exec),
        Input::Node(NodeEventKind::FileOpen),
        Input::Node(NodeEventKind::NetConnect),
    ],
    maturity: Maturity::Stable,
    description: "Fires when a process in a container sends a suspicious request to the Kubernetes API server (unusual process for that workload, service-account token use by shells/downloaders).",
    false_positives: API_CLIENTS,
    audit_level: None,
    learned: Some(
        "per workload, the processes that connect to the API server (`detect.baselines.kubernetes_api`, addresses in `api_server_addresses`); after learning, a new one alerts once",
    ),
    windowed: None,
    unit: file!(),
};

fn kubernetes_api(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if !event.in_container {
        return None;
    }
    let name = view.name.to_string();
    let interactive =
        lists.shells.contains(&name) || lists.downloaders.contains(&name) || lists.token_readers.contains(&name);
    if event.kind == NodeEventKind::FileOpen {
        let path = file_path(event)?;
        let token = path == SERVICE_ACCOUNT_TOKEN || path == SERVICE_ACCOUNT_TOKEN.trim_start_matches("/var");
        return (token && interactive)
            .then(|| vec![("why", "service-account token read by a shell or tool".into()), ("process", name)]);
    }
    let (_, urls) = downloader_urls(view, lists)?;
    let url = urls.iter().find(|url| {
        let host = url_host(url);
        host == "kubernetes.default"
            || host.starts_with("kubernetes.default.svc")
            || url.contains("/api/v1/") && url.contains(":6443")
    })?;
    one("url", url.clone())
}

pub const KUBERNETES_DASHBOARD: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_KubernetesDashboard",
    title: "Suspicious request to the Kubernetes Dashboard from a container",
    severity: Severity::Medium,
    tactics: &["Lateral Movement"],
    techniques: &["T1613", "T1552.007"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec), Input::Node(NodeEventKind::NetSend)],
    maturity: Maturity::Stable,
    description: "Fires when a process in a container sends a suspicious request to the Kubernetes Dashboard.",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn kubernetes_dashboard(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    if !event.in_container {
        return None;
    }
    if event.kind == NodeEventKind::NetSend {
        let head = String::from_utf8_lossy(event.net.as_ref()?.payload_head.as_deref()?).to_lowercase();
        return (head.contains("kubernetes-dashboard") || head.contains("/api/v1/csrftoken/login"))
            .then(|| vec![("request", head.lines().next().unwrap_or_default().to_owned())]);
    }
    let (_, urls) = downloader_urls(view, lists)?;
    let url = urls
        .iter()
        .find(|url| url_host(url).starts_with("kubernetes-dashboard") || url.contains("/api/v1/csrftoken"))?;
    one("url", url.clone())
}

pub const WEBSHELL: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_Webshell",
    title: "Web server spawned a shell (possible web shell)",
    severity: Severity::Medium,
    tactics: &["Persistence", "Exploitation"],
    techniques: &["T1505.003"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a web server process (nginx, httpd, php-fpm, java, node, python web apps) spawns a shell or recon command.",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

fn webshell(view: &NodeView<'_>, lists: &NodeLists) -> Option<Details> {
    let event = view.event;
    let name = view.exec()?;
    let parent = parent_name(event)?;
    if !listed(&lists.web_servers, &parent) {
        return None;
    }
    let suspicious =
        lists.shells.contains(name) || listed(&lists.recon_commands, name) || lists.downloaders.contains(name);
    suspicious.then(|| vec![("web server", parent), ("command", view.line().to_owned())])
}
