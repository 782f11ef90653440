//! K8S.NODE_DownloadAndRunCombo, its windowed half: what a network client writes into a pipe is run by the
//! process reading the other end, whatever either is called and however the pipeline was typed (a script, an
//! interactive shell, `sudo`). The rule half reads one command line; this half follows the pipe itself.
//!
//! The collector names each pipe behind descriptors 0-2 at exec (`pipe:[inode]`), so the two ends of
//! `curl … | sh` meet on the inode. A pipe fires once when both hold:
//! - it carries network data: one of its writers (a process exec'd with the pipe as stdout or stderr) made an
//!   internet connection within `CONNECT_WINDOW_MS` of its start, or that writer's parent did (a shell holding
//!   a `/dev/tcp` socket runs `cat <&3` into the pipe), or that writer reads a pipe that carries network data
//!   (`curl … | base64 -d | sh`, at any depth: the mark is passed downstream once, not searched for);
//! - what reads it runs it: any process on the read end that reads its program from stdin (a shell or
//!   interpreter without a program argument, past `sudo`, `timeout`, a loader or busybox; or a `-c` text that
//!   sources stdin), or a reader given no operands that starts two different programs (a renamed shell), or
//!   three different programs started on the read end by the reader's parent (a `while read` loop).
//!
//! `VAR=$(curl …)` is not a pipe read at exec (the shell reads it itself) and stays quiet, as do `curl … | jq`,
//! `curl … | python3 -c '…'` and `curl … | tar xz` (the program is an argument; one decompressor). Keyed by node
//! and container (the host is one key per node); each key keeps at most `MAX_PIPES` pipes (when full, one that
//! fired or can no longer fire goes first, then the oldest) and `MAX_CONNECTED` connecting processes, for
//! `download_window_secs` of each node's event time. Only the pipes an event touches are judged.

use std::collections::{BTreeMap, BTreeSet};

use palisade_schemas::{NodeEvent, NodeEventKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::detectors::node_runtime::SharedNodeLists;
use crate::detectors::node_runtime::detector::DOWNLOAD_AND_RUN_COMBO;
use crate::detectors::node_runtime::view::{basename, has_operands, process_name, reads_program_from_stdin};
use crate::keyed::{Keyed, KeyedChanges, Update};
use crate::unit::{AlertTypeMeta, Event, Finding, WindowedDetector};
use crate::windowed::{WindowConfig, restore_from, snapshot_of};

use super::detector::{NodeClocks, command_line, container_key_into};

/// Pipes remembered per key.
const MAX_PIPES: usize = 256;
/// Connecting processes remembered per key.
const MAX_CONNECTED: usize = 256;
/// Writers kept per pipe, the newest (`(true; true; curl …) | sh` has several).
const MAX_WRITERS: usize = 4;
/// Program names kept per pipe (for the evidence and the counts).
const MAX_PROGRAMS: usize = 8;
/// Different programs a reader given no operands must start to be taken for a shell.
const CHILDREN_OF_A_SHELL: usize = 2;
/// Different programs the reader's parent must start on the read end to be taken for a loop running lines.
const PROGRAMS_OF_A_LOOP: usize = 3;
/// Bytes of a command line kept in the state (the evidence holds the whole events).
const MAX_COMMAND_BYTES: usize = 256;
/// A connection is a writer's when it is this close to the writer's start (process ids are reused).
const CONNECT_WINDOW_MS: i64 = 600_000;

/// The pipe inode in a `stdio` entry (`pipe:[4711]`).
pub fn pipe_inode(stdio: &str) -> Option<u64> {
    stdio.strip_prefix("pipe:[")?.strip_suffix(']')?.parse().ok()
}

/// The program name a kept command line starts with.
fn first_word(command: &str) -> String {
    basename(command.split(' ').next().unwrap_or_default()).to_lowercase()
}

fn short(command: &[String]) -> String {
    command_line(command, MAX_COMMAND_BYTES)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct End {
    pid: i64,
    ppid: i64,
    at_ms: i64,
    command: String,
    /// The pipe on its stdin, if any: a pipeline stage passes on what it reads.
    input: Option<u64>,
    /// Given no operands: reads its input as a shell would.
    operandless: bool,
}

/// Where a pipe's network data came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Source {
    command: String,
    destination: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Pipe {
    writers: Vec<End>,
    reader: Option<End>,
    /// A process on the read end reads its program from it (kept once seen).
    reads_program: bool,
    /// Programs the reader started.
    children: BTreeSet<String>,
    /// Programs the reader's parent started on the read end, the reader included.
    siblings: BTreeSet<String>,
    source: Option<Source>,
    fired: bool,
    last_ms: i64,
}

impl Pipe {
    /// Eviction order when a key is full: fired or unreadable-by-anyone-yet pipes first, then the oldest.
    fn keep_rank(&self) -> (u8, i64) {
        let rank = if self.fired {
            0
        } else if self.reads_program || self.source.is_some() {
            2
        } else {
            1
        };
        (rank, self.last_ms)
    }

    fn runs_what_it_reads(&self) -> bool {
        let operandless = self.reader.as_ref().is_some_and(|reader| reader.operandless);
        self.reads_program
            || operandless && self.children.len() >= CHILDREN_OF_A_SHELL
            || self.siblings.len() >= PROGRAMS_OF_A_LOOP
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Connection {
    at_ms: i64,
    destination: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct KeyState {
    pipes: BTreeMap<u64, Pipe>,
    /// Pipes with a reader: a key without any skips the search for an exec's parent among readers. Counted
    /// again on restore and expiry.
    #[serde(skip)]
    readers: usize,
    /// Process (tgid) → its latest internet connection.
    connected: BTreeMap<i64, Connection>,
    last_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct PipeSnapshot {
    #[serde(flatten)]
    clocks: NodeClocks,
    keys: Keyed<KeyState>,
}

pub struct PipeToShell {
    config: WindowConfig,
    lists: SharedNodeLists,
    state: PipeSnapshot,
    /// The key of the event being looked at, reused (most events only look a key up).
    key: String,
}

impl PipeToShell {
    pub fn new(config: WindowConfig, lists: SharedNodeLists) -> Self {
        Self { config, lists, state: PipeSnapshot::default(), key: String::new() }
    }
}

impl KeyState {
    fn pipe(&mut self, inode: u64) -> &mut Pipe {
        if !self.pipes.contains_key(&inode) && self.pipes.len() >= MAX_PIPES {
            let evicted = self.pipes.iter().min_by_key(|(_, pipe)| pipe.keep_rank()).map(|(inode, _)| *inode);
            if let Some(evicted) = evicted.and_then(|inode| self.pipes.remove(&inode)) {
                self.readers -= usize::from(evicted.reader.is_some()).min(self.readers);
            }
        }
        self.pipes.entry(inode).or_default()
    }

    /// The connection that makes `writer` a network client: its own or its parent's, near its start.
    fn connection_of(&self, writer: &End) -> Option<&Connection> {
        [writer.pid, writer.ppid].into_iter().find_map(|pid| {
            let connection = self.connected.get(&pid)?;
            ((connection.at_ms - writer.at_ms).abs() <= CONNECT_WINDOW_MS).then_some(connection)
        })
    }

    /// Marks `inode` as carrying `source` and passes the mark to every pipe a reader of it writes into, each
    /// pipe once. Returns the pipes newly marked.
    fn mark(&mut self, inode: u64, source: Source) -> Vec<u64> {
        let mut marked = Vec::new();
        let mut queue = vec![inode];
        if let Some(pipe) = self.pipes.get_mut(&inode).filter(|pipe| pipe.source.is_none()) {
            pipe.source = Some(source.clone());
        } else {
            return marked;
        }
        while let Some(upstream) = queue.pop() {
            marked.push(upstream);
            let downstream: Vec<u64> = self
                .pipes
                .iter()
                .filter(|(_, pipe)| pipe.source.is_none() && pipe.writers.iter().any(|w| w.input == Some(upstream)))
                .map(|(inode, _)| *inode)
                .collect();
            for inode in downstream {
                if let Some(pipe) = self.pipes.get_mut(&inode) {
                    pipe.source = Some(source.clone());
                    queue.push(inode);
                }
            }
        }
        marked
    }
}

impl PipeToShell {
    fn on_connect(&mut self, node: &NodeEvent, key: &str) -> Vec<u64> {
        let Some(net) = &node.net else { return Vec::new() };
        let at = node.timestamp_ms;
        let destination = format!(
            "{}:{}",
            net.dst_addr.as_deref().unwrap_or_default(),
            net.dst_port.map(|port| port.to_string()).unwrap_or_default()
        );
        // Kept whether or not a pipe is known yet: a shell holding a `/dev/tcp` socket connects before the
        // `cat <&3` it starts into the pipe is exec'd.
        if !self.state.keys.contains_key(key) {
            self.state.keys.make_room(self.config.max_keys, |state| state.last_ms);
        }
        let state = self.state.keys.get_or_insert_with(key, KeyState::default);
        state.last_ms = state.last_ms.max(at);
        if !state.connected.contains_key(&node.tgid) && state.connected.len() >= MAX_CONNECTED {
            let oldest = state.connected.iter().min_by_key(|(_, c)| c.at_ms).map(|(pid, _)| *pid);
            if let Some(oldest) = oldest {
                state.connected.remove(&oldest);
            }
        }
        state.connected.insert(node.tgid, Connection { at_ms: at, destination: destination.clone() });
        // The connecting process is the writer or its parent: the download is this connection, by its command.
        let writes: Vec<(u64, Source)> = state
            .pipes
            .iter()
            .filter(|(_, pipe)| pipe.source.is_none())
            .filter(|(_, pipe)| {
                let near = |w: &End| (at - w.at_ms).abs() <= CONNECT_WINDOW_MS;
                pipe.writers.iter().any(|w| (w.pid == node.tgid || w.ppid == node.tgid) && near(w))
            })
            .map(|(inode, _)| (*inode, Source { command: short(&node.argv), destination: destination.clone() }))
            .collect();
        let mut touched = Vec::new();
        for (inode, source) in writes {
            if let Some(pipe) = state.pipes.get_mut(&inode) {
                pipe.last_ms = pipe.last_ms.max(at);
            }
            touched.extend(state.mark(inode, source));
        }
        touched
    }

    fn on_exec(&mut self, node: &NodeEvent, key: &str) -> Vec<u64> {
        let at = node.timestamp_ms;
        let stdin = node.stdio.first().and_then(|entry| pipe_inode(entry));
        let stdout = node.stdio.get(1).and_then(|entry| pipe_inode(entry));
        let stderr = node.stdio.get(2).and_then(|entry| pipe_inode(entry)).filter(|inode| Some(*inode) != stdout);
        let piped = stdin.is_some() || stdout.is_some() || stderr.is_some();
        if !self.state.keys.contains_key(key) {
            if !piped {
                return Vec::new();
            }
            self.state.keys.make_room(self.config.max_keys, |state| state.last_ms);
            self.state.keys.insert(key.to_owned(), KeyState::default());
        }
        // Read only when the process reads a pipe.
        let reads_program = stdin.is_some() && reads_program_from_stdin(&node.argv, &self.lists.current());
        let Some(state) = self.state.keys.get(key) else { return Vec::new() };
        // Most execs write into their container's log pipe and read nothing: that is one writer entry, and the
        // parent is looked up among the readers only when the key has any.
        let read_by_parent: Vec<u64> = if state.readers > 0 {
            let parent = |pipe: &Pipe| pipe.reader.as_ref().is_some_and(|reader| reader.pid == node.ppid);
            state.pipes.iter().filter(|(_, pipe)| parent(pipe)).map(|(inode, _)| *inode).collect()
        } else {
            Vec::new()
        };
        if !piped && read_by_parent.is_empty() {
            return Vec::new();
        }
        // Changed from here on (recorded for the changelog): the exec touches a pipe.
        let state = self.state.keys.get_mut(key).expect("read above");
        state.last_ms = state.last_ms.max(at);
        // A writer keeps no command line (most execs write into their container's log pipe): a connection that
        // comes later names its own process's, and one found now names this exec's.
        let writer = End { pid: node.tgid, ppid: node.ppid, at_ms: at, input: stdin, ..End::default() };
        let end = || End {
            command: short(&node.argv),
            operandless: stdin.is_some() && !has_operands(&node.argv),
            ..writer.clone()
        };
        let mut touched = Vec::new();
        for inode in [stdout, stderr].into_iter().flatten() {
            let upstream = || stdin.and_then(|input| state.pipes.get(&input)?.source.clone());
            let own = state
                .connection_of(&writer)
                .map(|connection| Source { command: short(&node.argv), destination: connection.destination.clone() });
            let source = own.or_else(upstream);
            let writer = writer.clone();
            let pipe = state.pipe(inode);
            pipe.last_ms = at;
            if pipe.writers.len() >= MAX_WRITERS {
                pipe.writers.remove(0);
            }
            pipe.writers.push(writer);
            if let Some(source) = source {
                touched.extend(state.mark(inode, source));
            }
        }
        // What the reader starts: its children (their stdin may be /dev/null, as a background job's is).
        if !read_by_parent.is_empty() {
            let name = process_name(node);
            for inode in &read_by_parent {
                let Some(pipe) = state.pipes.get_mut(inode) else { continue };
                pipe.last_ms = at;
                if pipe.children.len() < MAX_PROGRAMS {
                    pipe.children.insert(name.clone());
                }
                touched.push(*inode);
            }
        }
        if let Some(inode) = stdin {
            let pipe = state.pipe(inode);
            pipe.last_ms = at;
            let sibling = pipe.reader.as_ref().is_some_and(|r| r.ppid == node.ppid && r.pid != node.tgid);
            if sibling && pipe.siblings.len() < MAX_PROGRAMS {
                pipe.siblings.extend(pipe.reader.as_ref().map(|reader| first_word(&reader.command)));
                pipe.siblings.insert(process_name(node));
            }
            // The first process on the read end is the reader; a later one replaces it when it is the image
            // the reader exec'd into (`env bash`, a wrapper's `exec python3`), or when it reads its program
            // there (`| sudo bash`, `| (sleep 1; sh)`): what finally reads the pipe is what counts.
            let replaces = match &pipe.reader {
                None => true,
                Some(reader) => reader.pid == node.tgid || reads_program,
            };
            // A child of the reader is counted as its child, not taken for the reader, unless it reads the program.
            let takes = replaces && (reads_program || !read_by_parent.contains(&inode));
            let first_reader = takes && pipe.reader.is_none();
            if takes {
                pipe.reader = Some(end());
            }
            pipe.reads_program |= reads_program;
            state.readers += usize::from(first_reader);
            touched.push(inode);
        }
        touched
    }
}

impl WindowedDetector for PipeToShell {
    fn meta(&self) -> &'static AlertTypeMeta {
        DOWNLOAD_AND_RUN_COMBO
    }

    fn observe(&mut self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Node(node) = event else { return Vec::new() };
        if !matches!(node.kind, NodeEventKind::Exec | NodeEventKind::NetConnect)
            || !self.state.clocks.on_time(&node.node, node.timestamp_ms, &self.config)
        {
            return Vec::new();
        }
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        container_key_into(node, &mut key);
        let mut touched = match node.kind {
            NodeEventKind::NetConnect => self.on_connect(node, &key),
            _ => self.on_exec(node, &key),
        };
        self.key = key;
        let key = &self.key;
        if touched.is_empty() {
            return Vec::new();
        }
        touched.sort_unstable();
        touched.dedup();
        let Some(state) = self.state.keys.get_mut(key) else { return Vec::new() };
        let mut findings = Vec::new();
        for inode in touched {
            let Some(pipe) = state.pipes.get_mut(&inode) else { continue };
            if pipe.fired || !pipe.runs_what_it_reads() {
                continue;
            }
            let (Some(reader), Some(source)) = (&pipe.reader, &pipe.source) else { continue };
            let mut finding = Finding { subject: format!("{key}/pipe:[{inode}]"), ..Finding::default() };
            finding.details.insert("in_container".into(), node.in_container.to_string());
            finding.details.insert("download_command".into(), source.command.clone());
            finding.details.insert("downloaded_from".into(), source.destination.clone());
            finding.details.insert("run_by".into(), reader.command.clone());
            let programs = |set: &BTreeSet<String>| set.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
            let how = if pipe.reads_program {
                format!("{} reads its program from the pipe", first_word(&reader.command))
            } else if pipe.siblings.len() >= PROGRAMS_OF_A_LOOP {
                format!("the reader's parent started {} on the pipe", programs(&pipe.siblings))
            } else {
                format!("the reader started {}", programs(&pipe.children))
            };
            finding.details.insert("how".into(), how);
            finding.details.insert("pipe".into(), format!("pipe:[{inode}]"));
            findings.push(finding);
            pipe.fired = true;
        }
        findings
    }

    /// By each node's own event time (a node whose clock runs ahead does not expire the others' pipes).
    fn expire(&mut self, now_ms: i64) {
        let span = (self.config.download_window_secs + self.config.lateness_secs) as i64 * 1000;
        let clocks = &self.state.clocks;
        self.state.keys.update(|key, state| {
            let horizon = clocks.now_for(key, now_ms) - span;
            if state.last_ms < horizon {
                return Update::Remove;
            }
            let before = (state.pipes.len(), state.connected.len());
            state.pipes.retain(|_, pipe| pipe.last_ms >= horizon);
            state.readers = state.pipes.values().filter(|pipe| pipe.reader.is_some()).count();
            state.connected.retain(|_, connection| connection.at_ms >= horizon);
            if (state.pipes.len(), state.connected.len()) == before { Update::Keep } else { Update::Changed }
        });
    }

    fn take_keyed_changes(&mut self) -> Option<KeyedChanges> {
        let (all, entries) = self.state.keys.changed_entries();
        Some(KeyedChanges { field: "keys", all, rest: snapshot_of(&self.state.clocks), entries })
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
        restore_from(&mut self.state, state)?;
        for key in self.state.keys.values_mut_unrecorded() {
            key.readers = key.pipes.values().filter(|pipe| pipe.reader.is_some()).count();
        }
        Ok(())
    }

    fn keys(&self) -> usize {
        self.state.keys.len()
    }
}
