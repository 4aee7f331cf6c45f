//! HTTP as the redirect path needs it: reading a request or response head with httparse (no
//! allocation: headers go into a stack array), and writing the 302 around a rendered `Location`.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Header slots on the stack; a request with more headers is answered as if it had none we
/// care about (the 302 still goes out).
const MAX_HEADERS: usize = 48;

/// A request head as far as the redirect path cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub path: &'a str,
    pub host: Option<&'a str>,
    /// Bytes of the head, including the blank line.
    pub head_len: usize,
    pub content_length: usize,
}

/// What reading a request head found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff<'a> {
    Complete(RequestHead<'a>),
    /// More bytes needed. `path` is known once the request line is complete, `host` once its
    /// header line is.
    Partial {
        path: Option<&'a str>,
        host: Option<&'a str>,
    },
    /// Not HTTP.
    Invalid,
}

pub fn sniff_request(buf: &[u8]) -> Sniff<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            let host = header(req.headers, "host");
            let content_length = header(req.headers, "content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            Sniff::Complete(RequestHead {
                path: req.path.unwrap_or("/"),
                host,
                head_len,
                content_length,
            })
        }
        Ok(httparse::Status::Partial) => Sniff::Partial {
            path: req.path.or_else(|| partial_path(buf)),
            host: partial_host(buf),
        },
        Err(httparse::Error::TooManyHeaders) => Sniff::Partial {
            path: partial_path(buf),
            host: partial_host(buf),
        },
        Err(_) => Sniff::Invalid,
    }
}

/// The request target of a request line that is complete even though the head is not.
fn partial_path(buf: &[u8]) -> Option<&str> {
    let line = buf.split(|b| *b == b'\n').next()?;
    if line.len() == buf.len() {
        return None;
    }
    let text = std::str::from_utf8(line).ok()?;
    text.split(' ').nth(1).filter(|p| !p.is_empty())
}

/// The Host header among the complete lines of an incomplete head.
fn partial_host(buf: &[u8]) -> Option<&str> {
    let complete = &buf[..buf.iter().rposition(|b| *b == b'\n')?];
    complete.split(|b| *b == b'\n').skip(1).find_map(|line| {
        let line = std::str::from_utf8(line).ok()?;
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("host")
            .then(|| value.trim())
            .filter(|v| !v.is_empty())
    })
}

/// A response head as the success watch reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    pub status: u16,
    pub location: Option<&'a str>,
    pub head_len: usize,
    /// `None` when the body length is not given by Content-Length (chunked, or until close).
    pub content_length: Option<usize>,
}

pub enum ResponseSniff<'a> {
    Complete(ResponseHead<'a>),
    Partial,
    Invalid,
}

pub fn sniff_response(buf: &[u8]) -> ResponseSniff<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            let chunked = header(resp.headers, "transfer-encoding").is_some();
            let content_length = if chunked {
                None
            } else {
                header(resp.headers, "content-length").and_then(|v| v.trim().parse().ok())
            };
            let status = resp.code.unwrap_or(0);
            // 1xx, 204 and 304 never carry a body.
            let content_length = if matches!(status, 100..=199 | 204 | 304) {
                Some(0)
            } else {
                content_length
            };
            ResponseSniff::Complete(ResponseHead {
                status,
                location: header(resp.headers, "location"),
                head_len,
                content_length,
            })
        }
        Ok(httparse::Status::Partial) => ResponseSniff::Partial,
        Err(_) => ResponseSniff::Invalid,
    }
}

fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}

/// Appends `text` escaped for an HTML attribute or text node.
pub fn html_escape(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            _ => out.push(b),
        }
    }
}

/// Appends the original URL of a request: absolute-form targets as they are, else
/// `http://host` + target, with the destination address when there is no Host header.
pub fn original_url(path: &str, host: Option<&str>, server: SocketAddr, out: &mut Vec<u8>) {
    let (dst, port) = (server.ip(), server.port());
    if path.starts_with("http://") || path.starts_with("https://") {
        out.extend_from_slice(path.as_bytes());
        return;
    }
    out.extend_from_slice(b"http://");
    // Writes into a Vec cannot fail.
    let _ = match (host, dst) {
        (Some(h), _) => out.write_all(h.trim().as_bytes()),
        (None, IpAddr::V4(a)) if port == 80 => write!(out, "{a}"),
        (None, IpAddr::V4(a)) => write!(out, "{a}:{port}"),
        (None, IpAddr::V6(a)) if port == 80 => write!(out, "[{a}]"),
        (None, IpAddr::V6(a)) => write!(out, "[{a}]:{port}"),
    };
    if !path.starts_with('/') {
        out.push(b'/');
    }
    out.extend_from_slice(path.as_bytes());
}

/// Appends a complete `302 Found` response for `location`.
pub fn write_302(location: &[u8], out: &mut Vec<u8>, body: &mut Vec<u8>) {
    body.clear();
    body.extend_from_slice(
        b"<!DOCTYPE html>\n<html><head><title>Recharge needed</title></head><body>\n\
<p>Your balance needs a top-up before you can browse.</p>\n<p><a href=\"",
    );
    html_escape(location, body);
    body.extend_from_slice(b"\">Continue to the recharge page</a></p>\n</body></html>\n");
    out.extend_from_slice(b"HTTP/1.1 302 Found\r\nLocation: ");
    out.extend_from_slice(location);
    // Writes into a Vec cannot fail.
    let _ = write!(
        out,
        "\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn complete_and_partial_requests() {
        let req = b"GET /a?b=c HTTP/1.1\r\nHost: site.example\r\nAccept: */*\r\n\r\n";
        match sniff_request(req) {
            Sniff::Complete(h) => {
                assert_eq!(h.path, "/a?b=c");
                assert_eq!(h.host, Some("site.example"));
                assert_eq!(h.head_len, req.len());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            sniff_request(&req[..30]),
            Sniff::Partial {
                path: Some("/a?b=c"),
                host: None
            }
        );
        assert_eq!(
            sniff_request(&req[..45]),
            Sniff::Partial {
                path: Some("/a?b=c"),
                host: Some("site.example")
            }
        );
        assert_eq!(
            sniff_request(&req[..8]),
            Sniff::Partial {
                path: None,
                host: None
            }
        );
        assert_eq!(sniff_request(b"\x16\x03\x01\x02\x00"), Sniff::Invalid);
    }

    #[test]
    fn original_url_forms() {
        let dst = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mut out = Vec::new();
        original_url("/x", Some("site.example"), (dst, 80).into(), &mut out);
        assert_eq!(out, b"http://site.example/x");
        out.clear();
        original_url("/x", None, (dst, 8080).into(), &mut out);
        assert_eq!(out, b"http://192.0.2.1:8080/x");
        out.clear();
        original_url(
            "http://abs.example/y",
            Some("h"),
            (dst, 80).into(),
            &mut out,
        );
        assert_eq!(out, b"http://abs.example/y");
    }

    #[test]
    fn the_302_is_a_valid_response_with_an_escaped_link() {
        let (mut out, mut body) = (Vec::new(), Vec::new());
        write_302(b"http://p/r?a=1&b=2", &mut out, &mut body);
        match sniff_response(&out) {
            ResponseSniff::Complete(h) => {
                assert_eq!(h.status, 302);
                assert_eq!(h.location, Some("http://p/r?a=1&b=2"));
                assert_eq!(h.content_length, Some(out.len() - h.head_len));
            }
            _ => panic!("not a complete response"),
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("href=\"http://p/r?a=1&amp;b=2\""));
        assert!(text.contains("Cache-Control: no-store\r\n"));
        assert!(text.contains("Connection: close\r\n"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const REQUEST: &[u8] = b"GET /generate_204?x=1 HTTP/1.1\r\nUser-Agent: Dalvik/2.1.0\r\nHost: connectivitycheck.gstatic.com\r\nConnection: Keep-Alive\r\n\r\n";

        proptest! {
            /// Whatever arrives on port 80, the sniffers answer and never panic.
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                let _ = sniff_request(&bytes);
                let _ = sniff_response(&bytes);
            }

            /// A request cut anywhere is either still partial or, only when whole, complete with
            /// the same path and host; what a prefix already shows never contradicts the whole.
            #[test]
            fn every_prefix_of_a_request_agrees_with_the_whole(cut in 0..REQUEST.len()) {
                match sniff_request(&REQUEST[..cut]) {
                    Sniff::Partial { path, host } => {
                        prop_assert!(path.is_none() || path == Some("/generate_204?x=1"));
                        prop_assert!(host.is_none() || host == Some("connectivitycheck.gstatic.com"));
                    }
                    other => prop_assert!(false, "cut {cut}: {other:?}"),
                }
            }

            /// Bit flips in a real request head: no panic, and a complete answer still has a
            /// head length within the buffer.
            #[test]
            fn mutated_requests_never_panic(at in 0..REQUEST.len(), bit in 0..8u8) {
                let mut req = REQUEST.to_vec();
                req[at] ^= 1 << bit;
                if let Sniff::Complete(h) = sniff_request(&req) {
                    prop_assert!(h.head_len <= req.len());
                }
            }
        }
    }
}
