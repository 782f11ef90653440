use palisade_runtime::bus::HEADER_ERROR;
use palisade_runtime::{Bus, Shutdown};
use palisade_schemas::{AuditEvent, Codec};

use super::server::WEBHOOK_PATH;
use super::{AuditConfig, WebhookServer};

const BATCH: &str = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[
 {"kind":"Event","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list",
  "user":{"username":"alice"},"sourceIPs":["10.1.1.1"],"objectRef":{"resource":"pods","apiVersion":"v1"},
  "requestReceivedTimestamp":"2026-11-27T10:00:00.000000Z","stageTimestamp":"2026-11-27T10:00:00.010000Z"},
 {"kind":"Event","level":"Metadata","stage":"ResponseComplete","verb":"get"},
 {"kind":"Event","level":"Metadata","auditID":"a3","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/x/pods/p","verb":"get",
  "user":{"username":"bob"},"objectRef":{"resource":"pods","namespace":"x","name":"p"},"stageTimestamp":"2026-11-27T10:00:01Z"}]}"#;

struct Fixture {
    server: WebhookServer,
    bus: Bus,
    shutdown: Shutdown,
    token: tempfile_token::Token,
}

mod tempfile_token {
    pub struct Token(pub std::path::PathBuf);
    impl Drop for Token {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

async fn start(tls: bool, body_limit_bytes: usize) -> Fixture {
    let path = std::env::temp_dir().join(format!("palisade-token-{}-{}", std::process::id(), rand_suffix()));
    std::fs::write(&path, "s3cret\n").unwrap();
    let config = AuditConfig {
        listen_addr: "127.0.0.1:0".into(),
        tls_disabled: !tls,
        token_file: Some(path.clone()),
        body_limit_bytes,
        ..AuditConfig::default()
    };
    let bus = Bus::in_process();
    let shutdown = Shutdown::new();
    let server = WebhookServer::start(&config, bus.clone(), "audit", "dlq", "c1", shutdown.clone()).await.unwrap();
    Fixture { server, bus, shutdown, token: tempfile_token::Token(path) }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap()
}

#[tokio::test]
async fn a_batch_is_published_and_a_bad_event_is_dead_lettered_alone() {
    let fixture = start(true, 1 << 20).await;
    let mut audit = fixture.bus.subscribe(&["audit"], "t").unwrap();
    let mut dead = fixture.bus.subscribe(&["dlq"], "t").unwrap();
    let url = format!("https://{}{WEBHOOK_PATH}", fixture.server.local_addr);
    let response = client().post(&url).bearer_auth("s3cret").body(BATCH).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let codec = Codec::<AuditEvent>::new().unwrap();
    let first = codec.decode(&audit.next().await.unwrap().unwrap().message.payload).unwrap();
    let second = codec.decode(&audit.next().await.unwrap().unwrap().message.payload).unwrap();
    assert_eq!((first.audit_id.as_str(), second.audit_id.as_str()), ("a1", "a3"));
    assert_eq!(first.cluster, "c1");
    let rejected = dead.next().await.unwrap().unwrap().message;
    assert_eq!(rejected.header(HEADER_ERROR), Some(&b"audit event lacks `auditID`"[..]));
    fixture.shutdown.trigger();
    drop(fixture.token);
}

#[tokio::test]
async fn status_codes_for_bad_requests() {
    let fixture = start(false, 4096).await;
    let mut dead = fixture.bus.subscribe(&["dlq"], "t").unwrap();
    let url = format!("http://{}{WEBHOOK_PATH}", fixture.server.local_addr);
    let http = client();
    assert_eq!(http.post(&url).body(BATCH).send().await.unwrap().status(), 401, "no token");
    assert_eq!(http.post(&url).bearer_auth("wrong").body(BATCH).send().await.unwrap().status(), 401);
    let big = format!("{{\"kind\":\"EventList\",\"items\":[],\"pad\":\"{}\"}}", "x".repeat(8192));
    assert_eq!(http.post(&url).bearer_auth("s3cret").body(big).send().await.unwrap().status(), 413);
    let response = http.post(&url).bearer_auth("s3cret").body("{not json").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let dead_lettered = dead.next().await.unwrap().unwrap().message;
    assert_eq!(dead_lettered.payload, b"{not json", "the raw body is kept");
    assert!(String::from_utf8_lossy(dead_lettered.header(HEADER_ERROR).unwrap()).starts_with("body is not JSON"));
    let pod = r#"{"kind":"Pod"}"#;
    assert_eq!(http.post(&url).bearer_auth("s3cret").body(pod).send().await.unwrap().status(), 400);
    let no_items = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}"#;
    let response = http.post(&url).bearer_auth("s3cret").body(no_items).send().await.unwrap();
    assert_eq!(response.status(), 400, "a list that carries nothing is not a success");
    fixture.shutdown.trigger();
}

/// A CA written as PEM into a fresh directory, which issues client certificates.
struct TestCa {
    dir: std::path::PathBuf,
    ca_path: std::path::PathBuf,
    key: rcgen::KeyPair,
    certificate: rcgen::Certificate,
}

impl TestCa {
    fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir =
            std::env::temp_dir().join(format!("palisade-client-pki-{name}-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let certificate = params.self_signed(&key).unwrap();
        let ca_path = dir.join("ca.crt");
        std::fs::write(&ca_path, certificate.pem()).unwrap();
        Self { dir, ca_path, key, certificate }
    }

    /// A client identity (certificate and key, PEM) with these DNS alternative names and, if given, common name.
    fn issue(&self, dns_names: &[&str], common_name: Option<&str>) -> Vec<u8> {
        use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(dns_names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        if let Some(common_name) = common_name {
            let mut name = DistinguishedName::new();
            name.push(DnType::CommonName, common_name);
            params.distinguished_name = name;
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let certificate = params.signed_by(&key, &self.certificate, &self.key).unwrap();
        format!("{}{}", certificate.pem(), key.serialize_pem()).into_bytes()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA and a client certificate it signed (named kube-apiserver): (the CA, client identity PEM).
fn client_pki(name: &str) -> (TestCa, Vec<u8>) {
    let ca = TestCa::new(name);
    let identity = ca.issue(&["kube-apiserver"], None);
    (ca, identity)
}

fn client_with(identity: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .identity(reqwest::Identity::from_pem(identity).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn client_certificates_from_the_configured_ca_authenticate() {
    let (ours, identity) = client_pki("ours");
    let (_theirs, stranger) = client_pki("theirs");
    let (dir, ca_path) = (&ours.dir, &ours.ca_path);
    for with_token in [false, true] {
        let token_path = dir.join("token");
        std::fs::write(&token_path, "s3cret\n").unwrap();
        let config = AuditConfig {
            listen_addr: "127.0.0.1:0".into(),
            client_ca_path: Some(ca_path.clone()),
            token_file: with_token.then(|| token_path.clone()),
            ..AuditConfig::default()
        };
        let bus = Bus::in_process();
        let shutdown = Shutdown::new();
        let server = WebhookServer::start(&config, bus.clone(), "audit", "dlq", "c1", shutdown.clone()).await.unwrap();
        let url = format!("https://{}{WEBHOOK_PATH}", server.local_addr);
        let _events = bus.subscribe(&["audit"], "t").unwrap();
        let _dead = bus.subscribe(&["dlq"], "t").unwrap();

        let signed = client_with(&identity).post(&url).body(BATCH).send().await.unwrap();
        assert_eq!(signed.status(), 200, "a certificate from the CA is enough (token configured: {with_token})");
        let bare = client().post(&url).body(BATCH).send().await.unwrap();
        assert_eq!(bare.status(), 401, "no certificate, no token");
        let token = client().post(&url).bearer_auth("s3cret").body(BATCH).send().await.unwrap();
        assert_eq!(token.status(), if with_token { 200 } else { 401 }, "the token counts only when configured");
        assert!(
            client_with(&stranger).post(&url).body(BATCH).send().await.is_err(),
            "a certificate from another CA ends the handshake"
        );
        shutdown.trigger();
    }
}

#[test]
fn configurations_that_would_let_anyone_in_are_refused() {
    use super::check_credentials;
    let empty = std::env::temp_dir().join(format!("palisade-empty-token-{}-{}", std::process::id(), rand_suffix()));
    let empty_config = AuditConfig { token_file: Some(empty.clone()), ..AuditConfig::default() };
    let error = check_credentials(&empty_config, Some("")).unwrap_err().to_string();
    assert!(error.contains("is empty"), "{error}");
    let no_tls = AuditConfig { tls_disabled: true, client_ca_path: Some("/ca.crt".into()), ..AuditConfig::default() };
    let error = check_credentials(&no_tls, None).unwrap_err().to_string();
    assert!(error.contains("client certificates need TLS"), "{error}");
    let error = check_credentials(&AuditConfig::default(), None).unwrap_err().to_string();
    assert!(error.contains("no credential") && error.contains("allow_unauthenticated"), "{error}");
    let open = AuditConfig { allow_unauthenticated: true, ..AuditConfig::default() };
    assert!(check_credentials(&open, None).is_ok(), "explicitly open");
    assert!(check_credentials(&AuditConfig::default(), Some("s3cret")).is_ok());
}

#[tokio::test]
async fn an_empty_token_file_stops_the_start() {
    let path = std::env::temp_dir().join(format!("palisade-blank-token-{}-{}", std::process::id(), rand_suffix()));
    std::fs::write(&path, " \n").unwrap();
    let config =
        AuditConfig { listen_addr: "127.0.0.1:0".into(), token_file: Some(path.clone()), ..AuditConfig::default() };
    let started = WebhookServer::start(&config, Bus::in_process(), "audit", "dlq", "c1", Shutdown::new()).await;
    let _ = std::fs::remove_file(&path);
    assert!(matches!(started, Err(super::AuditError::EmptyToken { .. })));
}

/// A plain-HTTP webhook with short limits, for the connection-level attacks.
async fn start_guarded(max_connections: usize) -> Fixture {
    let path = std::env::temp_dir().join(format!("palisade-token-{}-{}", std::process::id(), rand_suffix()));
    std::fs::write(&path, "s3cret\n").unwrap();
    let config = AuditConfig {
        listen_addr: "127.0.0.1:0".into(),
        tls_disabled: true,
        token_file: Some(path.clone()),
        header_timeout_ms: 300,
        body_timeout_ms: 300,
        max_connections,
        ..AuditConfig::default()
    };
    let bus = Bus::in_process();
    let shutdown = Shutdown::new();
    let server = WebhookServer::start(&config, bus.clone(), "audit", "dlq", "c1", shutdown.clone()).await.unwrap();
    Fixture { server, bus, shutdown, token: tempfile_token::Token(path) }
}

/// What the server sends until it closes the connection; the deadline only bounds a server that never does.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server did not close the connection; it sent {:?}", String::from_utf8_lossy(&answer));
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_before_their_body_is_read() {
    use tokio::io::AsyncWriteExt;
    let fixture = start_guarded(16).await;
    let mut stream = tokio::net::TcpStream::connect(fixture.server.local_addr).await.unwrap();
    // 15 MiB announced, none of it sent: the answer must come without waiting for it.
    let head = format!("POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 15728640\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Nor may it keep the connection (and its slot) by asking again and again: closed after the answer.
    let mut again = tokio::net::TcpStream::connect(fixture.server.local_addr).await.unwrap();
    let head = format!("POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    again.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut again).await;
    assert!(answer.starts_with("HTTP/1.1 401") && answer.to_lowercase().contains("connection: close"), "{answer}");
    fixture.shutdown.trigger();
}

#[tokio::test]
async fn slow_headers_idle_connections_and_slow_bodies_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let fixture = start_guarded(16).await;
    let addr = fixture.server.local_addr;
    // Headers dribbled and never finished.
    let mut dribble = tokio::net::TcpStream::connect(addr).await.unwrap();
    dribble.write_all(format!("POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\n").as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut dribble).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A connection that never says anything.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_until_closed(&mut silent).await, "");
    // An authenticated request whose body stops coming.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 1000\r\n\r\n{{\"kind\""
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    fixture.shutdown.trigger();
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_http2_is_refused() {
    use tokio::io::AsyncWriteExt;
    let fixture = start_guarded(2).await;
    let addr = fixture.server.local_addr;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"POST").await.unwrap();
        held.push(stream);
    }
    // The two held connections may not have been accepted yet when the third arrives: wait for the refusal of a
    // third one, with a deadline, rather than for a fixed time.
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_until_closed(&mut extra).await, "", "a third connection is closed at once");
    drop(held);
    // Once the server has seen those close, HTTP/1.1 is served again (the client keeps one connection).
    let _events = fixture.bus.subscribe(&["audit"], "t").unwrap();
    let _dead = fixture.bus.subscribe(&["dlq"], "t").unwrap();
    let url = format!("http://{addr}{WEBHOOK_PATH}");
    let http1 = client();
    let mut answered = None;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while answered.is_none() && tokio::time::Instant::now() < deadline {
        answered = http1.post(&url).bearer_auth("s3cret").body(BATCH).send().await.ok().map(|r| r.status().as_u16());
    }
    assert_eq!(answered, Some(200), "HTTP/1.1 once the held connections are gone");
    // One slot is left: an HTTP/2 prior-knowledge connection gets it and is closed for speaking HTTP/2.
    let h2_refusals = || {
        palisade_runtime::metrics::render()
            .lines()
            .find(|l| l.contains("audit-webhook") && l.contains("HTTP/2 not enabled"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = h2_refusals();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    // Until the server has seen the held connections close, a refusal may be the cap's: try until it is HTTP/2's.
    while h2_refusals() == before && tokio::time::Instant::now() < deadline {
        // What an HTTP/2 prior-knowledge client sends first: the preface, then its SETTINGS frame.
        let mut h2 = tokio::net::TcpStream::connect(addr).await.unwrap();
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
        assert_eq!(read_until_closed(&mut h2).await, "", "HTTP/2 gets no answer");
    }
    assert!(h2_refusals() > before, "refused for speaking HTTP/2, not only for the cap");
    fixture.shutdown.trigger();
}

#[tokio::test]
async fn pinned_names_admit_only_the_named_client_certificate() {
    let ca = TestCa::new("pinned");
    let ca_path = ca.ca_path.clone();
    // Two certificates from the same CA: the API server's (a common name only, as kubeadm issues them) and a
    // kubelet's.
    let (apiserver, kubelet) = (ca.issue(&[], Some("kube-apiserver")), ca.issue(&[], Some("system:node:worker-1")));
    let config = AuditConfig {
        listen_addr: "127.0.0.1:0".into(),
        client_ca_path: Some(ca_path.clone()),
        client_certificate_names: vec!["kube-apiserver".into()],
        ..AuditConfig::default()
    };
    let bus = Bus::in_process();
    let shutdown = Shutdown::new();
    let server = WebhookServer::start(&config, bus.clone(), "audit", "dlq", "c1", shutdown.clone()).await.unwrap();
    let url = format!("https://{}{WEBHOOK_PATH}", server.local_addr);
    let _events = bus.subscribe(&["audit"], "t").unwrap();
    let _dead = bus.subscribe(&["dlq"], "t").unwrap();
    assert_eq!(client_with(&apiserver).post(&url).body(BATCH).send().await.unwrap().status(), 200);
    assert_eq!(client_with(&kubelet).post(&url).body(BATCH).send().await.unwrap().status(), 401, "another name");
    shutdown.trigger();
    let names_alone = AuditConfig { client_certificate_names: vec!["x".into()], token_file: None, ..config };
    let error = super::check_credentials(&AuditConfig { client_ca_path: None, ..names_alone }, None).unwrap_err();
    assert!(error.to_string().contains("client_certificate_names is set without"), "{error}");
}
