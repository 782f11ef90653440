//! TLS material for the webhook: PEM files, or a self-signed pair for local use.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::server::AuditError;

fn read_pem(path: &Path) -> Result<Vec<u8>, AuditError> {
    std::fs::read(path)
        .map_err(|source| AuditError::Tls { path: path.display().to_string(), reason: source.to_string() })
}

/// The server's TLS settings. With `client_ca`, a client may present a certificate signed by that CA (checked in
/// the handshake; a bad one ends it); presenting none is allowed here, and the request is then judged by its token.
pub fn server_config(
    cert_path: Option<&Path>,
    key_path: Option<&Path>,
    client_ca: Option<&Path>,
    http2_enabled: bool,
) -> Result<Arc<ServerConfig>, AuditError> {
    let (certs, key) = match (cert_path, key_path) {
        (Some(cert_path), Some(key_path)) => {
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut read_pem(cert_path)?.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| AuditError::Tls { path: cert_path.display().to_string(), reason: e.to_string() })?;
            let key = rustls_pemfile::private_key(&mut read_pem(key_path)?.as_slice())
                .map_err(|e| AuditError::Tls { path: key_path.display().to_string(), reason: e.to_string() })?
                .ok_or_else(|| AuditError::Tls {
                    path: key_path.display().to_string(),
                    reason: "no private key".into(),
                })?;
            (certs, key)
        }
        (None, None) => {
            let generated = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .map_err(|e| AuditError::Tls { path: "<self-signed>".into(), reason: e.to_string() })?;
            tracing::warn!(
                "audit webhook uses a generated self-signed certificate; configure audit.tls_cert_path for a cluster"
            );
            let key = PrivateKeyDer::try_from(generated.key_pair.serialize_der())
                .map_err(|e| AuditError::Tls { path: "<self-signed>".into(), reason: e.to_string() })?;
            (vec![generated.cert.der().clone()], key)
        }
        _ => {
            return Err(AuditError::Tls {
                path: "audit.tls_cert_path / audit.tls_key_path".into(),
                reason: "give both the certificate and the key, or neither".into(),
            });
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| AuditError::Tls { path: "<rustls>".into(), reason: e.to_string() })?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let tls_error = |reason: String| AuditError::Tls { path: path.display().to_string(), reason };
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut read_pem(path)?.as_slice()) {
                roots.add(cert.map_err(|e| tls_error(e.to_string()))?).map_err(|e| tls_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(tls_error("no CA certificate in the file".into()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| tls_error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| AuditError::Tls { path: "<certificate>".into(), reason: e.to_string() })?;
    // Offer only what is served: a client that wants h2 by ALPN gets HTTP/1.1 unless HTTP/2 is enabled.
    config.alpn_protocols =
        if http2_enabled { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(Arc::new(config))
}

/// Whether the connection's client presented a certificate (verified against `audit.client_ca_path` in the
/// handshake) that is acceptable (its name among `audit.client_certificate_names`, when those are set), put on every
/// request of the connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientCertificate(pub bool);

/// The rustls acceptor, plus the `ClientCertificate` extension on the connection's service.
#[derive(Clone)]
pub struct ClientCertAcceptor {
    inner: axum_server::tls_rustls::RustlsAcceptor,
    /// Names a client certificate must carry (subject common name or DNS alternative name); empty: any.
    allowed_names: std::sync::Arc<Vec<String>>,
}

impl ClientCertAcceptor {
    pub fn new(config: axum_server::tls_rustls::RustlsConfig, allowed_names: &[String]) -> Self {
        Self {
            inner: axum_server::tls_rustls::RustlsAcceptor::new(config),
            allowed_names: std::sync::Arc::new(allowed_names.to_vec()),
        }
    }
}

/// The subject common names and DNS alternative names of a DER certificate; empty when it does not parse.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let mut names: Vec<String> = certificate
        .subject()
        .iter_common_name()
        .filter_map(|attribute| attribute.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(alternatives)) = certificate.subject_alternative_name() {
        for name in &alternatives.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    names
}

impl<I, S> axum_server::accept::Accept<I, S> for ClientCertAcceptor
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<I>;
    type Service = axum::middleware::AddExtension<S, ClientCertificate>;
    type Future = futures::future::BoxFuture<'static, std::io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepting = self.inner.accept(stream, service);
        let allowed_names = self.allowed_names.clone();
        Box::pin(async move {
            let (stream, service) = accepting.await?;
            let leaf = stream.get_ref().1.peer_certificates().and_then(|certs| certs.first());
            let presented = match (leaf, allowed_names.is_empty()) {
                (None, _) => false,
                (Some(_), true) => true,
                (Some(leaf), false) => certificate_names(leaf).iter().any(|name| allowed_names.contains(name)),
            };
            let service = tower_layer::Layer::layer(&axum::Extension(ClientCertificate(presented)), service);
            Ok((stream, service))
        })
    }
}
