//! The recharge-success watch: reads the HTTP heads of a redirected subscriber's portal flows —
//! requests going up and responses coming down — and picks out the success URL's token.
//!
//! Each watched flow direction has a small reassembly buffer, so a head split over segments or
//! arriving out of order is still read; the buffers and the number of watched flows are bounded,
//! and a direction that overflows or loses its place waits for the next segment that starts a
//! new message.

use super::http::{sniff_request, sniff_response, ResponseSniff, Sniff};
use crate::packet::{Context, FlowKey};
use crate::policy::SuccessUrl;
use crate::time::Timestamp;
use crate::wire::{tcp_flags, Direction};
use std::collections::HashMap;
use std::time::Duration;

/// Bytes of one direction's head kept while waiting for the rest.
pub const MAX_HEAD: usize = 8192;
/// Flows watched at once; the least recently seen makes room.
pub const MAX_FLOWS: usize = 256;
/// Out-of-order pieces remembered per direction.
const MAX_PIECES: usize = 8;
/// A watched flow idle this long is forgotten.
const IDLE: Duration = Duration::from_secs(120);

/// One direction of a watched flow.
#[derive(Default)]
struct Stream {
    /// Sequence number of `buf[0]`; `None` until the direction's first segment.
    base: Option<u32>,
    /// Bytes at `buf[..contiguous]` are in order; beyond are out-of-order pieces.
    buf: Vec<u8>,
    contiguous: usize,
    pieces: [(u32, u32); MAX_PIECES],
    piece_count: usize,
    /// Lost our place (overflow, unknown body length): resynchronise on a new message.
    lost: bool,
}

struct Watched {
    up: Stream,
    down: Stream,
    last_seen: Timestamp,
}

/// One TCP segment of a watched flow, as the watch reads it.
#[derive(Clone, Copy)]
pub struct Segment<'a> {
    pub key: &'a FlowKey,
    pub direction: Direction,
    pub flags: u8,
    pub seq: u32,
    pub payload: &'a [u8],
    pub now: Timestamp,
}

impl<'a> Segment<'a> {
    /// The segment a packet carries.
    pub fn of(cx: &'a Context<'a>) -> Segment<'a> {
        Segment {
            key: &cx.key,
            direction: cx.direction,
            flags: cx.frame.packet.tcp_flags,
            seq: cx.frame.packet.tcp_seq,
            payload: cx.frame.payload(),
            now: cx.now,
        }
    }
}

/// A success URL found in a flow; the query holds the token.
#[derive(Debug, PartialEq, Eq)]
pub struct Sighting<'a> {
    pub query: &'a str,
    pub direction: Direction,
}

#[derive(Default)]
pub struct Watch {
    /// Keyed on flows the subscriber (and the portal's peers) choose: a randomly keyed hash,
    /// fresh per watch.
    flows: HashMap<FlowKey, Watched, ahash::RandomState>,
    /// Buffers of forgotten flows, reused.
    spare: Vec<Stream>,
    pub evicted: u64,
}

impl Watch {
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn forget(&mut self, key: &FlowKey) {
        if let Some(w) = self.flows.remove(key) {
            self.recycle(w);
        }
    }

    fn recycle(&mut self, w: Watched) {
        for mut s in [w.up, w.down] {
            if self.spare.len() < 2 * MAX_FLOWS {
                let mut buf = std::mem::take(&mut s.buf);
                buf.clear();
                self.spare.push(Stream {
                    buf,
                    ..Stream::default()
                });
            }
        }
    }

    fn fresh_stream(&mut self) -> Stream {
        self.spare.pop().unwrap_or_default()
    }

    /// Feeds one TCP segment of a watched flow; `on_success` is called for each success URL
    /// found (at most once per message head).
    pub fn segment(
        &mut self,
        seg: Segment<'_>,
        success: &SuccessUrl,
        mut on_success: impl FnMut(Sighting<'_>),
    ) {
        let Segment {
            key,
            direction,
            flags,
            seq,
            payload,
            now,
        } = seg;
        if flags & tcp_flags::RST != 0 {
            self.forget(key);
            return;
        }
        if !self.flows.contains_key(key) {
            if self.flows.len() >= MAX_FLOWS {
                self.make_room(now);
            }
            let (up, down) = (self.fresh_stream(), self.fresh_stream());
            self.flows.insert(
                *key,
                Watched {
                    up,
                    down,
                    last_seen: now,
                },
            );
        }
        let Some(w) = self.flows.get_mut(key) else {
            return;
        };
        w.last_seen = now;
        let stream = match direction {
            Direction::Uplink => &mut w.up,
            Direction::Downlink => &mut w.down,
        };
        if flags & tcp_flags::SYN != 0 {
            *stream = Stream {
                base: Some(seq.wrapping_add(1)),
                buf: std::mem::take(&mut stream.buf),
                ..Stream::default()
            };
            stream.buf.clear();
        }
        if payload.is_empty() {
            return;
        }
        stream.feed(seq, payload);
        stream.drain(direction, success, &mut on_success);
    }

    fn make_room(&mut self, now: Timestamp) {
        let before = self.flows.len();
        let mut idle = Vec::new();
        for (k, w) in &self.flows {
            if now.saturating_since(w.last_seen) > IDLE {
                idle.push(*k);
            }
        }
        if idle.is_empty() {
            if let Some(k) = self
                .flows
                .iter()
                .min_by_key(|(_, w)| w.last_seen)
                .map(|(k, _)| *k)
            {
                idle.push(k);
            }
        }
        for k in idle {
            self.forget(&k);
        }
        self.evicted += (before - self.flows.len()) as u64;
    }
}

impl Stream {
    /// Places a segment's bytes; out-of-window or overflowing bytes are dropped (TCP will
    /// retransmit what the receiver did not get; what it did get, we read from the next head).
    fn feed(&mut self, seq: u32, payload: &[u8]) {
        let base = *self.base.get_or_insert(seq);
        let mut offset = seq.wrapping_sub(base) as i64;
        // Sequence numbers behind the base wrap to huge offsets: treat those as retransmissions.
        if offset > i64::from(u32::MAX / 2) {
            offset -= 1i64 << 32;
        }
        let mut data = payload;
        if offset < 0 {
            let behind = offset.unsigned_abs() as usize;
            if behind >= data.len() {
                return;
            }
            data = &data[behind..];
            offset = 0;
        }
        let offset = offset as usize;
        if self.lost {
            // Resynchronise: only a segment that starts a message can put us back on track.
            if looks_like_message_start(data) {
                self.lost = false;
                self.buf.clear();
                self.contiguous = 0;
                self.piece_count = 0;
                self.base = Some(base.wrapping_add(offset as u32));
                self.buf
                    .extend_from_slice(&data[..data.len().min(MAX_HEAD)]);
                self.contiguous = self.buf.len();
                if data.len() > MAX_HEAD {
                    self.lost = true;
                }
            } else {
                self.base = Some(base.wrapping_add((offset + data.len()) as u32));
            }
            return;
        }
        let end = offset + data.len();
        if end > MAX_HEAD {
            if offset <= self.contiguous {
                // A head longer than we keep: give up on this message.
                self.lost = true;
                self.base = Some(base.wrapping_add(end as u32));
                self.buf.clear();
                self.contiguous = 0;
                self.piece_count = 0;
            }
            return;
        }
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        self.buf[offset..end].copy_from_slice(data);
        if offset <= self.contiguous {
            self.contiguous = self.contiguous.max(end);
        } else if self.piece_count < MAX_PIECES {
            self.pieces[self.piece_count] = (offset as u32, end as u32);
            self.piece_count += 1;
        }
        // Pieces that now touch the contiguous prefix join it.
        let mut grew = true;
        while grew {
            grew = false;
            let mut i = 0;
            while i < self.piece_count {
                let (s, e) = self.pieces[i];
                if s as usize <= self.contiguous {
                    self.contiguous = self.contiguous.max(e as usize);
                    self.pieces[i] = self.pieces[self.piece_count - 1];
                    self.piece_count -= 1;
                    grew = true;
                } else {
                    i += 1;
                }
            }
        }
    }

    /// Reads every complete head in the contiguous prefix.
    fn drain(
        &mut self,
        direction: Direction,
        success: &SuccessUrl,
        on_success: &mut impl FnMut(Sighting<'_>),
    ) {
        loop {
            let data = &self.buf[..self.contiguous];
            if data.is_empty() {
                return;
            }
            let (consumed, body) = match direction {
                Direction::Uplink => match sniff_request(data) {
                    Sniff::Complete(h) => {
                        if let Some(query) = success_query(h.host, h.path, success) {
                            on_success(Sighting { query, direction });
                        }
                        (h.head_len, Some(h.content_length as u64))
                    }
                    Sniff::Partial { .. } => return,
                    Sniff::Invalid => (data.len(), None),
                },
                Direction::Downlink => match sniff_response(data) {
                    ResponseSniff::Complete(h) => {
                        if (300..400).contains(&h.status) {
                            if let Some(query) = h.location.and_then(|l| location_query(l, success))
                            {
                                on_success(Sighting { query, direction });
                            }
                        }
                        (h.head_len, h.content_length.map(|n| n as u64))
                    }
                    ResponseSniff::Partial => return,
                    ResponseSniff::Invalid => (data.len(), None),
                },
            };
            self.consume(consumed);
            match body {
                Some(n) => {
                    let in_buf = (n as usize).min(self.contiguous);
                    self.consume(in_buf);
                    let rest = n - in_buf as u64;
                    if rest > 0 {
                        // The next head starts past the body: move the base there, so body
                        // bytes arrive "behind" it and are ignored without being buffered. Early
                        // pieces of the next head are dropped (the lost-place path recovers).
                        if let Some(b) = self.base.as_mut() {
                            *b = b.wrapping_add(rest as u32);
                        }
                        self.buf.clear();
                        self.piece_count = 0;
                        return;
                    }
                }
                None => {
                    self.lost = true;
                    self.buf.clear();
                    self.contiguous = 0;
                    self.piece_count = 0;
                    return;
                }
            }
        }
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.contiguous);
        self.buf.drain(..n);
        self.contiguous -= n;
        for p in &mut self.pieces[..self.piece_count] {
            p.0 = p.0.saturating_sub(n as u32);
            p.1 = p.1.saturating_sub(n as u32);
        }
        if let Some(b) = self.base.as_mut() {
            *b = b.wrapping_add(n as u32);
        }
    }
}

fn looks_like_message_start(data: &[u8]) -> bool {
    const STARTS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"HEAD ",
        b"PUT ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"HTTP/1.",
    ];
    STARTS.iter().any(|s| data.starts_with(s))
}

/// The query of a request for the success URL.
fn success_query<'a>(host: Option<&str>, target: &'a str, success: &SuccessUrl) -> Option<&'a str> {
    let (target_host, rest) = split_target(target);
    let host = target_host.or(host)?;
    // Without the port: `[v6]:port` or `name:port`.
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    let (path, query) = rest.split_once('?')?;
    (host.eq_ignore_ascii_case(&success.host) && path == success.path).then_some(query)
}

/// Splits an absolute URL into (host with port, path and query); an origin-form target has no
/// host.
fn split_target(target: &str) -> (Option<&str>, &str) {
    let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    else {
        return (None, target);
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let path = &rest[end..];
    (Some(&rest[..end]), if path.is_empty() { "/" } else { path })
}

/// The query of a Location that points at the success URL (absolute, or relative to the portal).
fn location_query<'a>(location: &'a str, success: &SuccessUrl) -> Option<&'a str> {
    let (host, _) = split_target(location);
    let location = location.split('#').next().unwrap_or(location);
    success_query(host.or(Some(&success.host)), location, success)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn success() -> SuccessUrl {
        SuccessUrl {
            host: "portal.example".into(),
            path: "/recharge/success".into(),
        }
    }

    fn key() -> FlowKey {
        FlowKey {
            ue: 1,
            remote: 2,
            ue_port: 40000,
            remote_port: 80,
            protocol: 6,
        }
    }

    fn run(w: &mut Watch, dir: Direction, segs: &[(u32, &[u8])]) -> Vec<String> {
        let mut found = Vec::new();
        for (seq, data) in segs {
            let seg = Segment {
                key: &key(),
                direction: dir,
                flags: tcp_flags::ACK,
                seq: *seq,
                payload: data,
                now: Timestamp::ZERO,
            };
            w.segment(seg, &success(), |s| found.push(s.query.to_string()));
        }
        found
    }

    const REQ: &[u8] =
        b"GET /recharge/success?sub=a&sig=b HTTP/1.1\r\nHost: Portal.Example:80\r\n\r\n";

    #[test]
    fn finds_the_success_request_whole_split_and_out_of_order() {
        let mut w = Watch::default();
        assert_eq!(
            run(&mut w, Direction::Uplink, &[(100, REQ)]),
            ["sub=a&sig=b"]
        );

        let mut w = Watch::default();
        let (a, b) = REQ.split_at(20);
        assert_eq!(
            run(&mut w, Direction::Uplink, &[(100, a), (120, b)]),
            ["sub=a&sig=b"]
        );

        let mut w = Watch::default();
        let (a, rest) = REQ.split_at(10);
        let (b, c) = rest.split_at(15);
        let found = run(&mut w, Direction::Uplink, &[(100, a), (125, c), (110, b)]);
        assert_eq!(found, ["sub=a&sig=b"]);
    }

    #[test]
    fn keep_alive_requests_are_each_read_and_retransmissions_ignored() {
        let mut w = Watch::default();
        let first = b"POST /pay HTTP/1.1\r\nHost: portal.example\r\nContent-Length: 5\r\n\r\nx=1&y";
        let n = first.len() as u32;
        let found = run(
            &mut w,
            Direction::Uplink,
            &[(1, first), (1, first), (1 + n, REQ), (1 + n, REQ)],
        );
        assert_eq!(found, ["sub=a&sig=b"]);
    }

    #[test]
    fn other_hosts_and_paths_do_not_count() {
        let mut w = Watch::default();
        let other = b"GET /recharge/success?sub=a HTTP/1.1\r\nHost: evil.example\r\n\r\n";
        assert!(run(&mut w, Direction::Uplink, &[(1, other)]).is_empty());
        let mut w = Watch::default();
        let other = b"GET /recharge/successful?sub=a HTTP/1.1\r\nHost: portal.example\r\n\r\n";
        assert!(run(&mut w, Direction::Uplink, &[(1, other)]).is_empty());
    }

    #[test]
    fn finds_the_success_location_in_a_redirect_response() {
        let mut w = Watch::default();
        let resp = b"HTTP/1.1 303 See Other\r\nLocation: http://portal.example/recharge/success?sub=z\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(run(&mut w, Direction::Downlink, &[(7, resp)]), ["sub=z"]);
        let mut w = Watch::default();
        let resp = b"HTTP/1.1 302 Found\r\nLocation: /recharge/success?sub=r\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(run(&mut w, Direction::Downlink, &[(7, resp)]), ["sub=r"]);
    }

    #[test]
    fn a_200_body_is_skipped_and_the_next_response_read() {
        let mut w = Watch::default();
        let page = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
        let redirect =
            b"HTTP/1.1 302 Found\r\nLocation: /recharge/success?sub=q\r\nContent-Length: 0\r\n\r\n";
        let (a, b) = page.split_at(page.len() - 4);
        let n = page.len() as u32;
        assert_eq!(
            run(
                &mut w,
                Direction::Downlink,
                &[(1, a), (1 + a.len() as u32, b), (1 + n, redirect)]
            ),
            ["sub=q"]
        );
    }

    #[test]
    fn oversized_heads_and_chunked_bodies_resynchronise() {
        let mut w = Watch::default();
        let huge = vec![b'a'; MAX_HEAD + 10];
        let mut first = b"GET / HTTP/1.1\r\nX: ".to_vec();
        first.extend_from_slice(&huge);
        let n = first.len() as u32;
        assert!(run(&mut w, Direction::Uplink, &[(1, &first)]).is_empty());
        assert_eq!(
            run(&mut w, Direction::Uplink, &[(1 + n, REQ)]),
            ["sub=a&sig=b"]
        );

        let mut w = Watch::default();
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let n = chunked.len() as u32;
        let redirect =
            b"HTTP/1.1 302 Found\r\nLocation: /recharge/success?sub=c\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            run(
                &mut w,
                Direction::Downlink,
                &[(1, chunked), (1 + n, redirect)]
            ),
            ["sub=c"]
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let mut w = Watch::default();
        for port in 0..(MAX_FLOWS as u16 * 2) {
            let k = FlowKey {
                ue_port: port,
                ..key()
            };
            let seg = Segment {
                key: &k,
                direction: Direction::Uplink,
                flags: tcp_flags::SYN,
                seq: 0,
                payload: &[],
                now: Timestamp::ZERO,
            };
            w.segment(seg, &success(), |_| {});
        }
        assert_eq!(w.len(), MAX_FLOWS);
    }
}
