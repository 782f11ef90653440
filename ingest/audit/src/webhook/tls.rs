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

pub fn server_config(cert_path: Option<&Path>, key_path: Option<&Path>) -> Result<Arc<ServerConfig>, AuditError> {
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
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AuditError::Tls { path: "<rustls>".into(), reason: e.to_string() })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| AuditError::Tls { path: "<certificate>".into(), reason: e.to_string() })?;
    Ok(Arc::new(config))
}
