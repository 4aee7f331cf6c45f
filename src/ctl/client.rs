//! Finding the gateway (flag, configuration file, default), reaching it (plaintext or TLS),
//! and turning the API's failures into words an operator can act on.

use super::{CtlArgs, CtlError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir::policy::{ClientTls, Config};
use weir::proto::tls;
use weir::proto::v1::gateway_client::GatewayClient;

/// The configuration read when neither --config nor --server is given, if it exists (the
/// Debian package installs it).
pub const DEFAULT_CONFIG: &str = "/etc/weir/weir.toml";
/// The gateway's own default `[control] listen`.
pub const DEFAULT_SERVER: &str = "127.0.0.1:50052";
/// Connecting, and each request but the event watch, may take this long.
const TIMEOUT: Duration = Duration::from_secs(5);

pub type Client = GatewayClient<tonic::transport::Channel>;

/// Where to reach the gateway, and how.
pub struct Target {
    /// As printed in errors: what the user gave, or the configuration's listen address.
    pub addr: String,
    tls: Option<ClientTls>,
    /// The configuration file serves TLS (`[control] tls`) and no CA was given.
    needs_ca: Option<PathBuf>,
}

impl Target {
    pub fn from_args(args: &CtlArgs) -> Result<Target, CtlError> {
        let tls = args.ca.as_ref().map(|ca| ClientTls {
            ca: ca.clone(),
            cert: args.cert.clone(),
            key: args.key.clone(),
            domain: args.domain.clone(),
        });
        if let Some(server) = &args.server {
            return Ok(Target {
                addr: server.clone(),
                tls,
                needs_ca: None,
            });
        }
        let config = match &args.config {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()),
        };
        let Some(path) = config else {
            return Ok(Target {
                addr: DEFAULT_SERVER.into(),
                tls,
                needs_ca: None,
            });
        };
        let (listen, serves_tls) = listen_of(&path)?;
        let needs_ca = (serves_tls && tls.is_none()).then_some(path);
        Ok(Target {
            addr: listen.to_string(),
            tls,
            needs_ca,
        })
    }

    /// Connects (at once, so a gateway that is down is reported here, not at the first call).
    /// `streaming` lifts the per-request limit, for the event watch.
    pub async fn connect(&self, streaming: bool) -> Result<Client, CtlError> {
        if let Some(path) = &self.needs_ca {
            return Err(CtlError::Usage(format!(
                "the gateway at {} serves TLS ([control] tls in {}): give --ca FILE (the CA \
                 that signed its certificate), and --cert/--key if it requires client \
                 certificates",
                self.addr,
                path.display()
            )));
        }
        let mut endpoint = tls::client_channel(&self.addr, self.tls.as_ref(), TIMEOUT)
            .map_err(|e| CtlError::Usage(e.to_string()))?;
        if streaming {
            // A watch lasts as long as the operator wants it to.
            endpoint = endpoint.timeout(Duration::from_secs(u64::from(u32::MAX)));
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| self.unreachable(&tls::error_chain(&e)))?;
        Ok(GatewayClient::new(channel))
    }

    pub fn unreachable(&self, reason: &str) -> CtlError {
        CtlError::Unreachable {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }

    /// A failed call in the operator's words; `subscriber` names the session asked for.
    pub fn status(&self, status: tonic::Status, subscriber: Option<&str>) -> CtlError {
        use tonic::Code;
        match (status.code(), subscriber) {
            (Code::NotFound, Some(sub)) => CtlError::NoSession(sub.to_string()),
            (Code::Unavailable | Code::DeadlineExceeded, _) => {
                let mut reason = status.message().to_string();
                if let Some(source) = std::error::Error::source(&status) {
                    reason = tls::error_chain(source);
                }
                self.unreachable(&reason)
            }
            // With TLS 1.3 the server checks the client's certificate after the handshake, and
            // closes the connection under the first call when it refuses it: the call ends
            // cancelled, or with the transport's error (Unknown, with the error as its source).
            (Code::Cancelled, _) | (Code::Unknown, _)
                if status.code() == Code::Cancelled
                    || std::error::Error::source(&status).is_some() =>
            {
                let mut reason = String::from("the gateway closed the connection");
                if self.tls.as_ref().is_some_and(|t| t.cert.is_none()) {
                    reason.push_str(
                        " (one that requires client certificates does so without one: give \
                         --cert and --key)",
                    );
                }
                self.unreachable(&reason)
            }
            (code, _) => CtlError::Refused(format!(
                "the gateway refused: {code:?}: {}",
                status.message()
            )),
        }
    }
}

/// The `[control] listen` of a gateway configuration (an unspecified address is reached on
/// loopback), and whether it serves TLS.
fn listen_of(path: &Path) -> Result<(SocketAddr, bool), CtlError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CtlError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let config = Config::from_toml_str(&text, &path.display().to_string()).map_err(|errors| {
        let mut msg = format!(
            "{} has errors (weir check-config lists them):",
            path.display()
        );
        for e in errors.0.iter().take(3) {
            msg.push_str(&format!("\n  {e}"));
        }
        CtlError::Usage(msg)
    })?;
    let Some(mut listen) = config.control.listen else {
        return Err(CtlError::Usage(format!(
            "{}: [control] listen is \"\": this gateway serves no weir.v1.Gateway",
            path.display()
        )));
    };
    if listen.ip().is_unspecified() {
        listen.set_ip(match listen.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok((listen, config.control.tls.is_some()))
}
