//! The stateless TCP responder: the gateway answers a redirected subscriber's web connection as
//! if it were the server, without ever contacting the server.
//!
//! SYN → SYN-ACK with a cookie as its sequence number; the segment carrying the request → the
//! 302 (split to the client's MSS) with FIN on its last segment; the client's FIN → its ACK. A
//! request split over segments is collected in a small bounded table, entered only after the
//! cookie proved the handshake, so a SYN flood leaves nothing behind. Every other TCP port gets
//! an RST.

use super::cookie::{self, Conn, CookieJar, MSS_TABLE};
use super::http::{original_url, sniff_request, write_302, Sniff};
use super::{Counters, Target};
use crate::packet::{Context, Frame, Output, Toward};
use crate::policy::{Fill, Template};
use crate::time::Timestamp;
use crate::wire::{tcp_flags, TcpSegment};
use std::net::SocketAddr;
use std::time::Duration;

/// A request head longer than this is answered with what has arrived.
pub const MAX_REQUEST: usize = 4096;
/// Connections whose request is being collected, at most.
pub const PENDING_SLOTS: usize = 64;
/// A collecting connection idle this long frees its slot.
const PENDING_IDLE: Duration = Duration::from_secs(10);
/// Original URLs are cut to this many bytes before encoding, bounding the 302's size.
const MAX_ORIGINAL_URL: usize = 2048;
/// How far past the cookie a client's acknowledgement may reach and still be ours: the MSS
/// class, the 302 and our FIN.
const ACK_WINDOW: u32 = 32 * 1024;
const WINDOW: u16 = 65535;
/// The MSS we announce: what we can take in one segment of a request.
const OUR_MSS: u16 = 1460;

/// What the responder did with a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Frames were written to the output.
    Sent,
    /// Nothing to send (an ACK of our data, a RST).
    Consumed,
}

struct Pending {
    conn: Conn,
    in_use: bool,
    answered: bool,
    /// Sequence number of `buf[0]` and of the byte after the collected request.
    base: u32,
    next: u32,
    buf: Vec<u8>,
    last_seen: Timestamp,
}

pub struct Responder {
    jar: CookieJar,
    template: Template,
    pending: Vec<Pending>,
    /// Scratch buffers, reused for every answer.
    location: Vec<u8>,
    orig: Vec<u8>,
    response: Vec<u8>,
    body: Vec<u8>,
}

impl Responder {
    pub fn new(secret: &[u8], template: Template) -> Responder {
        Responder {
            jar: CookieJar::new(secret),
            template,
            pending: Vec::new(),
            location: Vec::new(),
            orig: Vec::new(),
            response: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn set_secret(&mut self, secret: &[u8]) {
        self.jar = CookieJar::new(secret);
    }

    pub fn set_template(&mut self, template: Template) {
        self.template = template;
    }

    /// Connections being collected (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.pending.iter().filter(|p| p.in_use).count()
    }

    /// Answers an uplink TCP segment to a port that is not an HTTP port: an RST, so the
    /// client fails at once instead of waiting for a handshake that never completes.
    pub fn reset(&mut self, f: &Frame<'_>, out: &mut Output, counters: &mut Counters) -> Answer {
        let p = f.packet;
        if p.tcp_flags & tcp_flags::RST != 0 {
            return Answer::Consumed;
        }
        counters.resets_sent += 1;
        send_reset(f, out)
    }

    /// Handles an uplink TCP segment to an HTTP port of a redirected subscriber.
    pub fn http(
        &mut self,
        cx: &Context<'_>,
        target: &Target<'_>,
        out: &mut Output,
        counters: &mut Counters,
    ) -> Answer {
        let f = &cx.frame;
        let p = f.packet;
        // Uplink: the UE is the client.
        let conn = Conn {
            client: cx.key.ue,
            server: cx.key.remote,
            client_port: cx.key.ue_port,
            server_port: cx.key.remote_port,
        };
        let now_secs = cx.now.as_nanos() / 1_000_000_000;
        let flags = p.tcp_flags;
        if flags & tcp_flags::RST != 0 {
            self.free(&conn);
            return Answer::Consumed;
        }
        if flags & tcp_flags::SYN != 0 {
            if flags & tcp_flags::ACK != 0 {
                counters.resets_sent += 1;
                return send_reset(f, out);
            }
            let client_mss = syn_mss(f);
            let cookie = self
                .jar
                .make(now_secs, &conn, cookie::mss_index(client_mss));
            counters.syn_answered += 1;
            return reply(
                f,
                out,
                Seg {
                    mss: Some(client_mss.map_or(OUR_MSS, |m| m.min(OUR_MSS))),
                    ..Seg::control(
                        cookie,
                        p.tcp_seq.wrapping_add(1),
                        tcp_flags::SYN | tcp_flags::ACK,
                    )
                },
            );
        }
        if flags & tcp_flags::ACK == 0 {
            return Answer::Consumed;
        }
        let Some(offset) = self.jar.check(now_secs, &conn, p.tcp_ack, ACK_WINDOW) else {
            counters.bad_cookies += 1;
            counters.resets_sent += 1;
            return send_reset(f, out);
        };
        let payload = f.payload();
        let our_seq = p.tcp_ack;
        if !payload.is_empty() {
            if offset >= MSS_TABLE.len() as u32 {
                // Data after our answer went out: the connection is over for us.
                counters.resets_sent += 1;
                return send_reset(f, out);
            }
            let mut turn = Turn {
                f,
                target,
                now: cx.now,
                out,
                counters,
            };
            let answer = Place {
                our_seq,
                mss: MSS_TABLE[offset as usize],
            };
            return self.request(&mut turn, &conn, answer, payload);
        }
        if flags & tcp_flags::FIN != 0 {
            self.free(&conn);
            let ack = p.tcp_seq.wrapping_add(1);
            // Before our answer the client closes first: close our side too.
            let flags = if offset < MSS_TABLE.len() as u32 {
                tcp_flags::FIN | tcp_flags::ACK
            } else {
                tcp_flags::ACK
            };
            counters.fins_acked += 1;
            return reply(f, out, Seg::control(our_seq, ack, flags));
        }
        Answer::Consumed
    }

    /// A segment carrying (part of) the request.
    fn request(&mut self, t: &mut Turn<'_, '_>, conn: &Conn, at: Place, payload: &[u8]) -> Answer {
        let (f, now) = (t.f, t.now);
        let our_seq = at.our_seq;
        let seq = f.packet.tcp_seq;
        let end = seq.wrapping_add(payload.len() as u32);
        let Some(slot) = self
            .pending
            .iter()
            .position(|s| s.in_use && s.conn == *conn)
        else {
            // The common case: the whole request in one segment, answered without state.
            let (path, host) = match sniff_request(payload) {
                Sniff::Complete(h) => (h.path, h.host),
                Sniff::Partial { path, host } => {
                    if payload.len() < MAX_REQUEST {
                        if let Some(i) = self.take_slot(now) {
                            let s = &mut self.pending[i];
                            s.conn = *conn;
                            s.in_use = true;
                            s.answered = false;
                            s.base = seq;
                            s.next = end;
                            s.buf.clear();
                            s.buf.extend_from_slice(payload);
                            s.last_seen = now;
                            t.counters.requests_collecting += 1;
                            return reply(f, t.out, Seg::control(our_seq, end, tcp_flags::ACK));
                        }
                        // No slot: answer with what we have rather than hold anything.
                        t.counters.pending_full += 1;
                    }
                    (path.unwrap_or("/"), host)
                }
                Sniff::Invalid => {
                    t.counters.not_http += 1;
                    t.counters.resets_sent += 1;
                    return send_reset(f, t.out);
                }
            };
            self.orig.clear();
            original_url(path, host, server(f), &mut self.orig);
            return self.answer(t, at, end);
        };

        let s = &mut self.pending[slot];
        s.last_seen = now;
        let behind = s.next.wrapping_sub(seq);
        let covered = end.wrapping_sub(s.base) <= s.next.wrapping_sub(s.base);
        if s.answered {
            if covered {
                // A retransmission: our 302 was lost; send the same one again.
                let next = s.next;
                let (path, host) = match sniff_request(&self.pending[slot].buf) {
                    Sniff::Complete(h) => (h.path, h.host),
                    Sniff::Partial { path, host } => (path.unwrap_or("/"), host),
                    Sniff::Invalid => ("/", None),
                };
                self.orig.clear();
                original_url(path, host, server(f), &mut self.orig);
                t.counters.retransmissions += 1;
                return self.answer(t, at, next);
            }
            t.counters.resets_sent += 1;
            return send_reset(f, t.out);
        }
        if behind as usize > payload.len() && behind < u32::MAX / 2 {
            // Entirely old data: re-acknowledge what we hold.
            let next = s.next;
            return reply(f, t.out, Seg::control(our_seq, next, tcp_flags::ACK));
        }
        if behind >= u32::MAX / 2 {
            // A gap: ask again for the next byte we miss; the client retransmits in order.
            let next = s.next;
            return reply(f, t.out, Seg::control(our_seq, next, tcp_flags::ACK));
        }
        let new = &payload[behind as usize..];
        let room = MAX_REQUEST - s.buf.len().min(MAX_REQUEST);
        let take = new.len().min(room);
        s.buf.extend_from_slice(&new[..take]);
        s.next = s.next.wrapping_add(new.len() as u32);
        let full = s.buf.len() >= MAX_REQUEST;
        let next = s.next;
        let (path, host, complete) = match sniff_request(&s.buf) {
            Sniff::Complete(h) => (h.path, h.host, true),
            Sniff::Partial { path, host } => (path.unwrap_or("/"), host, false),
            Sniff::Invalid => {
                s.in_use = false;
                t.counters.not_http += 1;
                t.counters.resets_sent += 1;
                return send_reset(f, t.out);
            }
        };
        if !complete && !full {
            return reply(f, t.out, Seg::control(our_seq, next, tcp_flags::ACK));
        }
        self.orig.clear();
        original_url(path, host, server(f), &mut self.orig);
        self.pending[slot].answered = true;
        self.answer(t, at, next)
    }

    fn take_slot(&mut self, now: Timestamp) -> Option<usize> {
        if let Some(i) = self
            .pending
            .iter()
            .position(|s| !s.in_use || now.saturating_since(s.last_seen) > PENDING_IDLE)
        {
            return Some(i);
        }
        if self.pending.len() < PENDING_SLOTS {
            self.pending.push(Pending {
                conn: Conn {
                    client: 0,
                    server: 0,
                    client_port: 0,
                    server_port: 0,
                },
                in_use: false,
                answered: false,
                base: 0,
                next: 0,
                buf: Vec::with_capacity(MAX_REQUEST),
                last_seen: now,
            });
            return Some(self.pending.len() - 1);
        }
        None
    }

    fn free(&mut self, conn: &Conn) {
        for s in &mut self.pending {
            if s.in_use && s.conn == *conn {
                s.in_use = false;
            }
        }
    }

    /// Sends the 302 for the original URL in `self.orig` from `at`, acknowledging `ack`, in
    /// segments of at most the class's MSS, the last one carrying FIN.
    fn answer(&mut self, t: &mut Turn<'_, '_>, at: Place, ack: u32) -> Answer {
        let target = t.target;
        let mut cut = self.orig.len().min(MAX_ORIGINAL_URL);
        while cut > 0 && std::str::from_utf8(&self.orig[..cut]).is_err() {
            cut -= 1;
        }
        let orig = std::str::from_utf8(&self.orig[..cut]).unwrap_or("");
        self.location.clear();
        let fill = Fill {
            url: target.url,
            orig,
            sub: target.subscriber,
            ue: target.ue,
        };
        self.template.render(&fill, &mut self.location);
        self.response.clear();
        write_302(&self.location, &mut self.response, &mut self.body);
        t.counters.redirects_sent += 1;
        let response = std::mem::take(&mut self.response);
        let mut seq = at.our_seq;
        let chunks = response.chunks(usize::from(at.mss.max(1)));
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.enumerate() {
            let mut flags = tcp_flags::ACK;
            if i == last {
                flags |= tcp_flags::PSH | tcp_flags::FIN;
            }
            let seg = Seg {
                payload: chunk,
                ..Seg::control(seq, ack, flags)
            };
            reply(t.f, t.out, seg);
            seq = seq.wrapping_add(chunk.len() as u32);
        }
        self.response = response;
        Answer::Sent
    }
}

/// One segment being answered: the frame, whom its 302 names, and where answers and counts go.
struct Turn<'t, 'a> {
    f: &'t Frame<'a>,
    target: &'t Target<'t>,
    now: Timestamp,
    out: &'t mut Output,
    counters: &'t mut Counters,
}

/// Where our answer on a connection starts: our next sequence number (the cookie's successor)
/// and the MSS class the cookie carries.
#[derive(Clone, Copy)]
struct Place {
    our_seq: u32,
    mss: u16,
}

/// What a segment back to the client says.
struct Seg<'p> {
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    mss: Option<u16>,
    payload: &'p [u8],
}

impl Seg<'static> {
    /// A segment without data or options.
    fn control(seq: u32, ack: u32, flags: u8) -> Seg<'static> {
        Seg {
            seq,
            ack,
            flags,
            window: WINDOW,
            mss: None,
            payload: &[],
        }
    }
}

/// A segment back to the client on the connection `f` belongs to, with the link header
/// mirrored.
fn reply(f: &Frame<'_>, out: &mut Output, seg: Seg<'_>) -> Answer {
    let t = f.packet.tuple;
    out.reply(Toward::Ue, f, |link, buf| {
        TcpSegment {
            link,
            src: t.dst,
            dst: t.src,
            src_port: t.dst_port,
            dst_port: t.src_port,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            window: seg.window,
            mss: seg.mss,
            payload: seg.payload,
        }
        .write(buf)
    });
    Answer::Sent
}

/// The server the client asked for: where the original URL points when it names no host.
fn server(f: &Frame<'_>) -> SocketAddr {
    SocketAddr::new(f.packet.tuple.dst, f.packet.tuple.dst_port)
}

/// An RST for a segment, as a host without the connection sends it (RFC 9293 §3.10.7.1).
fn send_reset(f: &Frame<'_>, out: &mut Output) -> Answer {
    let p = f.packet;
    let (seq, ack, flags) = if p.tcp_flags & tcp_flags::ACK != 0 {
        (p.tcp_ack, 0, tcp_flags::RST)
    } else {
        let mut len = u32::from(p.payload_len);
        if p.tcp_flags & tcp_flags::SYN != 0 {
            len += 1;
        }
        if p.tcp_flags & tcp_flags::FIN != 0 {
            len += 1;
        }
        (
            0,
            p.tcp_seq.wrapping_add(len),
            tcp_flags::RST | tcp_flags::ACK,
        )
    };
    let seg = Seg {
        window: 0,
        ..Seg::control(seq, ack, flags)
    };
    reply(f, out, seg)
}

/// The MSS option of a SYN, if it has one.
fn syn_mss(f: &Frame<'_>) -> Option<u16> {
    let header = f.l4();
    let data_offset = usize::from(header.get(12)? >> 4) * 4;
    let mut options = header.get(20..data_offset)?;
    while let Some((&kind, rest)) = options.split_first() {
        match kind {
            0 => return None,
            1 => options = rest,
            _ => {
                let len = usize::from(*rest.first()?);
                if len < 2 || len > options.len() {
                    return None;
                }
                if kind == 2 && len == 4 {
                    return Some(u16::from_be_bytes([options[2], options[3]]));
                }
                options = &options[len..];
            }
        }
    }
    None
}
