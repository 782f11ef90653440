use serde_json::{Value, json};

use super::*;

fn audit_event(id: &str, verb: &str) -> Value {
    json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
           "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/default/pods", "verb": verb,
           "user": {"username": "alice"}, "objectRef": {"resource": "pods", "namespace": "default"},
           "responseStatus": {"code": 200}, "stageTimestamp": "2026-12-06T10:00:00.000000Z",
           "requestReceivedTimestamp": "2026-12-06T10:00:00.000000Z"})
}

const RESOURCE_ID: &str =
    "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-AKS";

fn azure_record(category: &str, log: Value) -> Value {
    json!({"time": "2026-12-06T10:00:00.0000000Z", "resourceId": RESOURCE_ID, "category": category,
           "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
           "properties": {"log": log, "stream": "stdout", "pod": "kube-apiserver-7c9f6b5d8-abcde"}})
}

fn unwrap_json(envelope: Envelope, document: &Value) -> Contents {
    unwrap(envelope, document.to_string().as_bytes()).unwrap()
}

#[test]
fn aks_envelopes_give_their_audit_records_and_skip_other_categories() {
    let mut big = audit_event("a-3", "create");
    big["requestObject"] = json!("skipped-too-big-size-object");
    let document = json!({"records": [
        azure_record("kube-audit", json!(audit_event("a-1", "get").to_string())),
        azure_record("kube-audit-admin", audit_event("a-2", "delete")),
        azure_record("kube-apiserver", json!("I1206 10:00:00 apiserver started")),
        azure_record("kube-audit", json!(big.to_string())),
        azure_record("kube-audit", json!("{not json")),
    ]});
    let contents = unwrap_json(Envelope::Aks, &document);
    assert_eq!(contents.skipped, 1, "the kube-apiserver record is not an audit record");
    assert_eq!(contents.events.len(), 4);
    let ok: Vec<&Unwrapped> = contents.events.iter().filter_map(|e| e.as_ref().ok()).collect();
    assert_eq!(ok.iter().map(|u| u.event["auditID"].as_str().unwrap()).collect::<Vec<_>>(), ["a-1", "a-2", "a-3"]);
    assert!(ok.iter().all(|u| u.cluster.as_deref() == Some("prod-aks")), "the cluster named by the resource ID");
    // An object AKS did not keep is left out and said so, not taken for the object.
    assert!(ok[2].event.get("requestObject").is_none());
    assert_eq!(ok[2].event["annotations"]["palisade.io/aks-requestObject"], "skipped-too-big-size-object");
    let (reason, part) = contents.events[3].as_ref().unwrap_err();
    assert!(reason.contains("properties.log is not JSON"), "{reason}");
    assert_eq!(part["category"], "kube-audit", "the refused record is kept for the dead-letter topic");
    for unwrapped in ok {
        crate::AuditEvent::from_k8s_json(&unwrapped.event, "prod-aks").unwrap();
    }
}

#[test]
fn aks_properties_written_as_a_string_are_read() {
    let mut record = azure_record("kube-audit", json!(audit_event("s-1", "get").to_string()));
    record["properties"] = json!(record["properties"].to_string());
    let contents = unwrap_json(Envelope::Aks, &json!({"records": [record]}));
    assert_eq!(contents.events[0].as_ref().unwrap().event["auditID"], "s-1");
}

#[test]
fn messages_that_are_no_envelope_are_refused_whole() {
    assert!(unwrap(Envelope::Aks, b"\xff\xfe").unwrap_err().contains("not JSON"));
    assert!(unwrap(Envelope::Aks, b"{\"value\": []}").unwrap_err().contains("no `records` array"));
    assert!(unwrap(Envelope::Gke, b"42").unwrap_err().contains("neither an object nor an array"));
    assert!(unwrap(Envelope::Audit, b"{\"kind\": \"Pod\"}").is_err());
    let plain = unwrap_json(Envelope::Audit, &audit_event("p-1", "list"));
    assert_eq!(plain.events.len(), 1);
}

/// The GKE records of Panther's public Kubernetes detections (modelled on real Cloud Audit Logs entries).
fn panther_gke_entries() -> Vec<(String, bool, Value)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/panther_k8s_tests/other_format_tests.jsonl");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|row| row.pointer("/log/protoPayload/serviceName").and_then(Value::as_str) == Some("k8s.io"))
        .map(|row| {
            let mut entry = row["log"].clone();
            // Some test records carry no time; a real entry always does.
            if entry.get("timestamp").is_none() {
                entry["timestamp"] = json!("2024-02-13 12:45:06.073905000");
            }
            (row["panther_rule_id"].as_str().unwrap().to_owned(), row["expected_result"] == true, entry)
        })
        .collect()
}

fn gke(entry: &Value) -> Unwrapped {
    let contents = unwrap_json(Envelope::Gke, entry);
    assert_eq!(contents.skipped, 0);
    contents.events.into_iter().next().unwrap().unwrap_or_else(|(reason, _)| panic!("{reason}: {entry}"))
}

fn find<'a>(entries: &'a [(String, bool, Value)], rule: &str, resource: &str) -> &'a Value {
    entries
        .iter()
        .find(|(id, _, entry)| id == rule && entry.pointer("/protoPayload/resourceName") == Some(&json!(resource)))
        .map(|(_, _, entry)| entry)
        .unwrap_or_else(|| panic!("no {rule} record for {resource}"))
}

#[test]
fn every_gke_record_of_the_corpus_becomes_an_audit_event() {
    let entries = panther_gke_entries();
    assert_eq!(entries.len(), 41);
    for (rule, _, entry) in &entries {
        let unwrapped = gke(entry);
        let event = crate::AuditEvent::from_k8s_json(&unwrapped.event, "gke")
            .unwrap_or_else(|e| panic!("{rule}: {e}\n{}", unwrapped.event));
        assert!(!event.verb.is_empty(), "{rule}");
    }
}

#[test]
fn gke_records_map_to_what_the_api_server_logged() {
    let entries = panther_gke_entries();
    let privileged =
        gke(find(&entries, "GCP.K8S.Privileged.Pod.Created", "core/v1/namespaces/default/pods/test-privileged-pod"));
    let event = &privileged.event;
    assert_eq!(privileged.cluster.as_deref(), Some("some-project-cluster"));
    assert_eq!(event["verb"], "create");
    assert_eq!(event["requestURI"], "/api/v1/namespaces/default/pods", "a create is posted to the collection");
    assert_eq!(
        event["objectRef"],
        json!({"resource": "pods", "namespace": "default", "name": "test-privileged-pod", "apiVersion": "v1"})
    );
    assert_eq!(event["requestObject"]["spec"]["containers"][0]["securityContext"]["privileged"], true);
    assert!(event["requestObject"].get("@type").is_none(), "the protobuf type is not part of the object");
    assert_eq!(event["user"]["username"], "john.doe@company.com");
    assert_eq!(event["sourceIPs"], json!(["1.2.3.4"]));
    assert_eq!(event["responseStatus"]["code"], 201);
    assert_eq!(event["stageTimestamp"], "2024-02-13T12:45:06.073905000Z");

    let exec = gke(find(&entries, "Kubernetes.Pod.Exec", "core/v1/namespaces/default/pods/nginx-pod/exec"));
    assert_eq!(exec.event["requestURI"], "/api/v1/namespaces/default/pods/nginx-pod/exec");
    assert_eq!(exec.event["objectRef"]["subresource"], "exec");
    assert_eq!(exec.event["verb"], "create");

    let binding = gke(find(
        &entries,
        "Kubernetes.ClusterRoleBinding.Privileged",
        "rbac.authorization.k8s.io/v1/clusterrolebindings/admin-binding",
    ));
    assert_eq!(binding.event["objectRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert!(binding.event["objectRef"].get("namespace").is_none());

    let dump = gke(find(&entries, "Kubernetes.Secrets.DumpAllNamespaces", "core/v1/secrets"));
    assert_eq!(dump.event["verb"], "list");
    // The entry's own request URI (with its query) is kept when it has one.
    assert_eq!(dump.event["requestURI"], "/api/v1/secrets?limit=500");
    assert_eq!(dump.event["objectRef"], json!({"resource": "secrets", "apiVersion": "v1"}));

    let denied =
        gke(find(&entries, "Kubernetes.Secret.AccessDenied", "core/v1/namespaces/production/secrets/tls-cert"));
    assert_eq!(denied.event["responseStatus"]["code"], 403);
    let exists = entries.iter().find(|(_, _, e)| e.pointer("/protoPayload/status/code") == Some(&json!(10))).unwrap();
    assert_eq!(gke(&exists.2).event["responseStatus"]["code"], 409);

    let anonymous = gke(find(&entries, "Kubernetes.API.AnonymousAccess", "core/v1/namespaces/default/pods/test-pod"));
    assert_eq!(anonymous.event["user"], json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]}));
    let probe = gke(find(&entries, "Kubernetes.System.Principal.PublicIP", "core/v1/healthz"));
    assert_eq!(probe.event["user"]["username"], "system:anonymous");
    assert_eq!((probe.event["verb"].as_str(), probe.event["requestURI"].as_str()), (Some("get"), Some("/healthz")));
    let account = gke(find(&entries, "Kubernetes.System.Principal.PublicIP", "core/v1/namespaces/default/pods"));
    assert_eq!(
        account.event["user"]["groups"],
        json!(["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"])
    );
    let ready = gke(find(&entries, "Kubernetes.System.Principal.PublicIP", "/readyz"));
    assert_eq!(ready.event["requestURI"], "/readyz");
    assert!(ready.event.get("objectRef").is_none(), "a non-resource request names no object");
}

fn k8s_entry(method: &str, resource: &str, principal: Value) -> Value {
    json!({"protoPayload": {"serviceName": "k8s.io", "methodName": method, "resourceName": resource,
                            "authenticationInfo": principal},
           "timestamp": "2026-12-06T10:00:00Z"})
}

#[test]
fn gke_namespace_subresources_unknown_verbs_and_missing_principals_are_not_guessed() {
    let alice = json!({"principalEmail": "alice@example.com"});
    let finalize =
        gke(&k8s_entry("io.k8s.core.v1.namespaces.finalize.update", "core/v1/namespaces/prod/finalize", alice.clone()));
    assert_eq!(
        finalize.event["objectRef"],
        json!({"resource": "namespaces", "name": "prod", "subresource": "finalize", "apiVersion": "v1"})
    );
    assert_eq!(finalize.event["requestURI"], "/api/v1/namespaces/prod/finalize");
    let pods = gke(&k8s_entry("io.k8s.core.v1.pods.list", "core/v1/namespaces/status/pods", alice.clone()));
    assert_eq!(pods.event["objectRef"]["namespace"], "status", "a namespace may be called status");
    let subject = gke(&k8s_entry(
        "io.k8s.core.v1.pods.get",
        "core/v1/namespaces/a/pods/b",
        json!({"principalSubject": "serviceAccount:x@p.iam.gserviceaccount.com"}),
    ));
    assert_eq!(subject.event["user"]["username"], "serviceAccount:x@p.iam.gserviceaccount.com");
    for (entry, why) in [
        (k8s_entry("io.k8s.core.v1.pods.escalate", "core/v1/namespaces/a/pods/b", alice), "names no verb"),
        (k8s_entry("io.k8s.core.v1.pods.get", "core/v1/namespaces/a/pods/b", json!({})), "names no principal"),
    ] {
        let contents = unwrap_json(Envelope::Gke, &entry);
        let (reason, _) = contents.events[0].as_ref().unwrap_err();
        assert!(reason.contains(why), "{reason}");
    }
}

#[test]
fn a_gke_entry_without_an_id_gets_one_that_stays_the_same_across_builds() {
    let entry = k8s_entry("io.k8s.core.v1.pods.get", "core/v1/namespaces/a/pods/b", json!({"principalEmail": "a@b.c"}));
    // The first 16 bytes of the SHA-256 of the entry's compact JSON with sorted keys, computed outside Rust (Python's
    // hashlib over json.dumps(sort_keys=True)): a new toolchain or hasher cannot move it.
    assert_eq!(gke(&entry).event["auditID"], "gke-61f3a8485aa6db427f761523da3622a8");
}

#[test]
fn gke_entries_of_other_services_are_skipped_and_bad_ones_refused() {
    let compute = json!({"protoPayload": {"serviceName": "compute.googleapis.com", "methodName": "v1.compute.instances.insert"},
                         "timestamp": "2026-12-06T10:00:00Z"});
    let no_time = json!({"protoPayload": {"serviceName": "k8s.io", "methodName": "io.k8s.core.v1.pods.get",
                                          "resourceName": "core/v1/namespaces/a/pods/b"}});
    let odd_time = json!({"protoPayload": {"serviceName": "k8s.io", "methodName": "io.k8s.core.v1.pods.get",
                                           "authenticationInfo": {"principalEmail": "bob@example.com"}},
                          "timestamp": "2026-12-06 10:00:00ééé"});
    let contents = unwrap_json(Envelope::Gke, &json!([compute, no_time, odd_time, {"jsonPayload": {}}, 7]));
    assert_eq!(contents.skipped, 2, "another service's entry and a plain log line are not for this source");
    assert_eq!(contents.events.len(), 3);
    assert!(contents.events[0].as_ref().unwrap_err().0.contains("without timestamp"));
    // A time that is no time is carried as written (the event parser refuses it), never a panic.
    assert!(contents.events[1].is_ok());
    assert!(contents.events[2].as_ref().unwrap_err().0.contains("no protoPayload"), "an array item that is no entry");
}
