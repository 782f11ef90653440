//! K8S.NODE_DownloadAndRunCombo, its windowed half: what a network client writes into a pipe is run by the
//! process reading the other end, whatever either is called and however the pipeline was typed (a script, an
//! interactive shell, `xargs`). The rule half reads one command line; this half follows the pipe itself.
//!
//! The collector names each pipe behind descriptors 0-2 at exec (`pipe:[inode]`), so the two ends of
//! `curl … | sh` meet on the inode. A pipe fires once when both hold:
//! - its writer (a process exec'd with the pipe as stdout) made an internet connection, or its parent did (a
//!   shell holding a `/dev/tcp` socket runs `cat <&3` into the pipe);
//! - its reader (a process exec'd with the pipe as stdin) runs what it reads: a shell or interpreter reading its
//!   program from stdin (no `-c` or script operand), or, whatever its name, one given no operands that starts two
//!   different programs (a renamed shell; `tar xz` and `xargs cmd` have operands, and a wrapper script such as a
//!   pyenv shim is given its script). The last image a reader exec'd into is the one judged.
//!
//! `VAR=$(curl …)` is not a pipe read at exec (the shell reads it itself) and stays quiet, as does `curl … | jq`
//! or `curl … | python3 -c '…'` (the program is the argument, not the download). Keyed by node and container (the
//! host is one key per node); each key keeps at most `MAX_PIPES` pipes and `MAX_CONNECTED` connecting processes,
//! the oldest dropped first, for `download_window_secs` of event time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use palisade_schemas::NodeEventKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::detectors::node_runtime::SharedNodeLists;
use crate::detectors::node_runtime::detector::DOWNLOAD_AND_RUN_COMBO;
use crate::detectors::node_runtime::view::{basename, process_name, reads_program_from_stdin};
use crate::unit::{AlertTypeMeta, Event, Finding, WindowedDetector};
use crate::windowed::{WindowConfig, make_room, restore_from, snapshot_of};

use super::detector::{NodeClocks, container_key};

/// Pipes remembered per key.
const MAX_PIPES: usize = 256;
/// Connecting processes remembered per key.
const MAX_CONNECTED: usize = 256;
/// Different programs a reader must start to be taken for a shell when its name says nothing.
const CHILDREN_OF_A_SHELL: usize = 2;
/// Children names kept per pipe (for the evidence and the count).
const MAX_CHILDREN: usize = 8;
/// Writers kept per pipe (`{ curl a; curl b; } | sh` has two).
const MAX_WRITERS: usize = 4;
/// Pipeline stages followed upstream from the reader's pipe to a network client.
const MAX_STAGES: usize = 4;

/// The pipe inode in a `stdio` entry (`pipe:[4711]`).
pub fn pipe_inode(stdio: &str) -> Option<u64> {
    stdio.strip_prefix("pipe:[")?.strip_suffix(']')?.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct End {
    pid: i64,
    ppid: i64,
    at_ms: i64,
    command: String,
    /// The pipe on its stdin, if any: a pipeline stage passes on what it reads.
    #[serde(default)]
    input: Option<u64>,
    /// The reader reads its program from the pipe (a shell or interpreter without a program argument).
    #[serde(default)]
    reads_program: bool,
    /// It was given operands (a script, files, a program): a reader given none reads its input as a shell does.
    #[serde(default)]
    operands: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Pipe {
    writers: Vec<End>,
    reader: Option<End>,
    /// Programs the reader started.
    children: BTreeSet<String>,
    fired: bool,
    last_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Connection {
    at_ms: i64,
    destination: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct KeyState {
    pipes: BTreeMap<u64, Pipe>,
    /// Process (tgid) → its latest internet connection.
    connected: BTreeMap<i64, Connection>,
    last_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PipeSnapshot {
    #[serde(default, flatten)]
    clocks: NodeClocks,
    keys: HashMap<String, KeyState>,
}

pub struct PipeToShell {
    config: WindowConfig,
    lists: SharedNodeLists,
    state: PipeSnapshot,
}

impl PipeToShell {
    pub fn new(config: WindowConfig, lists: SharedNodeLists) -> Self {
        Self { config, lists, state: PipeSnapshot::default() }
    }
}

fn oldest_first<T>(map: &mut BTreeMap<impl Ord + Clone, T>, limit: usize, last_ms: impl Fn(&T) -> i64) {
    while map.len() >= limit {
        let Some(oldest) = map.iter().min_by_key(|(_, value)| last_ms(value)).map(|(key, _)| key.clone()) else {
            return;
        };
        map.remove(&oldest);
    }
}

impl KeyState {
    fn pipe(&mut self, inode: u64) -> &mut Pipe {
        if !self.pipes.contains_key(&inode) {
            oldest_first(&mut self.pipes, MAX_PIPES, |pipe| pipe.last_ms);
        }
        self.pipes.entry(inode).or_default()
    }

    /// The writer of `pipe` that carries what came from the network, with that connection: a writer that
    /// connected (or whose parent did) within the window, or one that reads a pipe such a writer feeds
    /// (`curl … | base64 -d | sh`), up to `MAX_STAGES` pipes upstream.
    fn network_source<'a>(&'a self, pipe: &'a Pipe, window_ms: i64, depth: usize) -> Option<(&'a End, &'a Connection)> {
        pipe.writers.iter().find_map(|writer| {
            let own = [writer.pid, writer.ppid].into_iter().find_map(|pid| {
                self.connected.get(&pid).filter(|connection| (connection.at_ms - writer.at_ms).abs() <= window_ms)
            });
            let upstream = || {
                let input = self.pipes.get(&writer.input?)?;
                (depth < MAX_STAGES).then(|| self.network_source(input, window_ms, depth + 1)).flatten()
            };
            own.map(|connection| (writer, connection)).or_else(upstream)
        })
    }
}

impl WindowedDetector for PipeToShell {
    fn meta(&self) -> &'static AlertTypeMeta {
        DOWNLOAD_AND_RUN_COMBO
    }

    fn observe(&mut self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Node(node) = event else { return Vec::new() };
        let at = node.timestamp_ms;
        if !matches!(node.kind, NodeEventKind::Exec | NodeEventKind::NetConnect)
            || !self.state.clocks.on_time(&node.node, at, &self.config)
        {
            return Vec::new();
        }
        let key = container_key(node);
        match node.kind {
            NodeEventKind::NetConnect => {
                let Some(net) = &node.net else { return Vec::new() };
                let destination = format!(
                    "{}:{}",
                    net.dst_addr.as_deref().unwrap_or_default(),
                    net.dst_port.map(|port| port.to_string()).unwrap_or_default()
                );
                // Kept whether or not a pipe is known yet: a shell holding a `/dev/tcp` socket connects before
                // the `cat <&3` it starts into the pipe is exec'd.
                if !self.state.keys.contains_key(&key) {
                    make_room(&mut self.state.keys, self.config.max_keys, |state| state.last_ms);
                }
                let state = self.state.keys.entry(key.clone()).or_default();
                state.last_ms = state.last_ms.max(at);
                if !state.connected.contains_key(&node.tgid) {
                    oldest_first(&mut state.connected, MAX_CONNECTED, |connection| connection.at_ms);
                }
                state.connected.insert(node.tgid, Connection { at_ms: at, destination });
            }
            NodeEventKind::Exec => {
                let stdin = node.stdio.first().and_then(|entry| pipe_inode(entry));
                let stdout = node.stdio.get(1).and_then(|entry| pipe_inode(entry));
                let read_by_parent = self.state.keys.get(&key).map(|state| {
                    let parent = |pipe: &Pipe| pipe.reader.as_ref().is_some_and(|reader| reader.pid == node.ppid);
                    state.pipes.iter().filter(|(_, pipe)| parent(pipe)).map(|(inode, _)| *inode).collect::<Vec<_>>()
                });
                let read_by_parent = read_by_parent.unwrap_or_default();
                if stdin.is_none() && stdout.is_none() && read_by_parent.is_empty() {
                    return Vec::new();
                }
                if !self.state.keys.contains_key(&key) {
                    make_room(&mut self.state.keys, self.config.max_keys, |state| state.last_ms);
                }
                let lists = self.lists.current();
                let name = process_name(node);
                let reads_program = |argv: &[String]| {
                    let shell = lists.shells.contains(&name);
                    let interpreter = lists.interpreters.contains(&name) || name.starts_with("python");
                    (shell || interpreter) && reads_program_from_stdin(argv, shell)
                };
                let state = self.state.keys.entry(key.clone()).or_default();
                state.last_ms = state.last_ms.max(at);
                let end = |reads_program| End {
                    pid: node.tgid,
                    ppid: node.ppid,
                    at_ms: at,
                    command: node.argv.join(" "),
                    input: stdin,
                    reads_program,
                    operands: node.argv.iter().skip(1).any(|arg| !arg.starts_with(['-', '+'])),
                };
                if let Some(inode) = stdout {
                    let pipe = state.pipe(inode);
                    pipe.last_ms = at;
                    if pipe.writers.len() < MAX_WRITERS {
                        pipe.writers.push(end(false));
                    }
                }
                // What the reader starts: its children (their stdin may be /dev/null, as a background job's is),
                // and, when the reader was a fork that exec'd nothing (`while read l; do $l; done`), the other
                // programs its parent started on the same read end.
                for inode in &read_by_parent {
                    let pipe = state.pipe(*inode);
                    pipe.last_ms = at;
                    if pipe.children.len() < MAX_CHILDREN {
                        pipe.children.insert(name.clone());
                    }
                    // `curl … | sudo bash`: a child on the same read end that reads its program there is the
                    // reader that matters.
                    if stdin == Some(*inode) && reads_program(&node.argv) {
                        pipe.reader = Some(end(true));
                    }
                }
                if let Some(inode) = stdin.filter(|inode| !read_by_parent.contains(inode)) {
                    let pipe = state.pipe(inode);
                    pipe.last_ms = at;
                    match &pipe.reader {
                        // The first image on the read side, or the one it exec'd into (`env bash`, a wrapper
                        // script's `exec python3`): the last one is judged.
                        None => pipe.reader = Some(end(reads_program(&node.argv))),
                        Some(reader) if reader.pid == node.tgid => pipe.reader = Some(end(reads_program(&node.argv))),
                        Some(reader) if reader.ppid == node.ppid && reader.pid != node.tgid => {
                            let first = basename(reader.command.split(' ').next().unwrap_or_default()).to_owned();
                            for program in [first, name.clone()] {
                                if pipe.children.len() < MAX_CHILDREN {
                                    pipe.children.insert(program);
                                }
                            }
                        }
                        Some(_) => {}
                    }
                }
            }
            _ => return Vec::new(),
        }
        let window_ms = self.config.download_window_secs as i64 * 1000;
        let Some(state) = self.state.keys.get_mut(&key) else { return Vec::new() };
        let mut findings = Vec::new();
        let mut fired = Vec::new();
        for (inode, pipe) in state.pipes.iter().filter(|(_, pipe)| !pipe.fired) {
            let Some(reader) = &pipe.reader else { continue };
            // A reader given operands runs its own script (a wrapper's helpers are not the download's).
            let starts_programs = !reader.operands && pipe.children.len() >= CHILDREN_OF_A_SHELL;
            if !(reader.reads_program || starts_programs) {
                continue;
            }
            let Some((writer, connection)) = state.network_source(pipe, window_ms, 0) else { continue };
            let mut finding = Finding { subject: format!("{key}/pipe:[{inode}]"), ..Finding::default() };
            finding.details.insert("in_container".into(), node.in_container.to_string());
            finding.details.insert("download_command".into(), writer.command.clone());
            finding.details.insert("downloaded_from".into(), connection.destination.clone());
            finding.details.insert("run_by".into(), reader.command.clone());
            let how = if reader.reads_program {
                let program = basename(reader.command.split(' ').next().unwrap_or_default());
                format!("{program} reads its program from the pipe")
            } else {
                let children: Vec<&str> = pipe.children.iter().map(String::as_str).collect();
                format!("the reader started {}", children.join(", "))
            };
            finding.details.insert("how".into(), how);
            finding.details.insert("pipe".into(), format!("pipe:[{inode}]"));
            findings.push(finding);
            fired.push(*inode);
        }
        for inode in fired {
            if let Some(pipe) = state.pipes.get_mut(&inode) {
                pipe.fired = true;
            }
        }
        findings
    }

    /// By each node's own event time (a node whose clock runs ahead does not expire the others' pipes).
    fn expire(&mut self, now_ms: i64) {
        let span = (self.config.download_window_secs + self.config.lateness_secs) as i64 * 1000;
        let clocks = &self.state.clocks;
        self.state.keys.retain(|key, state| {
            let horizon = clocks.now_for(key, now_ms) - span;
            state.pipes.retain(|_, pipe| pipe.last_ms >= horizon);
            state.connected.retain(|_, connection| connection.at_ms >= horizon);
            state.last_ms >= horizon
        });
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
