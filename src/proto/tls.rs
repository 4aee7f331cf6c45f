//! TLS for Weir's gRPC servers and clients (rustls, through tonic), built from the `ServerTls`
//! and `ClientTls` settings of the configuration files.
//!
//! The PEM files are read and checked here, once, when a server or client is set up, so a wrong
//! path or a file of the wrong kind stops the program at start with the file named — never at
//! the first connection. Plaintext stays the default: these are used only when TLS is configured.
//!
//! What it must never do: fall back to plaintext when TLS was asked for. A client with TLS
//! settings speaks TLS even to an `http://` endpoint (the scheme is taken as `https://`).

use crate::policy::{ClientTls, ServerTls};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

/// Why TLS could not be set up: each names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {}: {problem}", path.display())]
    Content {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("TLS with certificate {} and key {}: {problem}", cert.display(), key.display())]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        problem: String,
    },
    #[error("client TLS: {0}")]
    Settings(String),
    #[error("invalid endpoint '{endpoint}': {problem}")]
    Endpoint { endpoint: String, problem: String },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// A file of one or more PEM certificates, checked to hold at least one.
fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(what, path)?;
    let content = |problem: String| TlsError::Content {
        what,
        path: path.to_path_buf(),
        problem,
    };
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| content(format!("not a valid PEM file: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(content(
            "the file has no certificate (no \"-----BEGIN CERTIFICATE-----\" block)".into(),
        ));
    }
    Ok(pem)
}

/// A file with a PEM private key (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<Vec<u8>, TlsError> {
    const WHAT: &str = "key";
    let pem = read(WHAT, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Content {
        what: WHAT,
        path: path.to_path_buf(),
        problem: match e {
            pem::Error::NoItemsFound => {
                "key file has no private key (no \"-----BEGIN … PRIVATE KEY-----\" block)".into()
            }
            e => format!("not a valid PEM file: {e}"),
        },
    })?;
    Ok(pem)
}

/// The server side: its certificate chain and key, and with `client_ca` set, client
/// certificates signed by that CA required of every client (a client without one, or with one
/// from another CA, fails the handshake).
pub fn server_tls(tls: &ServerTls) -> Result<ServerTlsConfig, TlsError> {
    let cert = read_certificates("certificate", &tls.cert)?;
    let key = read_key(&tls.key)?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &tls.client_ca {
        let ca = read_certificates("client CA certificate", ca)?;
        config = config.client_ca_root(Certificate::from_pem(ca));
    }
    // tonic builds the rustls configuration only when the server is given it: build it now, so
    // a key that does not match its certificate is found here, with both files named.
    Server::builder()
        .tls_config(config.clone())
        .map_err(|e| TlsError::Identity {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            problem: error_chain(&e),
        })?;
    Ok(config)
}

/// The client side: the CA that must sign the server's certificate, the name it must carry
/// (`domain`, else the endpoint's host), and the client's own certificate and key when set.
pub fn client_tls(tls: &ClientTls) -> Result<ClientTlsConfig, TlsError> {
    let ca = read_certificates("CA certificate", &tls.ca)?;
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let cert = read_certificates("certificate", cert)?;
            let key = read_key(key)?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        (None, None) => {}
        _ => {
            return Err(TlsError::Settings(
                "a client certificate needs both cert and key".into(),
            ))
        }
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    Ok(config)
}

/// An endpoint for `endpoint` (`http://host:port`, `https://host:port` or `host:port`) with
/// `timeout` for connecting and for each request, over TLS when `tls` is given. Connecting is
/// left to the caller (`connect()` or `connect_lazy()`).
pub fn client_endpoint(
    endpoint: &str,
    tls: Option<&ClientTlsConfig>,
    timeout: Duration,
) -> Result<Endpoint, TlsError> {
    let bad = |problem: String| TlsError::Endpoint {
        endpoint: endpoint.to_string(),
        problem,
    };
    let uri = match (endpoint.split_once("://"), tls) {
        (None, None) => format!("http://{endpoint}"),
        (None, Some(_)) => format!("https://{endpoint}"),
        (Some(("http", rest)), Some(_)) => format!("https://{rest}"),
        (Some(("https", _)), None) => {
            return Err(bad(
                "an https endpoint needs TLS settings (a CA at least)".into()
            ))
        }
        (Some(_), _) => endpoint.to_string(),
    };
    let mut ep = Endpoint::from_shared(uri)
        .map_err(|e| bad(error_chain(&e)))?
        .connect_timeout(timeout)
        .timeout(timeout);
    if let Some(tls) = tls {
        ep = ep
            .tls_config(tls.clone())
            .map_err(|e| bad(error_chain(&e)))?;
    }
    Ok(ep)
}

/// [`client_endpoint`] with the TLS settings read from their files.
pub fn client_channel(
    endpoint: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<Endpoint, TlsError> {
    let tls = tls.map(client_tls).transpose()?;
    client_endpoint(endpoint, tls.as_ref(), timeout)
}

/// An error and its causes on one line (tonic's transport errors say little at the top).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("weir-tls-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = server_tls(&ServerTls {
            cert: "/nonexistent/server.pem".into(),
            key: "/nonexistent/server.key".into(),
            client_ca: None,
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("cannot read certificate /nonexistent/server.pem: "),
            "{e}"
        );
    }

    #[test]
    fn files_of_the_wrong_kind_are_named() {
        let text = temp("text.pem", "hello\n");
        let e = read_certificates("certificate", &text).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "certificate {}: the file has no certificate (no \"-----BEGIN CERTIFICATE-----\" block)",
                text.display()
            )
        );
        let e = read_key(&text).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "key {}: key file has no private key (no \"-----BEGIN … PRIVATE KEY-----\" block)",
                text.display()
            )
        );
        let _ = std::fs::remove_file(text);
    }

    #[test]
    fn a_client_with_tls_never_speaks_plaintext() {
        let tls = ClientTlsConfig::new();
        let t = Duration::from_secs(1);
        let ep = client_endpoint("http://127.0.0.1:7", Some(&tls), t).unwrap();
        assert_eq!(ep.uri().to_string(), "https://127.0.0.1:7/");
        let ep = client_endpoint("127.0.0.1:7", Some(&tls), t).unwrap();
        assert_eq!(ep.uri().scheme_str(), Some("https"));
        let ep = client_endpoint("127.0.0.1:7", None, t).unwrap();
        assert_eq!(ep.uri().scheme_str(), Some("http"));
        assert!(client_endpoint("https://127.0.0.1:7", None, t).is_err());
        let half = ClientTls {
            ca: "/nonexistent".into(),
            cert: Some("/c".into()),
            key: None,
            domain: None,
        };
        assert!(client_tls(&half).is_err());
    }
}
