use std::collections::BTreeMap;

use palisade_schemas::Detection;
use serde_json::json;

use super::*;

fn detection() -> Detection {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/fixtures/detection.v2.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn pod(uid: &str, containers: serde_json::Value, statuses: serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": {"uid": uid, "name": "web-7d4b9-x2x", "namespace": "shop", "labels": {"app": "web", "n": 1},
                     "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d4b9", "controller": true}]},
        "spec": {"containers": containers},
        "status": {"containerStatuses": statuses}
    })
}

#[test]
fn a_pod_object_gives_its_workload_and_each_started_containers_image() {
    let record = pod_record(&pod(
        "u1",
        json!([{"name": "app", "image": "shop/web:1.2"}, {"name": "proxy", "image": "envoy:1.30"}]),
        json!([{"name": "app", "containerID": "containerd://aaa", "image": "docker.io/shop/web@sha256:0"},
               {"name": "proxy"}]),
    ))
    .unwrap();
    assert_eq!(record.workload, "ReplicaSet/web-7d4b9");
    assert_eq!(record.labels, BTreeMap::from([("app".to_owned(), "web".to_owned())]), "a non-string value is no label");
    assert_eq!(record.containers, [("aaa".to_owned(), "shop/web:1.2".to_owned())], "not started: no ID yet");
    assert_eq!(record.single_image, None, "two containers: the pod alone does not say which image");
    let bare = json!({"metadata": {"uid": "u2", "name": "debug", "namespace": "default"},
                      "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let record = pod_record(&bare).unwrap();
    assert_eq!((record.workload.as_str(), record.single_image.as_deref()), ("Pod/debug", Some("busybox")));
    assert!(pod_record(&json!({"metadata": {"name": "no-uid", "namespace": "x"}})).is_none());
}

#[test]
fn a_detection_is_completed_by_pod_uid_or_by_container_id_and_known_fields_are_kept() {
    let view = ClusterView::new();
    let mut by_uid = detection();
    let uid = by_uid.pod_uid.clone().unwrap();
    let container = by_uid.container_id.clone().unwrap();
    assert!(lacks_context(&by_uid));
    assert!(!view.fill(&mut by_uid), "empty table");
    view.upsert(
        pod_record(&pod(
            &uid,
            json!([{"name": "app", "image": "shop/web:1.2"}, {"name": "proxy", "image": "envoy:1.30"}]),
            json!([{"name": "proxy", "containerID": format!("cri-o://{container}")}]),
        ))
        .unwrap(),
    );
    assert!(view.fill(&mut by_uid));
    assert_eq!(by_uid.namespace.as_deref(), Some("shop"));
    assert_eq!(by_uid.pod.as_deref(), Some("web-7d4b9-x2x"));
    assert_eq!(by_uid.workload.as_deref(), Some("ReplicaSet/web-7d4b9"));
    assert_eq!(by_uid.image.as_deref(), Some("envoy:1.30"), "the image of the container the event ran in");
    assert_eq!(by_uid.pod_labels.get("app").map(String::as_str), Some("web"));
    assert!(!lacks_context(&by_uid));

    let mut by_container = detection();
    by_container.pod_uid = None;
    by_container.namespace = Some("from-detect".into());
    assert!(view.fill(&mut by_container));
    assert_eq!(by_container.namespace.as_deref(), Some("from-detect"), "what detect knew stays");
    assert_eq!(by_container.image.as_deref(), Some("envoy:1.30"));

    view.remove(&uid);
    let mut gone = detection();
    assert!(!view.fill(&mut gone) && view.pods() == 0, "a deleted pod and its containers are forgotten");
    gone.pod_uid = None;
    assert!(!view.fill(&mut gone));
}

#[test]
fn a_restarted_container_replaces_the_old_id() {
    let view = ClusterView::new();
    let app = json!([{"name": "app", "image": "shop/web:1.2"}]);
    view.upsert(
        pod_record(&pod("u1", app.clone(), json!([{"name": "app", "containerID": "containerd://old"}]))).unwrap(),
    );
    view.upsert(pod_record(&pod("u1", app, json!([{"name": "app", "containerID": "containerd://new"}]))).unwrap());
    let mut old = detection();
    old.pod_uid = None;
    old.container_id = Some("old".into());
    assert!(!view.fill(&mut old));
    old.container_id = Some("new".into());
    assert!(view.fill(&mut old));
}

#[test]
fn host_processes_and_complete_alerts_need_no_lookup() {
    let mut host = detection();
    host.in_container = Some(false);
    assert!(!lacks_context(&host));
    let mut complete = detection();
    complete.namespace = Some("a".into());
    complete.pod = Some("b".into());
    complete.workload = Some("Pod/b".into());
    complete.image = Some("c".into());
    assert!(!lacks_context(&complete));
}

#[test]
fn sync_is_reported_and_a_list_replaces_the_table() {
    let view = ClusterView::new();
    assert!(!view.synced());
    view.set_synced(true);
    assert!(view.synced());
    let bare = json!({"metadata": {"uid": "u2", "name": "debug", "namespace": "default"}, "spec": {}});
    view.upsert(pod_record(&bare).unwrap());
    view.replace(Vec::new());
    assert_eq!(view.pods(), 0);
}
