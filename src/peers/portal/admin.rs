//! The portal's client of the policy engine's `weir.v1.Admin`: the account (balance, plan,
//! prices) the pages show, and the payments it credits.

use super::PortalError;
use crate::proto::v1 as pb;
use std::time::Duration;
use tonic::transport::Endpoint;

/// How long connecting to the policy engine may take, and one call in all: a subscriber waits
/// on the page meanwhile.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the policy engine did not answer as asked. The page the subscriber sees says which, and
/// no token is issued.
#[derive(Debug, thiserror::Error)]
pub(super) enum AdminError {
    #[error("cannot reach the policy engine at {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("the policy engine at {url} refused the payment ({:?}): {}", .status.code(), .status.message())]
    Refused { url: String, status: tonic::Status },
}

impl AdminError {
    /// The store has no account for the subscriber.
    pub(super) fn is_unknown_subscriber(&self) -> bool {
        matches!(self, AdminError::Refused { status, .. } if status.code() == tonic::Code::NotFound)
    }

    /// The store could not be asked (down, or too slow): trying again later may work.
    pub(super) fn is_unreachable(&self) -> bool {
        match self {
            AdminError::Connect { .. } => true,
            AdminError::Refused { status, .. } => matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
            ),
        }
    }
}

/// Where payments are credited: the policy engine's `weir.v1.Admin`.
pub(super) struct Admin {
    pub(super) url: String,
    uri: tonic::codegen::http::Uri,
}

impl Admin {
    pub(super) fn new(url: &str) -> Result<Admin, PortalError> {
        let bad = |reason: String| PortalError::PolicyEngine {
            url: url.to_string(),
            reason,
        };
        let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(bad("the scheme must be http or https".into()));
        }
        if uri.host().is_none_or(str::is_empty) || uri.port_u16().is_none() {
            return Err(bad("a host and a port are required".into()));
        }
        Ok(Admin {
            url: url.to_string(),
            uri,
        })
    }

    /// One connection per call: calls are rare (a page view, a payment), and a fresh
    /// connection finds a restarted policy engine without any reconnect logic.
    async fn client(
        &self,
    ) -> Result<pb::admin_client::AdminClient<tonic::transport::Channel>, AdminError> {
        let channel = Endpoint::from(self.uri.clone())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .map_err(|source| AdminError::Connect {
                url: self.url.clone(),
                source,
            })?;
        Ok(pb::admin_client::AdminClient::new(channel))
    }

    fn refused(&self, status: tonic::Status) -> AdminError {
        AdminError::Refused {
            url: self.url.clone(),
            status,
        }
    }

    /// The subscriber's account: balance, plan and the plan's prices.
    pub(super) async fn account(&self, sub: &str) -> Result<pb::Account, AdminError> {
        self.client()
            .await?
            .get_account(pb::GetAccountRequest {
                subscriber_id: sub.to_string(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.refused(s))
    }

    /// Whether any of the subscriber's sessions is held by the redirect now (not lifted on a
    /// recharge success); `None` when the policy engine knows no session of it.
    pub(super) async fn redirected(&self, sub: &str) -> Result<Option<bool>, AdminError> {
        let sessions = self
            .client()
            .await?
            .list_sessions(pb::ListPolicySessionsRequest {
                subscriber_id: sub.to_string(),
                page_size: 100,
                page_token: String::new(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.refused(s))?
            .sessions;
        if sessions.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            sessions
                .iter()
                .any(|s| s.redirected && !s.lifted_on_recharge_success),
        ))
    }

    /// Credits `amount` to `sub`. The store credits a `reference` once, however often it is
    /// sent: a double submit or a retry answers as the first payment did.
    pub(super) async fn recharge(
        &self,
        sub: &str,
        amount: i64,
        reference: &str,
    ) -> Result<pb::RechargeResponse, AdminError> {
        self.client()
            .await?
            .recharge(pb::RechargeRequest {
                subscriber_id: sub.to_string(),
                amount,
                reference: reference.to_string(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.refused(s))
    }
}
