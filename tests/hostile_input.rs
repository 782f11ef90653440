//! Issue 14's attacks against a real `palisade run` whose audit webhook the testbed's kube-apiserver posts to (its
//! TLS certificate and token): control-plane evasion through the real API server, hostile bodies, and the
//! connection-level attacks. Outcomes: no crash, the right status codes, memory bounded, every connection cut off,
//! and the alerts acknowledged batches carry still raised afterwards.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A TLS client trusting the testbed CA, offering `alpn`.
fn tls_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let ca = std::fs::read(format!("{}/ca.crt", common::env("PALISADE_TEST_PKI"))).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(alpn: &[&[u8]]) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(common::env("PALISADE_TEST_AUDIT_WEBHOOK_ADDR"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(tls_config(alpn), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// What the server sends until it closes the connection (a read error counts as closed).
fn until_closed(stream: &mut impl Read) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn post(client: &reqwest::blocking::Client, body: impl Into<reqwest::blocking::Body>, token: Option<&str>) -> u16 {
    let url = format!(
        "https://localhost:{}/audit/webhook",
        common::env("PALISADE_TEST_AUDIT_WEBHOOK_ADDR").rsplit(':').next().unwrap()
    );
    let mut request = client.post(url).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().map(|r| r.status().as_u16()).unwrap_or(0)
}

fn alerts_in(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn wait_for_alert(path: &std::path::Path, what: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(alert) = alerts_in(path).into_iter().find(|a| what(a)) {
            return Some(alert);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn palisade_run_survives_the_attacks_and_still_alerts() {
    let pki = common::env("PALISADE_TEST_PKI");
    let token = std::fs::read_to_string(format!("{pki}/audit-webhook.token")).unwrap().trim().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let (cert, key, token_file) =
        (format!("{pki}/audit-webhook.crt"), format!("{pki}/audit-webhook.key"), format!("{pki}/audit-webhook.token"));
    let (mut run, _) = common::start_embedded_run(
        &alerts,
        &[
            ("PALISADE__AUDIT__LISTEN_ADDR", &common::env("PALISADE_TEST_AUDIT_WEBHOOK_ADDR")),
            ("PALISADE__AUDIT__TLS_CERT_PATH", &cert),
            ("PALISADE__AUDIT__TLS_KEY_PATH", &key),
            ("PALISADE__AUDIT__TOKEN_FILE", &token_file),
            ("PALISADE__AUDIT__HEADER_TIMEOUT_MS", "2000"),
            ("PALISADE__AUDIT__BODY_TIMEOUT_MS", "2000"),
            ("PALISADE__COLLECT__ENABLED", "false"),
            ("PALISADE__ENRICH__DEDUP_WINDOW_SECS", "0"),
        ],
    );
    let pid = run.0.id();
    let api = common::apiserver();
    let base = common::env("PALISADE_TEST_APISERVER");
    let ns = format!("hostile-{}", std::process::id());
    common::create_namespace(&api, &ns);
    let privileged = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": true}}]}})
    };
    let of_pod = |name: &'static str| {
        let ns = ns.clone();
        move |a: &Value| {
            a["alert_type"] == "K8S_PrivilegedContainer"
                && a["workload"] == format!("Pod/{name}")
                && a["namespace"] == ns.as_str()
        }
    };

    // Control-plane evasion, through the real API server: a query parameter the API server ignores.
    let created =
        api.post(format!("{base}/api/v1/namespaces/{ns}/pods?xdryRun=1")).json(&privileged("xdry")).send().unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    assert!(wait_for_alert(&alerts, of_pod("xdry")).is_some(), "?xdryRun=1 raises the alert");

    // Hostile bodies, with the real token: answered, never a crash.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(format!("{pki}/ca.crt")).unwrap()).unwrap();
    let client = reqwest::blocking::Client::builder().add_root_certificate(ca).build().unwrap();
    let euro = json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "hostile-euro", "verb": "get",
        "stage": "ResponseComplete", "requestReceivedTimestamp": "2026-12-01T10:00:00\u{20ac}000",
        "stageTimestamp": "2026-12-01T10:00:00\u{20ac}000"});
    assert_eq!(post(&client, euro.to_string(), Some(&token)), 200, "the bad event is dead-lettered, the batch taken");
    assert_eq!(post(&client, vec![0xffu8, 0xfe, b'{'], Some(&token)), 400, "not UTF-8, not JSON");
    assert_eq!(post(&client, r#"{"kind":"EventList"}"#, Some(&token)), 400, "a list without items");
    assert_eq!(post(&client, "{}", None), 401);
    assert_eq!(post(&client, "{}", Some("")), 401, "an empty bearer token is no token");

    // Unauthenticated connections announcing 15 MiB each and holding: answered 401 at once, memory bounded.
    let baseline = rss_mib(pid);
    let holders: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(|| {
                let Ok(mut tls) = connect(&[b"http/1.1"]) else { return String::from("refused") };
                let head = "POST /audit/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 15728640\r\n\r\n";
                let _ = tls.write_all(head.as_bytes());
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..64 {
                    if tls.write_all(&chunk).is_err() {
                        break;
                    }
                }
                until_closed(&mut tls)
            })
        })
        .collect();
    let mut peak = baseline;
    let answers: Vec<String> = holders
        .into_iter()
        .map(|holder| {
            peak = peak.max(rss_mib(pid));
            holder.join().unwrap()
        })
        .collect();
    peak = peak.max(rss_mib(pid));
    // A server that answers early and closes may reset a connection whose client is still sending, and the reset
    // can discard the answer before the client reads it: 401 or closed, never anything else.
    assert!(answers.iter().all(|a| a.starts_with("HTTP/1.1 401") || a.is_empty()), "{answers:?}");
    assert!(answers.iter().any(|a| a.starts_with("HTTP/1.1 401")), "{answers:?}");
    assert!(peak - baseline < 64.0, "RSS {baseline:.0} -> {peak:.0} MiB under 16 held 15 MiB bodies");

    // A peer that never finishes its headers, one that never says anything, one that never finishes the TLS
    // handshake, and HTTP/2 (by ALPN, then by prior knowledge): each is cut off.
    let mut dribble = connect(&[b"http/1.1"]).unwrap();
    dribble.write_all(b"POST /audit/webhook HTTP/1.1\r\nHost: x\r\n").unwrap();
    let answer = until_closed(&mut dribble);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    let mut silent = connect(&[b"http/1.1"]).unwrap();
    assert_eq!(until_closed(&mut silent), "");
    let mut no_handshake = TcpStream::connect(common::env("PALISADE_TEST_AUDIT_WEBHOOK_ADDR")).unwrap();
    no_handshake.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(until_closed(&mut no_handshake), "", "closed without a handshake");
    if let Ok(tls) = connect(&[b"h2"]) {
        assert_ne!(tls.conn.alpn_protocol(), Some(&b"h2"[..]), "HTTP/2 is not offered");
    }
    let mut prior = connect(&[]).unwrap();
    prior.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").unwrap();
    assert_eq!(until_closed(&mut prior), "", "HTTP/2 by prior knowledge gets no answer");

    // Still running, and still alerting from the real API server.
    assert!(run.0.try_wait().unwrap().is_none(), "palisade run is still running");
    let created = api.post(format!("{base}/api/v1/namespaces/{ns}/pods")).json(&privileged("after")).send().unwrap();
    assert!(created.status().is_success());
    assert!(wait_for_alert(&alerts, of_pod("after")).is_some(), "alerts after the attacks");
    let _ = api.delete(format!("{base}/api/v1/namespaces/{ns}")).send();
}
