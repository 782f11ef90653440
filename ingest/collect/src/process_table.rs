//! The process table: what each live process runs, and who its parent is, so every event carries its
//! ancestry. Bounded: exited processes are kept a short while (their children's events may still be in flight),
//! then evicted; past `max_entries`, the oldest exited entries go first.

use std::collections::VecDeque;
use std::sync::Mutex;

use dashmap::DashMap;
use palisade_schemas::ProcessRef;

#[derive(Debug, Clone)]
pub struct ProcessEntry {
    pub ppid: u32,
    pub executable: String,
    pub argv: Vec<String>,
}

/// Bytes of each ancestor's command line an event carries: enough to tell `sh -c <script>` apart, without
/// copying a long script into every event of its descendants (measured: ancestry copies were the collector's
/// largest cost on an open storm).
pub const ANCESTOR_ARGV_BYTES: usize = 256;

/// The first arguments of `argv`, at most `limit` bytes in all; the last one kept is cut at a character boundary.
pub fn capped_argv(argv: &[String], limit: usize) -> Vec<String> {
    let mut kept = Vec::new();
    let mut used = 0;
    for arg in argv {
        if used >= limit {
            break;
        }
        let room = limit - used;
        if arg.len() <= room {
            kept.push(arg.clone());
            used += arg.len() + 1;
        } else {
            let cut = (0..=room).rev().find(|at| arg.is_char_boundary(*at)).unwrap_or(0);
            kept.push(arg[..cut].to_owned());
            break;
        }
    }
    kept
}

pub struct ProcessTable {
    entries: DashMap<u32, ProcessEntry>,
    exited: Mutex<VecDeque<u32>>,
    /// Deepest ancestry reported.
    max_depth: usize,
    max_entries: usize,
    /// Exited entries kept for late events.
    keep_exited: usize,
}

impl ProcessTable {
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: DashMap::new(),
            exited: Mutex::new(VecDeque::new()),
            max_depth: 8,
            max_entries,
            keep_exited: 1024,
        }
    }

    /// Seeds the table from `/proc` so processes started before the collector have ancestry.
    pub fn seed_from_proc(&self) {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let ppid = read_ppid(pid).unwrap_or(0);
            let executable =
                std::fs::read_link(format!("/proc/{pid}/exe")).map(|p| p.display().to_string()).unwrap_or_default();
            let argv = std::fs::read(format!("/proc/{pid}/cmdline")).map(|raw| split_nul(&raw)).unwrap_or_default();
            self.entries.insert(pid, ProcessEntry { ppid, executable, argv });
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn record_fork(&self, parent_tgid: u32, child: u32) {
        if child == parent_tgid {
            return;
        }
        let inherited = self.entries.get(&parent_tgid).map(|p| (p.executable.clone(), p.argv.clone()));
        let (executable, argv) = inherited.unwrap_or_default();
        self.entries.entry(child).or_insert(ProcessEntry { ppid: parent_tgid, executable, argv });
        self.enforce_bound();
    }

    /// Records an exec and returns the parent pid.
    pub fn record_exec(&self, tgid: u32, executable: &str, argv: &[String]) -> u32 {
        let ppid = self.entries.get(&tgid).map(|e| e.ppid).or_else(|| read_ppid(tgid)).unwrap_or(0);
        self.entries.insert(tgid, ProcessEntry { ppid, executable: executable.to_owned(), argv: argv.to_vec() });
        self.enforce_bound();
        ppid
    }

    pub fn record_exit(&self, tgid: u32) {
        let mut exited = self.exited.lock().expect("process table lock");
        exited.push_back(tgid);
        while exited.len() > self.keep_exited {
            if let Some(old) = exited.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    /// Executable and argv of a live (or recently exited) process.
    pub fn command(&self, tgid: u32) -> Option<(String, Vec<String>)> {
        self.entries.get(&tgid).map(|e| (e.executable.clone(), e.argv.clone()))
    }

    pub fn executable(&self, tgid: u32) -> Option<String> {
        self.entries.get(&tgid).map(|e| e.executable.clone()).filter(|e| !e.is_empty())
    }

    pub fn ppid(&self, tgid: u32) -> u32 {
        self.entries.get(&tgid).map(|e| e.ppid).unwrap_or(0)
    }

    /// Parents of `tgid`, nearest first, each with its command line cut at `ANCESTOR_ARGV_BYTES`.
    pub fn ancestry(&self, tgid: u32) -> Vec<ProcessRef> {
        let mut chain = Vec::new();
        let mut current = self.ppid(tgid);
        while current > 0 && chain.len() < self.max_depth {
            let Some(entry) = self.entries.get(&current) else {
                break;
            };
            let argv = capped_argv(&entry.argv, ANCESTOR_ARGV_BYTES);
            chain.push(ProcessRef { pid: i64::from(current), executable: entry.executable.clone(), argv });
            if entry.ppid == current {
                break;
            }
            current = entry.ppid;
        }
        chain
    }

    fn enforce_bound(&self) {
        if self.entries.len() <= self.max_entries {
            return;
        }
        let mut exited = self.exited.lock().expect("process table lock");
        while self.entries.len() > self.max_entries {
            match exited.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => {
                    // Only live processes left: drop an arbitrary one rather than grow without bound.
                    let Some(victim) = self.entries.iter().next().map(|e| *e.key()) else {
                        break;
                    };
                    self.entries.remove(&victim);
                }
            }
        }
    }
}

fn read_ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

pub fn split_nul(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Most bytes of a command line read back from `/proc/<pid>/cmdline` for an argv the kernel capture truncated.
pub const MAX_COMPLETED_ARGV_BYTES: usize = 32 * 1024;

/// `captured` (truncated by the kernel capture) completed from `/proc/<pid>/cmdline`, and whether it is still
/// truncated. The process's current command line is taken only when its arguments begin as captured (the last
/// captured one may be cut short), so a process that exec'd again or exited, or whose pid was reused, keeps the
/// capture.
pub fn complete_argv(pid: u32, captured: Vec<String>) -> Vec<String> {
    match read_cmdline(pid) {
        Some((full, _)) if completes(&captured, &full) => full,
        _ => captured,
    }
}

/// `/proc/<pid>/cmdline` as arguments, at most `MAX_COMPLETED_ARGV_BYTES` of it, and whether it was longer.
pub fn read_cmdline(pid: u32) -> Option<(Vec<String>, bool)> {
    use std::io::Read;
    let mut raw = Vec::new();
    std::fs::File::open(format!("/proc/{pid}/cmdline"))
        .and_then(|file| file.take(MAX_COMPLETED_ARGV_BYTES as u64 + 1).read_to_end(&mut raw))
        .ok()?;
    let longer = raw.len() > MAX_COMPLETED_ARGV_BYTES;
    raw.truncate(MAX_COMPLETED_ARGV_BYTES);
    Some((split_nul(&raw), longer))
}

/// `full` has more than `captured`, and every captured argument but the last is the same; the last is a prefix
/// (less the replacement characters of a multi-byte character the capture cut in two).
fn completes(captured: &[String], full: &[String]) -> bool {
    let Some((last, whole)) = captured.split_last() else { return false };
    let last = last.trim_end_matches('\u{FFFD}');
    full.len() >= captured.len()
        && full.iter().map(String::len).sum::<usize>() > captured.iter().map(String::len).sum::<usize>()
        && whole.iter().zip(full).all(|(a, b)| a == b)
        && full[whole.len()].starts_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_argv_is_completed_only_by_the_same_command_line() {
        let words = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let captured = words("xmrig -o stra");
        assert!(completes(&captured, &words("xmrig -o stratum+tcp://pool:4444 -u w")));
        assert!(!completes(&captured, &words("xmrig -o strb")), "another last argument");
        assert!(!completes(&captured, &words("sleep 5 and more")), "another process");
        assert!(!completes(&captured, &words("xmrig -o stra")), "nothing more");
        assert!(!completes(&[], &words("x")));
        // This process's own command line completes a capture of its first bytes.
        let ours = split_nul(&std::fs::read("/proc/self/cmdline").unwrap());
        let mut cut = ours.clone();
        let last = cut.last_mut().unwrap();
        last.truncate(last.len() / 2);
        assert_eq!(complete_argv(std::process::id(), cut), ours);
        assert_eq!(complete_argv(u32::MAX, words("x y")), words("x y"), "no such process");
        // A capture that cut a multi-byte character ends in a replacement character.
        let padded = vec!["xmrig".to_owned(), "é".repeat(3), "-o".to_owned(), "stratum+tcp://p:1".to_owned()];
        let cut = vec!["xmrig".to_owned(), "é\u{FFFD}".to_owned()];
        assert!(completes(&cut, &padded));
    }

    #[test]
    fn ancestry_follows_forks_and_execs_nearest_first() {
        let table = ProcessTable::new(100);
        table.record_exec(10, "/usr/sbin/nginx", &["nginx".into()]);
        table.record_fork(10, 11);
        table.record_exec(11, "/bin/sh", &["sh".into(), "-c".into(), "id".into()]);
        table.record_fork(11, 12);
        table.record_exec(12, "/usr/bin/id", &["id".into()]);
        let chain: Vec<String> = table.ancestry(12).into_iter().map(|p| p.executable).collect();
        assert_eq!(chain, ["/bin/sh", "/usr/sbin/nginx"]);
        assert_eq!(table.ppid(12), 11);
    }

    #[test]
    fn ancestor_command_lines_are_capped() {
        let argv = vec!["sh".to_owned(), "-c".to_owned(), "é".repeat(300)];
        let capped = capped_argv(&argv, 20);
        assert_eq!(capped[..2], ["sh", "-c"]);
        assert_eq!(capped[2], "é".repeat(7), "cut at a character boundary within the limit");
        assert_eq!(capped_argv(&argv[..2], 20), ["sh", "-c"]);
        let table = ProcessTable::new(16);
        table.record_exec(10, "/bin/sh", &argv);
        table.record_fork(10, 11);
        table.record_exec(11, "/bin/true", &["true".to_owned()]);
        let ancestry = table.ancestry(11);
        assert_eq!(ancestry[0].executable, "/bin/sh");
        assert!(ancestry[0].argv.iter().map(String::len).sum::<usize>() <= ANCESTOR_ARGV_BYTES);
        assert_eq!(table.command(10).unwrap().1, argv, "the process's own command line stays whole");
    }

    #[test]
    fn the_table_stays_bounded() {
        let table = ProcessTable::new(50);
        for pid in 1..=500u32 {
            table.record_fork(1, pid + 1000);
            table.record_exit(pid + 1000);
        }
        assert!(table.len() <= 50, "{} entries", table.len());
    }

    #[test]
    fn nul_separated_argv_splits() {
        assert_eq!(split_nul(b"ls\0-la\0/tmp\0"), ["ls", "-la", "/tmp"]);
    }
}
