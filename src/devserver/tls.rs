//! `wss://`: the rustls server configuration from PEM files.

use std::path::Path;
use std::sync::Arc;

/// Loads a certificate chain and its private key (PEM) into a rustls server config.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let cert_pem = std::fs::read(cert)
        .map_err(|e| format!("cannot read --tls-cert {}: {e}", cert.display()))?;
    let key_pem =
        std::fs::read(key).map_err(|e| format!("cannot read --tls-key {}: {e}", key.display()))?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert {}: not PEM certificates: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate found",
            cert.display()
        ));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("--tls-key {}: not a PEM private key: {e}", key.display()))?
        .ok_or_else(|| format!("--tls-key {}: no private key found", key.display()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert/--tls-key do not make a usable pair: {e}"))
}
