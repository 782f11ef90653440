//! `palisade scan`: detection over recorded events, offline. Input files are JSON lines (`-` is standard
//! input): audit lines hold an `audit.k8s.io` Event or EventList, node lines hold `NodeEvent` in its JSON form, cloud
//! lines a `CloudActivity` in its JSON form or CloudTrail / Azure activity log records. A bad line is reported with its number and skipped.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use palisade_detect::{Engine, Event};
use palisade_enrich::Enricher;
use palisade_schemas::{AuditEvent, CloudActivity, NodeEvent, split_events};
use serde_json::Value;

use crate::PipelineError;
use crate::config::PalisadeConfig;
use crate::stages::now_ms;

#[derive(Debug, Clone, Default)]
pub struct ScanInputs {
    pub audit: Option<PathBuf>,
    pub node: Option<PathBuf>,
    pub cloud: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub events: usize,
    pub alerts: usize,
    /// Alerts a suppression rule held back (not written).
    pub suppressed: usize,
    pub bad_lines: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    Audit,
    Node,
    Cloud,
}

fn open(path: &Path) -> Result<Box<dyn BufRead>, PipelineError> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let file = std::fs::File::open(path)
        .map_err(|source| PipelineError::Input { path: path.display().to_string(), source })?;
    Ok(Box::new(BufReader::new(file)))
}

/// Scans the inputs, writing one alert per line (JSON) to `out` and one line per bad input line to `errors`.
pub fn scan(
    config: &PalisadeConfig,
    inputs: &ScanInputs,
    out: &mut dyn Write,
    errors: &mut dyn Write,
) -> Result<ScanReport, PipelineError> {
    let engine = Engine::new(&config.detect)?;
    let enricher = Enricher::new(&config.cluster, &config.enrich, &config.detect)?;
    let mut report = ScanReport::default();
    for (kind, path) in [(Kind::Audit, &inputs.audit), (Kind::Node, &inputs.node), (Kind::Cloud, &inputs.cloud)] {
        let Some(path) = path else { continue };
        let mut reader = open(path)?;
        let mut index = 0;
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            let read = reader
                .read_until(b'\n', &mut buffer)
                .map_err(|source| PipelineError::Input { path: path.display().to_string(), source })?;
            if read == 0 {
                break;
            }
            index += 1;
            // A line that is not UTF-8 is a bad line like any other: reported, skipped, the rest scanned.
            let line = match std::str::from_utf8(&buffer) {
                Ok(line) => line.trim_end_matches(['\n', '\r']),
                Err(error) => {
                    report.bad_lines += 1;
                    let _ = writeln!(errors, "{}:{index}: not UTF-8 ({error})", path.display());
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let detected_at = now_ms();
            // The detections of the line's good events, and why its other events (if any) were not read: one bad
            // item of an EventList does not cost the others their alerts.
            let mut item_errors: Vec<String> = Vec::new();
            let detections: Result<Vec<_>, String> = match kind {
                Kind::Audit => serde_json::from_str::<Value>(line).map_err(|e| e.to_string()).and_then(|document| {
                    let events = split_events(&document).map_err(|e| e.to_string())?;
                    let several = events.len() > 1;
                    let mut detections = Vec::new();
                    for (item, raw) in events.into_iter().enumerate() {
                        match AuditEvent::from_k8s_json(raw, &config.cluster) {
                            Ok(event) => {
                                report.events += 1;
                                detections.extend(engine.process(&Event::Audit(&event), detected_at));
                            }
                            Err(error) if several => item_errors.push(format!("item {item}: {error}")),
                            Err(error) => return Err(error.to_string()),
                        }
                    }
                    Ok(detections)
                }),
                Kind::Node => serde_json::from_str::<NodeEvent>(line).map_err(|e| e.to_string()).map(|event| {
                    report.events += 1;
                    engine.process(&Event::Node(&event), detected_at)
                }),
                // Palisade's own CloudActivity JSON, or CloudTrail / Azure activity log records.
                Kind::Cloud => serde_json::from_str::<Value>(line).map_err(|e| e.to_string()).and_then(|document| {
                    let records = match serde_json::from_value::<CloudActivity>(document.clone()) {
                        Ok(record) => vec![record],
                        Err(_) => CloudActivity::from_cloud_json(&document).map_err(|e| e.to_string())?,
                    };
                    let mut detections = Vec::new();
                    for record in &records {
                        report.events += 1;
                        detections.extend(engine.process(&Event::Cloud(record), detected_at));
                    }
                    Ok(detections)
                }),
            };
            if !item_errors.is_empty() {
                report.bad_lines += 1;
                let _ = writeln!(errors, "{}:{index}: {}", path.display(), item_errors.join("; "));
            }
            match detections {
                Ok(detections) => {
                    for detection in detections {
                        let alert = enricher.enrich(detection);
                        if enricher.suppressed_by(&alert, detected_at).is_some() {
                            report.suppressed += 1;
                            continue;
                        }
                        let output_error = |source| PipelineError::Input { path: "<output>".into(), source };
                        serde_json::to_writer(&mut *out, &alert).map_err(|e| output_error(std::io::Error::from(e)))?;
                        writeln!(out).map_err(output_error)?;
                        report.alerts += 1;
                    }
                }
                Err(reason) => {
                    report.bad_lines += 1;
                    let _ = writeln!(errors, "{}:{index}: {reason}", path.display());
                }
            }
        }
    }
    out.flush().map_err(|source| PipelineError::Input { path: "<output>".into(), source })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/falco_k8s_audit_traces").join(name)
    }

    fn scan_file(path: &Path) -> (ScanReport, Vec<Value>, String) {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        let inputs = ScanInputs { audit: Some(path.to_owned()), ..ScanInputs::default() };
        let report = scan(&PalisadeConfig::default(), &inputs, &mut out, &mut errors).unwrap();
        let alerts = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (report, alerts, String::from_utf8(errors).unwrap())
    }

    #[test]
    fn a_privileged_pod_create_raises_one_alert_and_the_same_pod_unprivileged_none() {
        let (report, alerts, _) = scan_file(&corpus("create_nginx_pod_privileged.json"));
        assert_eq!(report.alerts, 1);
        assert_eq!(alerts[0]["alert_type"], "K8S_PrivilegedContainer");
        assert_eq!(alerts[0]["severity"], "Informational");
        assert_eq!(alerts[0]["namespace"], "default");
        assert_eq!(alerts[0]["user"], "system:serviceaccount:kube-system:replicaset-controller");
        let (report, alerts, _) = scan_file(&corpus("create_nginx_pod_unprivileged.json"));
        assert_eq!((report.events, report.alerts), (1, 0));
        assert!(alerts.is_empty());
    }

    #[test]
    fn a_line_that_is_not_utf8_is_reported_and_the_rest_scanned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bytes.jsonl");
        let good = std::fs::read_to_string(corpus("create_nginx_pod_privileged.json")).unwrap();
        let mut bytes = b"{\"kind\":\"Event\",\"verb\":\"\xff\xfe\"}\n".to_vec();
        bytes.extend_from_slice(good.trim().as_bytes());
        std::fs::write(&path, bytes).unwrap();
        let (report, alerts, errors) = scan_file(&path);
        assert_eq!((report.bad_lines, report.alerts), (1, 1), "{errors}");
        assert!(errors.contains("bytes.jsonl:1: not UTF-8"), "{errors}");
        assert_eq!(alerts[0]["alert_type"], "K8S_PrivilegedContainer");
    }

    #[test]
    fn one_bad_item_of_an_event_list_keeps_the_others_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.jsonl");
        let good: Value =
            serde_json::from_str(&std::fs::read_to_string(corpus("create_nginx_pod_privileged.json")).unwrap())
                .unwrap();
        let bad = serde_json::json!({"kind": "Event", "auditID": "x", "verb": "get",
            "stageTimestamp": "2026-12-01T10:00:00\u{20ac}000"});
        let list = serde_json::json!({"kind": "EventList", "items": [bad, good]});
        std::fs::write(&path, list.to_string()).unwrap();
        let (report, alerts, errors) = scan_file(&path);
        assert_eq!((report.bad_lines, report.alerts, report.events), (1, 1, 1), "{errors}");
        assert!(errors.contains("list.jsonl:1: item 0: audit event has an unparsable timestamp"), "{errors}");
        assert_eq!(alerts[0]["alert_type"], "K8S_PrivilegedContainer");
    }

    #[test]
    fn the_whole_falco_trace_file_scans_and_bad_lines_are_reported_with_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed.jsonl");
        let good = std::fs::read_to_string(corpus("create_nginx_pod_privileged.json")).unwrap();
        std::fs::write(&path, format!("{}\nnot json\n{{\"kind\":\"Pod\"}}\n", good.trim())).unwrap();
        let (report, _, errors) = scan_file(&path);
        assert_eq!((report.alerts, report.bad_lines), (1, 2));
        assert!(errors.contains("mixed.jsonl:2:"), "{errors}");
        assert!(errors.contains("mixed.jsonl:3: not an audit.k8s.io Event"), "{errors}");

        // all_events.jsonl wraps each trace as {"file": ..., "event": {...}}; unwrap to real audit lines.
        let unwrapped = dir.path().join("all.jsonl");
        let lines: Vec<String> = std::fs::read_to_string(corpus("all_events.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap()["event"].to_string())
            .collect();
        std::fs::write(&unwrapped, lines.join("\n")).unwrap();
        let (report, _, errors) = scan_file(&unwrapped);
        // fal_01_003.json is Falco's malformed-event fixture ({"kind": 0}).
        assert_eq!(report.bad_lines, 1, "{errors}");
        assert!(errors.contains("all.jsonl:49: not an audit.k8s.io Event"), "{errors}");
        assert!(report.events > 40);
        assert!(report.alerts >= 2, "the privileged pods in the trace");
    }
}
