//! RARs to gateways: `weir.v1.Gateway/ReAuth` at the address each gateway gave in CCR-I.
//!
//! A push that cannot be delivered is retried with a doubling pause up to the configured number
//! of attempts, each failure logged; it never stops the policy engine. A redirect change that
//! was never delivered is undone in the store, so the next reconciliation (the next billing
//! tick touching the account, an operator's change, or the session's next CCR-U) tries again.
//!
//! With `gateway_tls` configured every push is made over TLS (an `http://` address given in
//! CCR-I is taken as `https://`), presenting this engine's client certificate when one is set.

use super::config::Reauth;
use super::store::{RedirectState, Store};
use crate::proto::v1 as pb;
use pb::gateway_client::GatewayClient;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::ClientTlsConfig;

/// A redirect change the store already records, to undo if the RAR never arrives.
#[derive(Clone, Debug)]
pub struct Undo {
    pub from: RedirectState,
    pub to: RedirectState,
    pub installed_before: Vec<String>,
}

/// One RAR to deliver.
#[derive(Clone, Debug)]
pub struct RarJob {
    pub endpoint: String,
    pub request: pb::ReAuthRequest,
    pub undo: Option<Undo>,
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Address(crate::proto::tls::TlsError),
    #[error("cannot reach the gateway at {endpoint}: {cause}")]
    Connect { endpoint: String, cause: String },
    #[error("the gateway at {endpoint} answered {status}")]
    Status {
        endpoint: String,
        status: tonic::Status,
    },
}

impl PushError {
    /// Whether trying again may help: unreachable or busy, as opposed to refused.
    fn transient(&self) -> bool {
        match self {
            PushError::Address(_) => false,
            PushError::Connect { .. } => true,
            PushError::Status { status, .. } => matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::Unknown
            ),
        }
    }
}

/// `host:port` or a URI, as an http URI.
pub fn normalize_endpoint(text: &str) -> Result<String, String> {
    let uri = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let parsed: tonic::codegen::http::Uri = uri
        .parse()
        .map_err(|e| format!("'{text}' is not host:port or a URI: {e}"))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) {
        return Err(format!("'{text}': the scheme must be http or https"));
    }
    if parsed.host().is_none_or(str::is_empty) || parsed.port_u16().is_none() {
        return Err(format!("'{text}' needs a host and a port"));
    }
    Ok(uri)
}

/// Sends one RAR and waits for the RAA, within `timeout`, over TLS when `tls` is given.
pub async fn send_once(
    endpoint: &str,
    request: pb::ReAuthRequest,
    timeout: Duration,
    tls: Option<&ClientTlsConfig>,
) -> Result<pb::ReAuthAnswer, PushError> {
    let ep =
        crate::proto::tls::client_endpoint(endpoint, tls, timeout).map_err(PushError::Address)?;
    let channel = ep.connect().await.map_err(|e| PushError::Connect {
        endpoint: endpoint.to_string(),
        cause: crate::proto::tls::error_chain(&e),
    })?;
    let mut client = GatewayClient::new(channel);
    client
        .re_auth(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| PushError::Status {
            endpoint: endpoint.to_string(),
            status,
        })
}

/// Delivers RARs in the background.
#[derive(Clone)]
pub struct Pusher {
    pub reauth: Reauth,
    pub store: Arc<Store>,
    /// `gateway_tls`, read once at start.
    pub tls: Option<ClientTlsConfig>,
}

impl Pusher {
    /// Delivers `job` in its own task, retrying as configured.
    pub fn spawn(&self, job: RarJob) {
        let this = self.clone();
        tokio::spawn(async move { this.deliver(job).await });
    }

    async fn deliver(&self, job: RarJob) {
        let session = job.request.session_id.clone();
        let mut pause = self.reauth.backoff;
        for attempt in 1..=self.reauth.attempts {
            match send_once(
                &job.endpoint,
                job.request.clone(),
                self.reauth.timeout,
                self.tls.as_ref(),
            )
            .await
            {
                Ok(raa) => {
                    let code = raa.result_code;
                    if code == pb::ResultCode::DiameterSuccess as i32 {
                        tracing::info!(session = %session, endpoint = %job.endpoint, attempt, "RAR delivered");
                    } else {
                        tracing::warn!(session = %session, endpoint = %job.endpoint, result_code = code,
                            reports = raa.charging_rule_report.len(), "RAR answered without success");
                    }
                    return;
                }
                Err(e) if e.transient() && attempt < self.reauth.attempts => {
                    tracing::warn!(session = %session, attempt, error = %e, retry_in = ?pause, "RAR not delivered; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.reauth.max_backoff);
                }
                Err(e) => {
                    tracing::error!(session = %session, attempt, error = %e, "RAR not delivered; giving up");
                    break;
                }
            }
        }
        if let Some(undo) = job.undo {
            let store = self.store.clone();
            let id = session.clone();
            let undone = tokio::task::spawn_blocking(move || {
                store.swap_redirect_state(&id, undo.to, undo.from, &undo.installed_before)
            })
            .await;
            match undone {
                Ok(Ok(true)) => {
                    tracing::warn!(session = %session, "redirect change undone in the store; the next reconciliation tries again")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::error!(session = %session, error = %e, "cannot undo the redirect change")
                }
                Err(e) => {
                    tracing::error!(session = %session, error = %e, "cannot undo the redirect change")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme_and_need_a_port() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:50052").unwrap(),
            "http://127.0.0.1:50052"
        );
        assert_eq!(
            normalize_endpoint("http://[::1]:7").unwrap(),
            "http://[::1]:7"
        );
        assert!(normalize_endpoint("127.0.0.1").is_err());
        assert!(normalize_endpoint("ftp://a:1").is_err());
        assert!(normalize_endpoint("not a uri").is_err());
    }
}
