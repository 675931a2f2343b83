//! `auth.provider = "url"`: an HTTPS endpoint answers with the ticket.
//!
//! The daemon POSTs `{"sdkAppID": …, "userID": "…"}` (JSON) to `auth.url` with awc —
//! `Authorization: Bearer <token>` when `auth.bearer_token_file` is set (read at every call,
//! checked like the key file), TLS with the built-in web roots or `auth.ca_file`, no
//! redirects (a bearer token goes only where it was configured to go), the whole exchange
//! bounded by `auth.timeout_ms` — and reads a 2xx answer of at most
//! [`super::MAX_OUTPUT_BYTES`] as `{"userSig": "…", "expireAt": <unix s>}` (`expireAt`
//! optional). A body is never logged or quoted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{json_output, provider_failed, Output, MAX_OUTPUT_BYTES};
use crate::config::limits::MAX_SECRET_FILE_BYTES;
use crate::config::AuthConfig;
use crate::core::session::Fail;

/// The `url` provider.
pub struct UrlProvider {
    url: String,
    token_file: Option<PathBuf>,
    timeout: Duration,
    client: awc::Client,
}

/// The client: rustls with the CA file (or the web roots), no redirects.
fn client(cfg: &AuthConfig, timeout: Duration) -> Result<awc::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| format!("auth.ca_file {}: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("auth.ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("auth.ca_file {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = awc::Connector::new()
        .timeout(timeout)
        .rustls_0_23(Arc::new(tls));
    Ok(awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .timeout(timeout)
        .finish())
}

impl UrlProvider {
    /// The provider of `cfg` (`auth.url` is set: checked with the configuration).
    pub fn new(cfg: &AuthConfig) -> Result<UrlProvider, String> {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        Ok(UrlProvider {
            url: cfg.url.clone().unwrap_or_default(),
            token_file: cfg.bearer_token_file.clone(),
            timeout,
            client: client(cfg, timeout)?,
        })
    }

    /// Asks the endpoint for a ticket for `user` on `app_id`.
    pub async fn post(&self, app_id: u64, user: &str) -> Result<Output, Fail> {
        let mut req = self.client.post(&self.url).timeout(self.timeout);
        if let Some(path) = &self.token_file {
            let token =
                crate::config::read_secret_file(path, MAX_SECRET_FILE_BYTES).map_err(|e| {
                    provider_failed(format!("auth.bearer_token_file {}: {e}", path.display()))
                })?;
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(provider_failed(format!(
                    "auth.bearer_token_file {}: a token must be printable ASCII without spaces",
                    path.display()
                )));
            }
            req = req.insert_header(("Authorization", format!("Bearer {token}")));
        }
        let body = serde_json::json!({"sdkAppID": app_id, "userID": user});
        let ms = self.timeout.as_millis();
        let exchange = async {
            let mut resp = req.send_json(&body).await.map_err(|e| {
                provider_failed(format!(
                    "auth.url: the request failed: {}",
                    crate::text::clean(&e.to_string())
                ))
            })?;
            let status = resp.status();
            if !status.is_success() {
                return Err(provider_failed(format!(
                    "auth.url answered HTTP {}",
                    status.as_u16()
                )));
            }
            let bytes = resp.body().limit(MAX_OUTPUT_BYTES).await.map_err(|_| {
                provider_failed(format!(
                    "auth.url: the answer could not be read (more than {MAX_OUTPUT_BYTES} bytes?)"
                ))
            })?;
            Ok(bytes)
        };
        let bytes = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                provider_failed(format!(
                    "auth.url did not answer within {ms} ms (auth.timeout_ms)"
                ))
            })??;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| provider_failed("auth.url answered something that is not JSON"))?;
        json_output(&v)
    }
}
