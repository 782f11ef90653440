//! The node detectors' lists: data files shipped in `detect/data/node/` (each says where its entries come from),
//! overridable file by file from a directory (`detect.node_lists_dir`, same file names), and re-read when a file
//! there changes, without a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::lists::{Names, Reloading};

/// (file name, shipped text) for every list.
const SHIPPED: [(&str, &str); 36] = [
    ("miner_binaries.txt", include_str!("../../../data/node/miner_binaries.txt")),
    ("miner_pools.txt", include_str!("../../../data/node/miner_pools.txt")),
    ("miner_flags.txt", include_str!("../../../data/node/miner_flags.txt")),
    ("attack_tools.txt", include_str!("../../../data/node/attack_tools.txt")),
    ("credential_tools.txt", include_str!("../../../data/node/credential_tools.txt")),
    ("ddos_tools.txt", include_str!("../../../data/node/ddos_tools.txt")),
    ("bot_names.txt", include_str!("../../../data/node/bot_names.txt")),
    ("recon_commands.txt", include_str!("../../../data/node/recon_commands.txt")),
    ("security_processes.txt", include_str!("../../../data/node/security_processes.txt")),
    ("malware_sources.txt", include_str!("../../../data/node/malware_sources.txt")),
    ("web_servers.txt", include_str!("../../../data/node/web_servers.txt")),
    ("shells.txt", include_str!("../../../data/node/shells.txt")),
    ("downloaders.txt", include_str!("../../../data/node/downloaders.txt")),
    ("interpreters.txt", include_str!("../../../data/node/interpreters.txt")),
    ("runtime_inits.txt", include_str!("../../../data/node/runtime_inits.txt")),
    ("container_clis.txt", include_str!("../../../data/node/container_clis.txt")),
    ("account_tools.txt", include_str!("../../../data/node/account_tools.txt")),
    ("privileged_groups.txt", include_str!("../../../data/node/privileged_groups.txt")),
    ("caldera_agents.txt", include_str!("../../../data/node/caldera_agents.txt")),
    ("ssh_servers.txt", include_str!("../../../data/node/ssh_servers.txt")),
    ("netcats.txt", include_str!("../../../data/node/netcats.txt")),
    ("process_killers.txt", include_str!("../../../data/node/process_killers.txt")),
    ("file_wipers.txt", include_str!("../../../data/node/file_wipers.txt")),
    ("ssh_key_provisioners.txt", include_str!("../../../data/node/ssh_key_provisioners.txt")),
    ("kubernetes_node_processes.txt", include_str!("../../../data/node/kubernetes_node_processes.txt")),
    ("socks_proxies.txt", include_str!("../../../data/node/socks_proxies.txt")),
    ("token_readers.txt", include_str!("../../../data/node/token_readers.txt")),
    ("paste_sites.txt", include_str!("../../../data/node/paste_sites.txt")),
    ("user_activity_logs.txt", include_str!("../../../data/node/user_activity_logs.txt")),
    ("system_path_prefixes.txt", include_str!("../../../data/node/system_path_prefixes.txt")),
    ("kubelet_credentials.txt", include_str!("../../../data/node/kubelet_credentials.txt")),
    ("shadow_readers.txt", include_str!("../../../data/node/shadow_readers.txt")),
    ("file_tools.txt", include_str!("../../../data/node/file_tools.txt")),
    ("metadata_addresses.txt", include_str!("../../../data/node/metadata_addresses.txt")),
    ("metadata_credential_paths.txt", include_str!("../../../data/node/metadata_credential_paths.txt")),
    ("timestamp_preservers.txt", include_str!("../../../data/node/timestamp_preservers.txt")),
];

/// Lists compared as written (paths, group names): not lower-cased on load, so an entry with capitals still
/// matches. The others are names compared lower-cased.
const KEEP_CASE: [&str; 4] =
    ["user_activity_logs.txt", "system_path_prefixes.txt", "kubelet_credentials.txt", "privileged_groups.txt"];

fn parse_as_written(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse(text: &str) -> Vec<String> {
    parse_as_written(text).into_iter().map(|entry| entry.to_lowercase()).collect()
}

/// Substring search for many patterns at once (one pass over the text, not one per pattern).
#[derive(Debug, Clone)]
pub struct Matcher {
    patterns: Vec<String>,
    automaton: Option<aho_corasick::AhoCorasick>,
}

impl Matcher {
    fn new(patterns: &[String]) -> Self {
        let automaton = aho_corasick::AhoCorasick::new(patterns).ok().filter(|_| !patterns.is_empty());
        Self { patterns: patterns.to_vec(), automaton }
    }

    /// The first pattern (in list order of the leftmost match) found in `text`.
    pub fn find(&self, text: &str) -> Option<&str> {
        let found = self.automaton.as_ref()?.find(text)?;
        Some(self.patterns[found.pattern().as_usize()].as_str())
    }
}

impl Default for Matcher {
    fn default() -> Self {
        Self::new(&[])
    }
}

/// Every list, entries lower-cased, with matchers for the lists searched inside command lines.
#[derive(Debug, Clone, Default)]
pub struct NodeLists {
    pub miner_binaries: Names,
    pub miner_pools: Names,
    pub miner_flags: Names,
    pub attack_tools: Names,
    pub credential_tools: Names,
    pub ddos_tools: Names,
    pub bot_names: Names,
    pub recon_commands: Names,
    pub security_processes: Names,
    pub malware_sources: Names,
    pub web_servers: Names,
    pub shells: Names,
    pub downloaders: Names,
    pub interpreters: Names,
    pub runtime_inits: Names,
    pub container_clis: Names,
    pub account_tools: Names,
    pub privileged_groups: Names,
    pub caldera_agents: Names,
    pub ssh_servers: Names,
    pub netcats: Names,
    pub process_killers: Names,
    pub file_wipers: Names,
    pub ssh_key_provisioners: Names,
    pub kubernetes_node_processes: Names,
    pub socks_proxies: Names,
    pub token_readers: Names,
    pub paste_sites: Names,
    pub user_activity_logs: Names,
    pub system_path_prefixes: Names,
    pub kubelet_credentials: Names,
    pub shadow_readers: Names,
    pub file_tools: Names,
    pub metadata_addresses: Names,
    pub metadata_credential_paths: Names,
    pub timestamp_preservers: Names,
    /// `miner_flags` and `miner_pools` as matchers over a lower-cased command line.
    pub miner_flag_matcher: Matcher,
    pub miner_pool_matcher: Matcher,
}

impl NodeLists {
    pub fn shipped() -> Self {
        Self::from_texts(|_| None).expect("shipped lists need no files")
    }

    /// Each list from `override_text(file name)` when that gives one, else the shipped text.
    fn from_texts(mut override_text: impl FnMut(&str) -> Option<std::io::Result<String>>) -> std::io::Result<Self> {
        let mut lists = Vec::with_capacity(SHIPPED.len());
        for (name, shipped) in SHIPPED {
            let parse = if KEEP_CASE.contains(&name) { parse_as_written } else { parse };
            lists.push(match override_text(name) {
                Some(text) => parse(&text?),
                None => parse(shipped),
            });
        }
        let mut lists = lists.into_iter();
        let mut next = || Names::new(lists.next().unwrap_or_default());
        let mut built = Self {
            miner_binaries: next(),
            miner_pools: next(),
            miner_flags: next(),
            attack_tools: next(),
            credential_tools: next(),
            ddos_tools: next(),
            bot_names: next(),
            recon_commands: next(),
            security_processes: next(),
            malware_sources: next(),
            web_servers: next(),
            shells: next(),
            downloaders: next(),
            interpreters: next(),
            runtime_inits: next(),
            container_clis: next(),
            account_tools: next(),
            privileged_groups: next(),
            caldera_agents: next(),
            ssh_servers: next(),
            netcats: next(),
            process_killers: next(),
            file_wipers: next(),
            ssh_key_provisioners: next(),
            kubernetes_node_processes: next(),
            socks_proxies: next(),
            token_readers: next(),
            paste_sites: next(),
            user_activity_logs: next(),
            system_path_prefixes: next(),
            kubelet_credentials: next(),
            shadow_readers: next(),
            file_tools: next(),
            metadata_addresses: next(),
            metadata_credential_paths: next(),
            timestamp_preservers: next(),
            miner_flag_matcher: Matcher::default(),
            miner_pool_matcher: Matcher::default(),
        };
        built.miner_flag_matcher = Matcher::new(&built.miner_flags);
        built.miner_pool_matcher = Matcher::new(&built.miner_pools);
        Ok(built)
    }

    /// The shipped lists with every file present in `dir` taking the place of its shipped twin.
    pub fn from_dir(dir: &Path) -> std::io::Result<Self> {
        Self::from_texts(|name| {
            let path = dir.join(name);
            path.exists().then(|| std::fs::read_to_string(&path))
        })
    }
}

/// The lists every node detector shares; cheap to clone.
#[derive(Clone)]
pub struct SharedNodeLists(Arc<Reloading<NodeLists>>);

impl SharedNodeLists {
    pub fn fixed(lists: NodeLists) -> Self {
        Self(Arc::new(Reloading::fixed(lists)))
    }

    /// Lists overridden from `dir`, re-read at most every `check_every` when one of its list files changed
    /// (appeared, vanished or was modified); a directory that stops loading keeps the previous lists.
    pub fn from_dir(dir: &Path, check_every: Duration) -> Result<Self, String> {
        let watched = SHIPPED.iter().map(|(name, _)| dir.join(name)).collect();
        let load = |dir: &Path| NodeLists::from_dir(dir).map_err(|e| e.to_string());
        Ok(Self(Arc::new(Reloading::from_source("node_lists", dir, watched, check_every, load)?)))
    }

    pub fn current(&self) -> Arc<NodeLists> {
        self.0.current()
    }
}

#[cfg(test)]
mod tests {
    use super::SHIPPED;

    /// Every file in `detect/data/node/` is a shipped list and every shipped list is a file there, each saying
    /// where its entries come from and holding some.
    #[test]
    fn every_node_list_is_a_data_file_with_its_sources() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/node");
        let mut on_disk: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        on_disk.sort();
        let mut shipped: Vec<String> = SHIPPED.iter().map(|(name, _)| (*name).to_owned()).collect();
        shipped.sort();
        assert_eq!(on_disk, shipped);
        for (name, text) in SHIPPED {
            let header: Vec<&str> = text.lines().take_while(|line| line.starts_with('#')).collect();
            assert!(header.iter().any(|line| line.contains("Source")), "{name} names no source");
            assert!(!super::parse(text).is_empty(), "{name} is empty");
        }
    }

    #[test]
    fn path_and_group_lists_keep_their_case_names_are_lower_cased() {
        let dir = std::env::temp_dir().join(format!("palisade-node-case-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kubelet_credentials.txt"), "/var/lib/MyKubelet/kubeconfig\n").unwrap();
        std::fs::write(dir.join("shells.txt"), "MySh\n").unwrap();
        let lists = super::NodeLists::from_dir(&dir).unwrap();
        assert!(lists.kubelet_credentials.contains("/var/lib/MyKubelet/kubeconfig"));
        assert!(lists.shells.contains("mysh"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A shipped list no code reads would let an operator override it to no effect.
    #[test]
    fn every_node_list_is_read_by_some_unit() {
        let mut code = String::new();
        let mut stack = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/detectors")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    stack.push(path);
                } else if stem != "lists" && stem != "tests" && !stem.ends_with("_tests") {
                    code.push_str(&std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        for (name, _) in SHIPPED {
            let field = name.trim_end_matches(".txt");
            // `.field` as a whole word; lists searched inside command lines are read through their matcher
            // (`miner_pools` → `miner_pool_matcher`).
            let read = |word: &str| {
                code.match_indices(word)
                    .any(|(at, _)| !code[at + word.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_'))
            };
            let matcher = format!(".{}_matcher", field.trim_end_matches('s'));
            assert!(read(&format!(".{field}")) || read(&matcher), "no unit reads {name}");
        }
    }
}
