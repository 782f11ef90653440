//! `detect/src` has no import cycle: the modules form layers (the `unit` leaf, helpers, the units, the catalogue,
//! configuration, registry, engine), so each can be read and tested on top of the ones below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module a source file belongs to: a top-level module, or `detectors/<family>`.
fn module_of(relative: &Path) -> String {
    let parts: Vec<String> = relative.with_extension("").iter().map(|p| p.to_string_lossy().into_owned()).collect();
    match parts.as_slice() {
        [detectors, family, ..] if detectors == "detectors" => format!("detectors/{family}"),
        [first, ..] => first.clone(),
        [] => unreachable!(),
    }
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module → the modules its non-test code names through `crate::`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap();
        let test_file =
            relative.file_stem().is_some_and(|stem| stem == "tests" || stem.to_string_lossy().ends_with("_tests"));
        if test_file || relative == Path::new("lib.rs") {
            continue;
        }
        let from = module_of(relative);
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let edges = graph.entry(from.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let path: String =
                code[at + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let mut segments = path.split("::");
            let first = segments.next().unwrap_or_default().to_owned();
            let to = if first == "detectors" {
                match segments.next() {
                    Some(family) if !family.is_empty() && family != "*" => format!("detectors/{family}"),
                    _ => "detectors".to_owned(),
                }
            } else {
                first
            };
            if !to.is_empty() && to != from {
                edges.insert(to);
            }
        }
        // `use crate::{a, b::c}` names every module it lists.
        for (at, _) in code.match_indices("crate::{") {
            let list = &code[at + 8..code[at..].find('}').map_or(code.len(), |end| at + end)];
            for module in list.split(',').map(|item| item.trim().split("::").next().unwrap_or_default()) {
                if !module.is_empty() && module != from && module != "detectors" {
                    edges.insert(module.to_owned());
                }
            }
        }
        // `use crate::detectors::{a, b}` and `use crate::detectors::*` name every family they list.
        for (at, _) in code.match_indices("crate::detectors::{") {
            let list = &code[at + 19..code[at..].find('}').map_or(code.len(), |end| at + end)];
            for family in list.split(',').map(|item| item.trim().split("::").next().unwrap_or_default()) {
                if !family.is_empty() && format!("detectors/{family}") != from {
                    edges.insert(format!("detectors/{family}"));
                }
            }
        }
    }
    graph
}

/// A cycle through `start`, if any, as the path that closes it.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn detect_src_has_no_import_cycle() {
    let graph = graph();
    assert!(graph.len() > 20, "the scan found the modules: {:?}", graph.keys());
    let cycles: Vec<Vec<String>> = graph.keys().filter_map(|module| cycle_from(&graph, module)).collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_unit_module_is_a_leaf() {
    let graph = graph();
    assert_eq!(graph.get("unit"), Some(&BTreeSet::new()), "unit imports nothing from the crate");
}

#[test]
fn the_scan_sees_a_cycle_when_there_is_one() {
    let mut graph = graph();
    graph.entry("unit".into()).or_default().insert("engine".into());
    assert!(cycle_from(&graph, "unit").is_some(), "unit → engine → … → unit");
}
