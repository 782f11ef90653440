//! A real container runtime end to end: the testbed's containerd (Debian's, runc underneath) runs a pod through
//! its CRI, as a kubelet would (crictl plays the kubelet, with the labels the kubelet sets); `palisade collect`
//! sees the container's processes on this kernel, attributes them by the cgroups runc made, asks the same CRI
//! socket for the container's name, image and pod, and publishes NodeEvents with them; the EICAR trigger run inside
//! the container becomes an alert carrying the pod's namespace, name and image without any audit event or pod
//! watch.

mod common;

use std::process::Command;
use std::time::Duration;

use palisade_schemas::NodeEventKind;
use serde_json::json;

/// crictl pointed at the testbed's containerd.
fn crictl_command(args: &[&str]) -> Command {
    let mut command = Command::new(common::env("PALISADE_TEST_CRICTL"));
    command.arg("--runtime-endpoint").arg(format!("unix://{}", common::env("PALISADE_TEST_CRI_SOCKET"))).args(args);
    command
}

/// Runs crictl against the testbed's containerd; its stdout, trimmed.
fn crictl(args: &[&str]) -> String {
    let output = crictl_command(args).output().expect("crictl runs");
    assert!(output.status.success(), "crictl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Removes the pod (and its containers) when the test ends, passed or not.
struct Pod(String);

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = crictl_command(&["rmp", "--force", &self.0]).output();
    }
}

/// Where `palisade collect` serves its metrics in this test.
const METRICS: &str = "127.0.0.1:19479";

#[test]
fn a_containerd_pods_process_carries_its_container_name_image_and_pod_from_the_cri() {
    let mut stack = common::Stack::new("cri");
    stack.set("PALISADE__NODE_NAME", "e2e-cri-node");
    stack.set("PALISADE__COLLECT__CRI_SOCKET", &common::env("PALISADE_TEST_CRI_SOCKET"));
    stack.set("PALISADE__METRICS_LISTEN_ADDR", METRICS);
    stack.spawn(&["collect"]);
    stack.envs.retain(|(key, _)| key != "PALISADE__METRICS_LISTEN_ADDR");
    stack.start(&["detect", "enrich", "sink"]);

    let run = common::run_id();
    let pod_uid = format!("5e1f0c2a-{:0>4}-4c1d-9e2b-{:0>12}", std::process::id() % 10_000, run.len());
    let pod_name = format!("web-{}", std::process::id());
    let image = common::env("PALISADE_TEST_CRI_IMAGE");
    let pod_config = json!({
        "metadata": {"name": pod_name, "namespace": "shop", "uid": pod_uid, "attempt": 0},
        "linux": {
            "cgroup_parent": format!("/kubepods/besteffort/pod{pod_uid}"),
            "security_context": {"namespace_options": {"network": 2}}
        },
        "log_directory": stack.logs.join("pod-logs"),
    });
    // The labels the kubelet puts on every container it creates (crictl stands in for the kubelet here).
    let trigger = palisade_detect::detectors::eicar::TEST_TRIGGER_NAME;
    let container_config = json!({
        "metadata": {"name": "web"},
        "image": {"image": image},
        "command": ["/bin/sh", "-c", format!("sleep 2; cp /bin/busybox /tmp/{trigger}; /tmp/{trigger} palisade; cat /etc/hostname; sleep 60")],
        "labels": {
            "io.kubernetes.pod.name": pod_name,
            "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.pod.uid": pod_uid,
            "io.kubernetes.container.name": "web"
        },
        "log_path": "web.log",
        "linux": {}
    });
    let pod_file = stack.logs.join("pod.json");
    let container_file = stack.logs.join("container.json");
    std::fs::write(&pod_file, pod_config.to_string()).unwrap();
    std::fs::write(&container_file, container_config.to_string()).unwrap();
    let (pod_file, container_file) = (pod_file.to_str().unwrap(), container_file.to_str().unwrap());

    let pod = Pod(crictl(&["runp", pod_file]));
    let container_id = crictl(&["create", &pod.0, container_file, pod_file]);
    assert_eq!(container_id.len(), 64, "a container id: {container_id}");
    crictl(&["start", &container_id]);

    // The client itself against the same runtime: the container as the CRI describes it, and an unknown id.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut client = palisade_collect::cri::CriClient::new(common::env("PALISADE_TEST_CRI_SOCKET"));
    let described = runtime.block_on(client.container_status(&container_id)).expect("the runtime answers");
    let described = described.expect("the runtime knows the container it created");
    assert_eq!(described.name.as_deref(), Some("web"));
    assert_eq!(described.image.as_deref(), Some(image.as_str()));
    assert_eq!(described.pod_uid.as_deref(), Some(pod_uid.as_str()));
    let unknown = runtime.block_on(client.container_status(&"0".repeat(64))).expect("the runtime answers");
    assert_eq!(unknown, None, "NotFound is an answer, not an error");

    // The trigger's exec, as published: attributed by runc's cgroups, completed from the CRI.
    let exec = common::wait_for_node_event(&stack.topic("node_events"), Duration::from_secs(60), |event| {
        event.kind == NodeEventKind::Exec
            && event.executable.as_deref().is_some_and(|executable| executable.ends_with(trigger))
    })
    .unwrap_or_else(|| panic!("no exec of the trigger in the container\ncollect log:\n{}", stack.log("collect")));
    assert_eq!(exec.container_id.as_deref(), Some(container_id.as_str()), "the container id from the cgroup path");
    assert!(exec.in_container);
    assert_eq!(exec.pod_uid.as_deref(), Some(pod_uid.as_str()), "the pod UID from the kubepods cgroup");
    assert_eq!(exec.container_name.as_deref(), Some("web"), "from the CRI's ContainerStatus");
    assert_eq!(exec.image.as_deref(), Some(image.as_str()));
    assert_eq!(exec.pod_name.as_deref(), Some(pod_name.as_str()));
    assert_eq!(exec.pod_namespace.as_deref(), Some("shop"));
    assert_eq!(exec.node, "e2e-cri-node");
    assert_eq!(
        exec.ancestry.first().map(|parent| parent.executable.as_str()),
        Some("/bin/sh"),
        "the shell that ran it"
    );

    let (alert, _) = common::wait_for_alert(&stack.topic("alerts"), Duration::from_secs(60), |alert| {
        alert["alert_type"] == "K8S.NODE_EICAR" && alert["container_id"] == container_id.as_str()
    })
    .unwrap_or_else(|| panic!("no K8S.NODE_EICAR alert from the container\ndetect log:\n{}", stack.log("detect")));
    assert_eq!(alert["namespace"], "shop", "{alert}");
    assert_eq!(alert["pod"], pod_name.as_str());
    assert_eq!(alert["image"], image.as_str());
    assert_eq!(alert["in_container"], true);
    let document = common::wait_for_document(
        &stack.index_prefix,
        json!({"bool": {"filter": [{"term": {"rule.id": "K8S.NODE_EICAR"}}, {"term": {"container.id": container_id}}]}}),
        Duration::from_secs(30),
    )
    .expect("the alert is in the index");
    assert_eq!(document["container"]["image"]["name"], image.as_str());
    assert_eq!(document["orchestrator"]["namespace"], "shop");

    // One CRI call for the container, the rest of its events from the collector's cache.
    let metrics = reqwest::blocking::get(format!("http://{METRICS}/metrics")).and_then(|r| r.text()).unwrap();
    let found = metrics
        .lines()
        .find(|line| line.starts_with("palisade_collect_cri_lookups_total{outcome=\"found\"}"))
        .unwrap_or_else(|| panic!("no CRI lookup counted:\n{metrics}"));
    assert_eq!(found.rsplit(' ').next(), Some("1"), "{found}");
}
