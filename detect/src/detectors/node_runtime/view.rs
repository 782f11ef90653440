//! What the node rules ask of a `NodeEvent`: the executable's name, the command line, the parent, the URLs in the
//! arguments. Names are basenames, lower-cased.

use std::borrow::Cow;
use std::cell::OnceCell;

use palisade_schemas::{NodeEvent, NodeEventKind};

pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `text` lower-cased, borrowed when it is ASCII without capitals (most names are).
fn lower(text: &str) -> Cow<'_, str> {
    if text.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.to_lowercase())
    }
}

/// The name of an executable path as the rules know it: its basename, without the ` (deleted)` the kernel adds
/// to a removed file and without the `memfd:` of a memfd (`/memfd:xmrig (deleted)` is `xmrig`).
pub fn image_name(path: &str) -> &str {
    let name = basename(path.strip_suffix(" (deleted)").unwrap_or(path));
    name.strip_prefix("memfd:").unwrap_or(name)
}

/// The process's name: the executable's basename, else argv[0]'s, else comm; lower-cased.
fn process_name_of(event: &NodeEvent) -> Cow<'_, str> {
    let from_path = event.executable.as_deref().map(image_name).filter(|name| !name.is_empty());
    lower(from_path.or_else(|| event.argv.first().map(|a| basename(a))).unwrap_or(&event.comm))
}

/// The process's name: the executable's basename, else argv[0]'s, else comm.
pub fn process_name(event: &NodeEvent) -> String {
    process_name_of(event).into_owned()
}

/// argv[0]'s basename: a copy of a tool under another path keeps its name there too.
fn argv0_of(event: &NodeEvent) -> Cow<'_, str> {
    event.argv.first().map(|a| lower(basename(a))).unwrap_or_default()
}

/// The parent's executable name (nearest ancestor).
pub fn parent_name(event: &NodeEvent) -> Option<String> {
    event.ancestry.first().map(|parent| image_name(&parent.executable).to_lowercase())
}

pub fn command_line(event: &NodeEvent) -> String {
    event.argv.join(" ")
}

/// An exec event, with its process name.
pub fn exec(event: &NodeEvent) -> Option<String> {
    (event.kind == NodeEventKind::Exec).then(|| process_name(event))
}

/// Words of the arguments that are URLs (`scheme://...` from their first character), lower-cased.
pub fn urls(event: &NodeEvent) -> Vec<String> {
    event
        .argv
        .iter()
        .flat_map(|arg| arg.split_whitespace())
        .map(|word| word.trim_matches(|c| c == '"' || c == '\'').to_lowercase())
        .filter(|word| {
            word.split_once("://").is_some_and(|(scheme, _)| {
                !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
            })
        })
        .collect()
}

/// Host of a URL, without port or credentials.
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(bracketed) = host.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or(bracketed);
    }
    host.split(':').next().unwrap_or(host)
}

/// `word` appears in `text` as a whole word (delimited by non-alphanumerics other than `-`, `_`, `.`).
pub fn has_word(text: &str, word: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_' || c == '.'));
    text.match_indices(word)
        .any(|(at, _)| boundary(text[..at].chars().next_back()) && boundary(text[at + word.len()..].chars().next()))
}

/// Short options taking an argument, per downloader: in a flag group the argument is the rest of the group or the
/// next word (`curl -fsSLo FILE`, `curl -sSoFILE`, `wget -qO FILE`). From `curl --help all` and `wget --help`.
fn short_options_with_argument(tool: &str) -> &'static str {
    match tool {
        "curl" => "AbcCdDeEFHKmoPQrtTuUwxXyYz",
        "wget" => "aABDeiIlOoPQRtTUwX",
        _ => "o",
    }
}

/// Files a download command writes: `-o F`, `-O F` (wget), `--output F`, `--output=F`, `--output-document=F`,
/// an output option at the end of a flag group (`-fsSLo F`, `-qO F`, `-oF`), and wget's `-P DIR` /
/// `--directory-prefix` (the URL's file name under DIR). `tool` is the process name (not argv[0], which the
/// caller of exec chooses); another name reads the options every downloader shares.
pub fn download_targets(tool: &str, argv: &[String]) -> Vec<String> {
    let with_argument = short_options_with_argument(tool);
    let words: Vec<&str> = argv.iter().skip(1).flat_map(|a| a.split_whitespace()).collect();
    let is_target = |word: &&str| !word.starts_with('-') && !word.contains("://");
    let url_name = words.iter().find(|w| w.contains("://")).and_then(|url| {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        Some(basename(path).to_owned()).filter(|name| !name.is_empty() && !path.ends_with("://"))
    });
    let url_name = || url_name.clone();
    let mut targets = Vec::new();
    let mut index = 0;
    while index < words.len() {
        let word = words[index];
        index += 1;
        let long = word.strip_prefix("--output=").or_else(|| word.strip_prefix("--output-document="));
        if let Some(target) = long.filter(|t| !t.is_empty()) {
            targets.push(target.to_owned());
            continue;
        }
        if let Some(dir) = word.strip_prefix("--directory-prefix=").filter(|d| !d.is_empty()) {
            targets.extend(url_name().map(|name| format!("{}/{name}", dir.trim_end_matches('/'))));
            continue;
        }
        if matches!(word, "--output" | "--output-document" | "--directory-prefix") {
            if let Some(target) = words.get(index).filter(|word| is_target(word)) {
                if word == "--directory-prefix" {
                    targets.extend(url_name().map(|name| format!("{}/{name}", target.trim_end_matches('/'))));
                } else {
                    targets.push((*target).to_owned());
                }
                index += 1;
            }
            continue;
        }
        let Some(group) = word.strip_prefix('-').filter(|g| !g.is_empty() && !g.starts_with('-')) else { continue };
        for (at, flag) in group.char_indices() {
            if !(with_argument.contains(flag) || flag == 'O' && tool != "wget") {
                continue;
            }
            // curl's -O takes no argument (the URL's name); kept as before: a following word that is no option
            // and no URL is read as a target.
            let rest = &group[at + flag.len_utf8()..];
            let value = if !rest.is_empty() {
                Some(rest)
            } else if words.get(index).is_some_and(is_target) {
                index += 1;
                Some(words[index - 1])
            } else {
                None
            };
            match (flag, value) {
                ('P', Some(dir)) if tool == "wget" => {
                    targets.extend(url_name().map(|name| format!("{}/{name}", dir.trim_end_matches('/'))))
                }
                ('o' | 'O', Some(target)) => targets.push(target.to_owned()),
                _ => {}
            }
            break;
        }
    }
    targets
}

/// Where droppers write: a hidden name anywhere, or a temporary directory for anything but an archive, a
/// package or a document (build scripts fetch those into /tmp all day).
pub fn is_dropper_target(path: &str) -> bool {
    let hidden = path.split('/').any(|part| part.starts_with('.') && part != "." && part != "..");
    let temp = ["/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/"].iter().any(|p| path.starts_with(p));
    let benign =
        [".tar.gz", ".tgz", ".tar.xz", ".zip", ".deb", ".rpm", ".json", ".txt", ".gpg", ".asc", ".key", ".pem"];
    hidden || temp && !benign.iter().any(|extension| path.ends_with(extension))
}

/// What every rule asks of one event, computed at most once per event. The command lines are made on first use:
/// most node events are file opens and connects, whose rules never read them.
pub struct NodeView<'a> {
    pub event: &'a NodeEvent,
    /// The process name (see `process_name`).
    pub name: Cow<'a, str>,
    pub argv0: Cow<'a, str>,
    line: OnceCell<String>,
    lower_line: OnceCell<String>,
    /// What `miner_execution` found, for the two rules that ask.
    pub(super) miner: OnceCell<Option<Vec<(&'static str, String)>>>,
}

impl<'a> NodeView<'a> {
    pub fn new(event: &'a NodeEvent) -> Self {
        Self {
            name: process_name_of(event),
            argv0: argv0_of(event),
            line: OnceCell::new(),
            lower_line: OnceCell::new(),
            miner: OnceCell::new(),
            event,
        }
    }

    /// The process name, for an exec event.
    pub fn exec(&self) -> Option<&str> {
        (self.event.kind == NodeEventKind::Exec).then_some(self.name.as_ref())
    }

    /// The arguments joined by spaces.
    pub fn line(&self) -> &str {
        self.line.get_or_init(|| command_line(self.event))
    }

    /// `line`, lower-cased.
    pub fn lower_line(&self) -> &str {
        self.lower_line.get_or_init(|| self.line().to_lowercase())
    }
}

/// The program a command line runs, past a dynamic loader (`/lib64/ld-linux-x86-64.so.2 [--options] /bin/sh …`)
/// or busybox (`busybox sh …`): its lower-case name and its argv from its own argv[0].
pub fn effective_program(argv: &[String]) -> (String, &[String]) {
    let argv = past_wrappers(argv);
    let Some(first) = argv.first() else { return (String::new(), argv) };
    let name = basename(first).to_lowercase();
    if name.starts_with("ld-linux") || name.starts_with("ld-musl") || name == "ld.so" {
        let mut index = 1;
        while let Some(arg) = argv.get(index) {
            match arg.as_str() {
                "--library-path"
                | "--preload"
                | "--argv0"
                | "--audit"
                | "--glibc-hwcaps-prepend"
                | "--glibc-hwcaps-mask" => index += 2,
                option if option.starts_with("--") => index += 1,
                _ => break,
            }
        }
        return match argv.get(index) {
            Some(program) => (basename(program).to_lowercase(), &argv[index..]),
            None => (name, argv),
        };
    }
    if name == "busybox" && argv.len() > 1 {
        return (basename(&argv[1]).to_lowercase(), &argv[1..]);
    }
    (name, argv)
}

/// `sudo -u x`, `env A=b`, `timeout 9`, `nohup`, `nice -n 5`, `stdbuf -oL`, `setsid`: what they run.
fn past_wrappers(mut argv: &[String]) -> &[String] {
    for _ in 0..4 {
        let Some(first) = argv.first() else { return argv };
        let name = basename(first);
        let valued: &[&str] = match name {
            "sudo" | "doas" => &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"],
            "env" => &["-u", "-C", "-S"],
            "nice" | "ionice" => &["-n", "-c"],
            "timeout" => &["-s", "-k", "--signal", "--kill-after"],
            "nohup" | "setsid" | "stdbuf" | "exec" | "command" | "time" => &[],
            _ => return argv,
        };
        let mut index = 1;
        while let Some(arg) = argv.get(index) {
            if valued.contains(&arg.as_str()) {
                index += 2;
            } else if arg.starts_with('-') || (name == "env" && arg.contains('=')) {
                index += 1;
            } else {
                break;
            }
        }
        // timeout's duration comes before the command.
        if name == "timeout" {
            index += 1;
        }
        argv = argv.get(index..).unwrap_or_default();
    }
    argv
}

/// Paths that name the process's own stdin: a script operand spelled this way is the pipe.
const STDIN_PATHS: &[&str] = &["-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"];

/// Whether a program text (a `-c`/`-e` argument) runs stdin as code: a shell's `source /dev/stdin`,
/// `. /dev/fd/0`, `eval "$(cat)"`, `sh /dev/stdin`; an interpreter's `exec(sys.stdin.read())` or
/// `eval(STDIN.read)`. Reading stdin as data (`json.load(sys.stdin)`) is not.
fn runs_stdin_as_code(text: &str, shell: bool) -> bool {
    let text = text.to_lowercase();
    if shell {
        let stdin = ["/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "$(cat", "`cat"].iter().any(|s| text.contains(s));
        let runs = ["source ", ". ", "eval", "sh "].iter().any(|verb| text.contains(verb));
        stdin && runs
    } else {
        text.contains("stdin") && ["exec(", "eval(", "eval "].iter().any(|call| text.contains(call))
    }
}

/// How a family of interpreters takes its program: the short options that give it as an argument (`-c`), the
/// short options that take a value (`-W ignore`, `-rnet/http`), and whether the first operand is a program text
/// rather than a file (awk).
struct Grammar {
    program: &'static [char],
    valued: &'static [char],
    program_operand: bool,
}

fn grammar(name: &str, shell: bool) -> Grammar {
    let of = |program, valued| Grammar { program, valued, program_operand: false };
    if shell {
        return of(&['c'], &['o', 'O']);
    }
    match name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.') {
        "python" | "pypy" => of(&['c', 'm'], &['W', 'X', 'Q']),
        "perl" => of(&['e', 'E'], &['I', 'M', 'm', 'x', 'C', 'd', 'D', 'l', '0']),
        "ruby" | "irb" => of(&['e'], &['r', 'I', 'E', 'C', 'x', 'K', 'T', 'W', '0']),
        "node" | "nodejs" | "deno" | "bun" => of(&['e', 'p'], &['r']),
        "php" => of(&['r', 'B', 'R', 'F', 'E'], &['d', 'c', 'z', 't']),
        "lua" | "luajit" => of(&['e'], &['l']),
        "awk" | "gawk" | "mawk" | "nawk" => Grammar { program: &['e'], valued: &['v', 'F'], program_operand: true },
        _ => of(&['c', 'e'], &[]),
    }
}

/// Whether the command line (a shell or an interpreter, past a loader or busybox) reads its program from
/// stdin: no program option (`sh -c`, `python3 -m`, `perl -e`) and no script operand other than a spelling of
/// stdin, or `-s`/`-`/`--` first; or a program text that itself runs stdin (`bash -c 'source /dev/stdin'`).
/// Options taking a value (`-o pipefail`, `-W ignore`, `-rnet/http`) are skipped with their value.
pub fn reads_program_from_stdin(argv: &[String], lists: &super::NodeLists) -> bool {
    let (name, argv) = effective_program(argv);
    let shell = lists.shells.contains(&name);
    if !shell && !lists.interpreters.contains(&name) && !name.starts_with("python") {
        return false;
    }
    let grammar = grammar(&name, shell);
    let program_text = |text: Option<&String>| text.is_some_and(|text| runs_stdin_as_code(text, shell));
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--" | "-s" => return !grammar.program_operand || shell,
            stdin if STDIN_PATHS.contains(&stdin) => return !grammar.program_operand,
            "--rcfile" | "--init-file" => {
                args.next();
            }
            long if long.starts_with("--") => {}
            short if short.len() > 1 && short.starts_with(['-', '+']) => {
                for (at, flag) in short.char_indices().skip(1) {
                    if grammar.program.contains(&flag) {
                        let attached = &short[at + flag.len_utf8()..];
                        let text = if attached.is_empty() { args.next() } else { None };
                        return program_text(text) || program_text(Some(&attached.to_owned()));
                    }
                    if grammar.valued.contains(&flag) {
                        if at + flag.len_utf8() == short.len() {
                            args.next();
                        }
                        break;
                    }
                }
            }
            // awk's first operand is its program; anyone else's is a script file.
            operand => return grammar.program_operand && program_text(Some(&operand.to_owned())),
        }
    }
    !grammar.program_operand
}

/// Whether a command line gives its program operands, read as a shell reads its own: `x`, `x -i` and
/// `x -s foo` read stdin (no operands); `x file`, `x -c cmd` and `tar xz` do not.
pub fn has_operands(argv: &[String]) -> bool {
    let (_, argv) = effective_program(argv);
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--" | "-s" => return false,
            stdin if STDIN_PATHS.contains(&stdin) => return false,
            "-o" | "+o" | "-O" | "+O" => {
                args.next();
            }
            option if option.starts_with(['-', '+']) && option.len() > 1 => {
                if !option.starts_with("--") && option.contains('c') {
                    return true;
                }
            }
            _ => return true,
        }
    }
    false
}
