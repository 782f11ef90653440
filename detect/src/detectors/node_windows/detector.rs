//! Keys: node + container id for container processes; node + parent process for host processes (the shell a
//! session types into). State is plain maps, serialisable for checkpoints, bounded by `max_keys`. Event time is
//! each node's own: a watermark per node decides lateness and expiry, so one node whose clock runs ahead cannot
//! make every other node's events late (they would be ignored) or expire their open windows. Late events are
//! counted.

use std::collections::{BTreeMap, HashMap};

use palisade_schemas::NodeEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::detectors::node_runtime::SharedNodeLists;
use crate::detectors::node_runtime::false_positives::ADMIN_TOOLING;
use crate::detectors::node_runtime::view::{basename, download_targets, effective_program, exec, urls};
use crate::keyed::{Keyed, KeyedChanges, Update};
use crate::unit::WindowedDetector;
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, Severity, Source};
use crate::unit::{Event, Finding};
use crate::windowed::{WindowConfig, make_room, on_time, restore_from, snapshot_of};
use palisade_schemas::NodeEventKind;

fn key(event: &NodeEvent) -> String {
    match &event.container_id {
        Some(container) => format!("{}/{container}", event.node),
        None => format!("{}/host/{}", event.node, event.ppid),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ReconState {
    /// Recon command → event time it was last seen.
    commands: BTreeMap<String, i64>,
    /// No second burst fires for this key before this event time.
    quiet_until_ms: i64,
    last_ms: i64,
}

/// Each node's newest event time, and how many events came later than the lateness bound behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct NodeClocks {
    #[serde(default)]
    watermarks: HashMap<String, i64>,
    #[serde(default)]
    pub(super) late_events: u64,
}

impl NodeClocks {
    /// Advances `node`'s watermark; false (and counted) when the event is too late for it.
    pub(super) fn on_time(&mut self, node: &str, at_ms: i64, config: &WindowConfig) -> bool {
        let watermark = match self.watermarks.get_mut(node) {
            Some(watermark) => watermark,
            None => {
                make_room(&mut self.watermarks, config.max_keys, |watermark| *watermark);
                self.watermarks.entry(node.to_owned()).or_insert(i64::MIN)
            }
        };
        let on_time = on_time(watermark, at_ms, config.lateness_secs);
        if !on_time {
            self.late_events += 1;
        }
        on_time
    }

    /// The event time to expire `key`'s state by: its node's watermark, never beyond the engine's.
    pub(super) fn now_for(&self, key: &str, engine_now_ms: i64) -> i64 {
        let node = key.split('/').next().unwrap_or_default();
        self.watermarks.get(node).copied().unwrap_or(engine_now_ms).min(engine_now_ms)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ReconSnapshot {
    #[serde(default, flatten)]
    clocks: NodeClocks,
    keys: Keyed<ReconState>,
}

impl ReconSnapshot {
    fn keyed_changes(&mut self) -> KeyedChanges {
        let (all, entries) = self.keys.changed_entries();
        KeyedChanges { field: "keys", all, rest: snapshot_of(&self.clocks), entries }
    }
}

/// K8S.NODE_ReconnaissanceArtifactsBurst: `recon_distinct_commands` different recon commands inside
/// `recon_window_secs`, once per window.
pub struct ReconBurst {
    config: WindowConfig,
    lists: SharedNodeLists,
    state: ReconSnapshot,
}

impl ReconBurst {
    pub fn new(config: WindowConfig, lists: SharedNodeLists) -> Self {
        Self { config, lists, state: ReconSnapshot::default() }
    }
}

pub const RECON: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_ReconnaissanceArtifactsBurst",
    title: "Burst of reconnaissance commands",
    severity: Severity::Low,
    tactics: &["Discovery", "Collection"],
    techniques: &["T1082", "T1033", "T1016", "T1057", "T1613"],
    source: Source::Node,
    kind: DetectionKind::Window,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when several distinct reconnaissance commands (whoami, id, uname -a, hostname, ifconfig/ip a, cat /etc/passwd, ps, netstat/ss, env, mount, …) inside one short window in one container or host.",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};
pub const BACKDOOR: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_LinuxBackdoorArtifact",
    title: "Downloaded file run later (possible backdoor)",
    severity: Severity::Medium,
    tactics: &["Persistence", "Defense Evasion", "Execution", "Exploitation"],
    techniques: &["T1105"],
    source: Source::Node,
    kind: DetectionKind::Window,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when a suspicious file is downloaded and then run, in a pattern seen in backdoor installs.",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

impl WindowedDetector for ReconBurst {
    fn meta(&self) -> &'static AlertTypeMeta {
        RECON
    }

    fn observe(&mut self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Node(node) = event else { return Vec::new() };
        let Some(name) = exec(node) else { return Vec::new() };
        let lists = self.lists.current();
        let mut names = Vec::new();
        if lists.recon_commands.contains(&name) {
            names.push(name.clone());
        }
        // busybox's shell runs `whoami`, `hostname`, `uname` and others in-process (NOFORK applets): no exec
        // follows `sh -c 'whoami; hostname; uname -a'`, so the script's commands count as run.
        // A shell by its file or by what it was called (`exec -a sh ./copy -c …`, `busybox sh -c …`); only a
        // command line with a `-c` option cluster has a script, so no other exec pays for reading its program.
        let has_c = node.argv.iter().skip(1).any(|arg| arg.starts_with(['-', '+']) && arg.contains('c'));
        let shell = has_c && (lists.shells.contains(&name) || lists.shells.contains(&effective_program(&node.argv).0));
        let mut scripted = false;
        if shell {
            let before = names.len();
            names.extend(script_commands(&node.argv).into_iter().filter(|word| lists.recon_commands.contains(word)));
            scripted = names.len() > before;
        }
        if names.is_empty() {
            return Vec::new();
        }
        let at = node.timestamp_ms;
        if !self.state.clocks.on_time(&node.node, at, &self.config) {
            return Vec::new();
        }
        // On the host a session is keyed by the shell the commands run under: a script's words are the shell's
        // own commands, as its children's execs are (keyed by their parent, this shell).
        let key = match (&node.container_id, scripted) {
            (None, true) => format!("{}/host/{}", node.node, node.tgid),
            _ => key(node),
        };
        if !self.state.keys.contains_key(&key) {
            self.state.keys.make_room(self.config.max_keys, |s| s.last_ms);
        }
        let window_ms = self.config.recon_window_secs as i64 * 1000;
        let state = self.state.keys.get_or_insert_with(&key, ReconState::default);
        state.last_ms = state.last_ms.max(at);
        for name in names {
            state.commands.insert(name, at);
        }
        state.commands.retain(|_, seen| *seen > at - window_ms);
        if state.commands.len() < self.config.recon_distinct_commands || at < state.quiet_until_ms {
            return Vec::new();
        }
        let first = state.commands.values().min().copied().unwrap_or(at);
        let commands: Vec<String> = state.commands.keys().cloned().collect();
        state.quiet_until_ms = first + window_ms;
        state.commands.clear();
        let mut finding = Finding { subject: format!("{key}/{first}"), ..Finding::default() };
        finding.details.insert("in_container".into(), node.in_container.to_string());
        finding.details.insert("commands".into(), commands.join(","));
        finding.details.insert("window_secs".into(), self.config.recon_window_secs.to_string());
        finding.details.insert("key".into(), key);
        vec![finding]
    }

    fn expire(&mut self, now_ms: i64) {
        let span = (self.config.recon_window_secs + self.config.lateness_secs) as i64 * 1000;
        let clocks = &self.state.clocks;
        self.state.keys.retain(|key, state| {
            let now = clocks.now_for(key, now_ms);
            state.last_ms >= now - span || state.quiet_until_ms >= now
        });
    }

    fn take_keyed_changes(&mut self) -> Option<KeyedChanges> {
        Some(self.state.keyed_changes())
    }

    fn record_changes_from_now(&mut self) {
        self.state.keys.record_from_now();
    }

    fn late_events(&self) -> u64 {
        self.state.clocks.late_events
    }

    fn snapshot(&self) -> Value {
        snapshot_of(&self.state)
    }

    fn restore(&mut self, state: &Value) -> Result<(), String> {
        restore_from(&mut self.state, state)
    }

    fn keys(&self) -> usize {
        self.state.keys.len()
    }
}

/// The `-c` script of a shell's command line (`sh -c`, `sh -ec`, `sh -o pipefail -c`, `sh -c -- '…'`, past
/// busybox, a loader or a wrapper).
fn shell_script(argv: &[String]) -> Option<&String> {
    let (_, argv) = effective_program(argv);
    let mut args = argv.iter().skip(1);
    let mut command_mode = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-o" | "+o" | "-O" | "+O" | "--rcfile" | "--init-file" => {
                args.next();
            }
            "--" => return command_mode.then(|| args.next()).flatten(),
            long if long.starts_with("--") => {}
            short if short.len() > 1 && short.starts_with(['-', '+']) => command_mode |= short.contains('c'),
            _ => return command_mode.then_some(arg),
        }
    }
    None
}

/// The commands a shell's `-c` script starts: the first word of each simple command, split where the shell
/// splits commands (`;`, `&`, `|`, newlines, parentheses, braces, backquotes, `$(` but not `$((`), outside
/// quotes; quotes and backslashes inside a word are removed as the shell removes them (`who''ami`, `\id`).
/// Variables (`$HOSTNAME`) and quoted text (`echo "x; id"`) are not commands. Empty without `-c`.
fn script_commands(argv: &[String]) -> Vec<String> {
    let Some(script) = shell_script(argv) else { return Vec::new() };
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = script.chars().peekable();
    let mut finish = |words: &mut Vec<String>, word: &mut String, end_of_command: bool| {
        if !word.is_empty() {
            words.push(std::mem::take(word));
        }
        if end_of_command {
            // `VAR=x cmd`, `exec cmd`, `then cmd`: the command is the first other word.
            let first = words.iter().find(|word| {
                !word.contains('=')
                    && !matches!(word.as_str(), "exec" | "command" | "builtin" | "then" | "do" | "else" | "!" | "if")
            });
            if let Some(first) = first {
                commands.push(basename(first).to_owned());
            }
            words.clear();
        }
    };
    // Open substitutions and subshells, with the quote they were opened in (`"$(id)"` runs id inside quotes).
    let mut open: Vec<(char, Option<char>)> = Vec::new();
    while let Some(c) = chars.next() {
        match (quote, c) {
            // `${name}` is a variable, not a group.
            (None | Some('"'), '$') if chars.peek() == Some(&'{') => {
                word.push('$');
                for c in chars.by_ref() {
                    word.push(c);
                    if c == '}' {
                        break;
                    }
                }
            }
            (Some('"'), '$') if chars.peek() == Some(&'(') => {
                chars.next();
                if chars.peek() == Some(&'(') {
                    word.push_str("$(");
                } else {
                    open.push(('(', quote.take()));
                    finish(&mut words, &mut word, true);
                }
            }
            (Some('"'), '`') => {
                open.push(('`', quote.take()));
                finish(&mut words, &mut word, true);
            }
            (Some(closing), c) if c == closing => quote = None,
            (Some('"'), '\\') => word.extend(chars.next()),
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, '\\') => word.extend(chars.next()),
            (None, '$') if chars.peek() == Some(&'(') => {
                chars.next();
                if chars.peek() == Some(&'(') {
                    // `$((…))` is arithmetic: its words are not commands.
                    word.push_str("$((");
                    chars.next();
                    let mut depth = 2;
                    for c in chars.by_ref() {
                        depth += i32::from(c == '(') - i32::from(c == ')');
                        if depth == 0 {
                            break;
                        }
                    }
                } else {
                    open.push(('(', None));
                    finish(&mut words, &mut word, true);
                }
            }
            (None, '(') => {
                open.push(('(', None));
                finish(&mut words, &mut word, true);
            }
            (None, ')') => {
                if let Some(('(', outer)) = open.last().copied() {
                    open.pop();
                    quote = outer;
                }
                finish(&mut words, &mut word, true);
            }
            (None, '`') => {
                match open.last().copied() {
                    Some(('`', outer)) => {
                        open.pop();
                        quote = outer;
                    }
                    _ => open.push(('`', None)),
                }
                finish(&mut words, &mut word, true);
            }
            (None, ';' | '&' | '|' | '\n' | '{' | '}') => finish(&mut words, &mut word, true),
            (None, c) if c.is_whitespace() => finish(&mut words, &mut word, false),
            (None, c) => word.push(c),
        }
    }
    finish(&mut words, &mut word, true);
    commands
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Download {
    at_ms: i64,
    url: String,
    command: String,
}

/// Downloads remembered per key at most (the oldest goes first), and the bytes of a download's command line kept:
/// one container's downloads stay well inside one changelog record, however many it makes.
const MAX_DOWNLOADS: usize = 128;
const MAX_DOWNLOAD_COMMAND_BYTES: usize = 512;

/// A command line as kept in state: the arguments joined by spaces, at most `max` bytes (cut at a character
/// boundary; the arguments past the bound are not joined at all).
pub(super) fn command_line(command: &[String], max: usize) -> String {
    let mut line = String::with_capacity(64);
    for (index, arg) in command.iter().enumerate() {
        if index > 0 {
            line.push(' ');
        }
        line.push_str(arg);
        if line.len() >= max {
            break;
        }
    }
    if line.len() > max {
        let mut end = max;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct BackdoorSnapshot {
    #[serde(default, flatten)]
    clocks: NodeClocks,
    /// Key → downloaded path → the download.
    keys: Keyed<BTreeMap<String, Download>>,
}

impl BackdoorSnapshot {
    fn keyed_changes(&mut self) -> KeyedChanges {
        let (all, entries) = self.keys.changed_entries();
        KeyedChanges { field: "keys", all, rest: snapshot_of(&self.clocks), entries }
    }
}

/// K8S.NODE_LinuxBackdoorArtifact: a file a downloader wrote is run later (by path, or by a shell given it),
/// within `download_window_secs`. Keyed by node and container: paths mean something only inside one.
pub struct BackdoorArtifact {
    config: WindowConfig,
    lists: SharedNodeLists,
    state: BackdoorSnapshot,
}

impl BackdoorArtifact {
    pub fn new(config: WindowConfig, lists: SharedNodeLists) -> Self {
        Self { config, lists, state: BackdoorSnapshot::default() }
    }
}

fn container_key(event: &NodeEvent) -> String {
    let mut key = String::new();
    container_key_into(event, &mut key);
    key
}

/// `container_key` written into `key` (a buffer reused per event).
pub(super) fn container_key_into(event: &NodeEvent, key: &mut String) {
    key.push_str(&event.node);
    key.push('/');
    key.push_str(event.container_id.as_deref().unwrap_or("host"));
}

fn absolute(path: &str, cwd: Option<&str>) -> String {
    match (path.starts_with('/'), cwd) {
        (false, Some(cwd)) => format!("{}/{}", cwd.trim_end_matches('/'), path.trim_start_matches("./")),
        _ => path.to_owned(),
    }
}

impl WindowedDetector for BackdoorArtifact {
    fn meta(&self) -> &'static AlertTypeMeta {
        BACKDOOR
    }

    fn observe(&mut self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Node(node) = event else { return Vec::new() };
        let Some(name) = exec(node) else { return Vec::new() };
        let at = node.timestamp_ms;
        if !self.state.clocks.on_time(&node.node, at, &self.config) {
            return Vec::new();
        }
        let lists = self.lists.current();
        let downloader = lists.downloaders.contains(&name);
        if !downloader && self.state.keys.is_empty() {
            // Nothing downloaded anywhere: nothing this exec could run.
            return Vec::new();
        }
        let key = container_key(node);
        if downloader {
            let targets = download_targets(&name, &node.argv);
            if targets.is_empty() {
                return Vec::new();
            }
            if !self.state.keys.contains_key(&key) {
                self.state
                    .keys
                    .make_room(self.config.max_keys, |d| d.values().map(|d| d.at_ms).max().unwrap_or_default());
            }
            let url = urls(node).into_iter().next().unwrap_or_default();
            let downloads = self.state.keys.get_or_insert_with(&key, BTreeMap::new);
            let command = command_line(&node.argv, MAX_DOWNLOAD_COMMAND_BYTES);
            for target in targets {
                let path = absolute(&target, node.cwd.as_deref());
                if !downloads.contains_key(&path) && downloads.len() >= MAX_DOWNLOADS {
                    let oldest = downloads.iter().min_by_key(|(_, d)| d.at_ms).map(|(path, _)| path.clone());
                    downloads.remove(&oldest.unwrap_or_default());
                }
                downloads.insert(path, Download { at_ms: at, url: url.clone(), command: command.clone() });
            }
            return Vec::new();
        }
        // What runs: the executable, or the script a shell or interpreter is given.
        let mut candidates: Vec<String> = node.executable.iter().cloned().collect();
        if (lists.shells.contains(&name) || name.starts_with("python") || name == "perl")
            && let Some(script) = node.argv.get(1).filter(|a| !a.starts_with('-'))
        {
            candidates.push(absolute(script, node.cwd.as_deref()));
        }
        let window_ms = self.config.download_window_secs as i64 * 1000;
        let Some(downloads) = self.state.keys.get(&key) else { return Vec::new() };
        let Some(path) =
            candidates.into_iter().find(|path| downloads.get(path).is_some_and(|d| at - d.at_ms <= window_ms))
        else {
            return Vec::new();
        };
        let downloads = self.state.keys.get_mut(&key).expect("found above");
        let download = downloads.remove(&path).expect("found above");
        let mut finding = Finding { subject: format!("{key}{path}"), ..Finding::default() };
        finding.details.insert("in_container".into(), node.in_container.to_string());
        finding.details.insert("file".into(), path.clone());
        finding.details.insert("downloaded_from".into(), download.url);
        finding.details.insert("download_command".into(), download.command);
        finding.details.insert("run_after_secs".into(), ((at - download.at_ms) / 1000).to_string());
        finding.details.insert("run_as".into(), basename(&path).to_owned());
        vec![finding]
    }

    fn expire(&mut self, now_ms: i64) {
        let span = (self.config.download_window_secs + self.config.lateness_secs) as i64 * 1000;
        let clocks = &self.state.clocks;
        self.state.keys.update(|key, downloads| {
            let (horizon, before) = (clocks.now_for(key, now_ms) - span, downloads.len());
            downloads.retain(|_, download| download.at_ms >= horizon);
            match downloads.len() {
                0 => Update::Remove,
                after if after < before => Update::Changed,
                _ => Update::Keep,
            }
        });
    }

    fn take_keyed_changes(&mut self) -> Option<KeyedChanges> {
        Some(self.state.keyed_changes())
    }

    fn record_changes_from_now(&mut self) {
        self.state.keys.record_from_now();
    }

    fn late_events(&self) -> u64 {
        self.state.clocks.late_events
    }

    fn snapshot(&self) -> Value {
        snapshot_of(&self.state)
    }

    fn restore(&mut self, state: &Value) -> Result<(), String> {
        restore_from(&mut self.state, state)
    }

    fn keys(&self) -> usize {
        self.state.keys.len()
    }
}
