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
    fixture.shutdown.trigger();
}

/// A CA and a client certificate it signed, as PEM files in a fresh directory: (dir, CA path, client identity PEM).
fn client_pki(name: &str) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("palisade-client-pki-{name}-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["kube-apiserver".into()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let identity = format!("{}{}", client.pem(), client_key.serialize_pem()).into_bytes();
    (dir, ca_path, identity)
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
    let (dir, ca_path, identity) = client_pki("ours");
    let (other_dir, _, stranger) = client_pki("theirs");
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
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(other_dir);
}
