//! Redirect enforcement and the recharge-success watch: the part of the data path that deals
//! with subscribers who are out of credit.
//!
//! A session is under redirect while one of its PCC rules carrying Redirect-Information is
//! active, or while online charging has applied Final-Unit-Action REDIRECT to it (to the whole
//! session, or to one rating group). The engine asks this module first, before the normal rules,
//! for every new flow of such a session: the walled garden (portal, DNS to the configured
//! resolvers, restriction filters) is let through; web requests are answered with a 302 to the
//! portal by a stateless responder; other TCP gets an RST, QUIC an ICMP port-unreachable (or
//! nothing), anything else is dropped — each counted by reason.
//!
//! Portal flows are watched for the recharge-success URL; a verified token raises a
//! [`Event::RechargeSuccess`] and, with `success_action = "local"`, lifts the redirect in this
//! worker at once. The lift is worker state layered over the immutable policy snapshot: it holds
//! until the policy engine changes the session's redirect rules.
//!
//! Like the engine, nothing here reads a clock or touches a socket; the only frames it writes
//! go into the caller's [`Output`].

mod cookie;
mod garden;
mod http;
mod responder;
mod token;
mod watch;

pub use cookie::{siphash24, CookieJar, EPOCH_SECS};
pub use garden::{address_records, Garden};
pub use http::{
    html_escape, sniff_request, sniff_response, write_302, RequestHead, ResponseSniff, Sniff,
    Template,
};
pub use responder::{Answer, Responder, MAX_REQUEST, PENDING_SLOTS};
pub use token::{parse_hex_key, KeyTooShort, Token, TokenError, TokenKey};
pub use watch::{Sighting, Watch};

use crate::classify::{ip_key, Rule};
use crate::engine::{FlowKey, Output, Toward};
use crate::policy::{
    expand_filter, split_http_url, FlowDescription, PolicySnapshot, QuicAction,
    RedirectAddressType, RedirectInformation, RedirectSettings, SessionConfig, SessionId,
    SubscriberId,
};
use crate::time::Timestamp;
use crate::wire::{
    proto, BuildError, Direction, EthernetHeader, LinkHeader, LinkType, Packet, PortUnreachable,
};
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::fmt::Write as _;
use std::net::IpAddr;

/// Events waiting for the control plane, at most; later ones are counted and dropped.
const MAX_EVENTS: usize = 1024;
/// Nonces of accepted tokens remembered (until their token expires), at most.
const MAX_NONCES: usize = 4096;
const DNS_PORT: u16 = 53;
const QUIC_PORT: u16 = 443;

/// What the data path reports to the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A verified recharge-success token was seen for this session.
    RechargeSuccess {
        session: SessionId,
        subscriber: SubscriberId,
        ue: IpAddr,
        at: Timestamp,
    },
}

/// Final-Unit-Indication with Final-Unit-Action REDIRECT, as online charging applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalUnitRedirect {
    /// The rating group it applies to; `None` for the whole session.
    pub rating_group: Option<u32>,
    pub redirect: RedirectInformation,
    /// Restriction-Filter-Rules: traffic that stays allowed.
    pub restriction_filters: Vec<FlowDescription>,
    /// Filter-Ids: names of predefined rules whose SDF filters stay allowed.
    pub filter_ids: Vec<String>,
}

/// What the redirect stage did, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub syn_answered: u64,
    pub redirects_sent: u64,
    /// Retransmitted requests answered again with the same 302.
    pub retransmissions: u64,
    /// Requests split over segments, collected before the answer.
    pub requests_collecting: u64,
    /// Split requests answered early because every collecting slot was taken.
    pub pending_full: u64,
    pub fins_acked: u64,
    pub resets_sent: u64,
    /// ACKs that match no SYN-ACK of ours (answered with an RST).
    pub bad_cookies: u64,
    /// Data on an HTTP port that is not HTTP (answered with an RST).
    pub not_http: u64,
    pub quic_unreachable: u64,
    /// New flows let through the walled garden, by what let them.
    pub garden_portal: u64,
    pub garden_dns: u64,
    pub garden_restriction: u64,
    /// Packets blocked, by reason.
    pub blocked_downlink: u64,
    pub blocked_dns: u64,
    pub blocked_quic: u64,
    pub blocked_other: u64,
    pub dns_learned: u64,
    pub successes: u64,
    pub lifts: u64,
    pub tokens_malformed: u64,
    pub tokens_forged: u64,
    pub tokens_expired: u64,
    pub tokens_other_subscriber: u64,
    pub tokens_replayed: u64,
    /// An already-used token of a session no longer redirected (e.g. the success page
    /// requested after the portal's redirect to it was seen): harmless, not an attack.
    pub tokens_duplicate: u64,
    pub events_dropped: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        macro_rules! sum {
            ($($f:ident),*) => { $( self.$f += o.$f; )* };
        }
        sum!(
            syn_answered,
            redirects_sent,
            retransmissions,
            requests_collecting,
            pending_full,
            fins_acked,
            resets_sent,
            bad_cookies,
            not_http,
            quic_unreachable,
            garden_portal,
            garden_dns,
            garden_restriction,
            blocked_downlink,
            blocked_dns,
            blocked_quic,
            blocked_other,
            dns_learned,
            successes,
            lifts,
            tokens_malformed,
            tokens_forged,
            tokens_expired,
            tokens_other_subscriber,
            tokens_replayed,
            tokens_duplicate,
            events_dropped
        );
    }
}

/// The frame being handled, with its parse.
pub struct Frame<'a> {
    pub link: LinkType,
    pub bytes: &'a [u8],
    pub packet: &'a Packet,
}

/// Who the 302 sends where.
pub struct Target<'a> {
    pub url: &'a str,
    pub subscriber: &'a str,
    pub ue: IpAddr,
}

/// Appends one frame answering `f` (addresses swapped by the builder; link header mirrored,
/// VLAN tags kept) and records it in `out`.
pub(crate) fn emit(
    out: &mut Output,
    toward: Toward,
    f: &Frame<'_>,
    build: impl FnOnce(LinkHeader, &mut Vec<u8>) -> Result<usize, BuildError>,
) -> bool {
    let start = out.bytes.len();
    let link = match f.link {
        LinkType::Ethernet => {
            let (Some(dst), Some(src)) = (f.bytes.get(6..12), f.bytes.get(0..6)) else {
                return false;
            };
            let mut eth = EthernetHeader {
                dst: [0; 6],
                src: [0; 6],
                vlans: f.packet.vlans,
                vlan_count: f.packet.vlan_count,
            };
            eth.dst.copy_from_slice(dst);
            eth.src.copy_from_slice(src);
            LinkHeader::Ethernet(eth)
        }
        LinkType::RawIp => LinkHeader::RawIp,
        LinkType::Loopback => {
            // The capture's own 4-byte family header, in its byte order.
            out.bytes
                .extend_from_slice(f.bytes.get(..4).unwrap_or(&[0; 4]));
            LinkHeader::RawIp
        }
    };
    match build(link, &mut out.bytes) {
        Ok(_) => {
            out.frames.push((toward, start, out.bytes.len() - start));
            true
        }
        Err(_) => {
            out.bytes.truncate(start);
            false
        }
    }
}

/// What the redirect stage decided for a packet of a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Not under redirect: the normal rules decide. `watch`: keep showing the flow to the watch
    /// (a portal flow in the grace window after a lift).
    Pass { watch: bool },
    /// Let through the walled garden, metered under the redirect's rating group.
    Garden {
        rating_group: Option<u32>,
        watch: bool,
    },
    /// Answered here; the packet goes no further.
    Answered(Answer),
    /// Dropped by the walled garden.
    Blocked,
}

/// Which redirect holds a flow.
#[derive(Clone, Copy)]
enum Active {
    Rule(crate::policy::RuleId),
    FinalUnit(usize),
}

struct FinalUnitState {
    fu: FinalUnitRedirect,
    /// Restriction filters and Filter-Id rules compiled for the session's addresses.
    allowed: Vec<Rule>,
}

#[derive(Default)]
struct SessionState {
    /// Redirect rules lifted by a verified recharge success, by name.
    lifted_rules: Vec<String>,
    final_units: Vec<FinalUnitState>,
    grace_until: Timestamp,
}

type Nonce = ([u8; token::MAX_NONCE_LEN], u8);

/// One worker's redirect state.
pub struct Redirector {
    settings: RedirectSettings,
    key: Option<TokenKey>,
    responder: Responder,
    garden: Garden,
    watch: Watch,
    sessions: FxHashMap<SessionId, SessionState>,
    /// Final-Unit REDIRECTs with a rating group, across sessions: zero means the per-rating-
    /// group check can be skipped.
    rating_group_redirects: usize,
    nonces: FxHashMap<Nonce, (SessionId, Timestamp)>,
    events: Vec<Event>,
    counters: Counters,
    url: String,
    subscriber: String,
}

impl Redirector {
    pub fn new(snap: &PolicySnapshot) -> Redirector {
        let settings = snap.settings.redirect.clone();
        // The configuration checked the template; settings built in code fall back to `{url}`.
        let template = Template::parse(&settings.location).unwrap_or_else(|_| Template::url_only());
        let key = TokenKey::new(&settings.token_key).ok();
        let secret = cookie_secret(&settings);
        let mut r = Redirector {
            responder: Responder::new(&secret, template.clone()),
            garden: Garden::new(
                &settings.portal_addresses,
                &settings.dns_resolvers,
                &settings.portal_hosts,
            ),
            key,
            settings,
            watch: Watch::default(),
            sessions: FxHashMap::default(),
            rating_group_redirects: 0,
            nonces: FxHashMap::default(),
            events: Vec::new(),
            counters: Counters::default(),
            url: String::new(),
            subscriber: String::new(),
        };
        r.learn_rule_hosts(snap);
        r
    }

    /// Takes a newer snapshot: new settings (keeping learned portal addresses when the garden's
    /// settings did not change), new portal hosts, and lifts that no longer apply forgotten.
    pub fn set_snapshot(&mut self, snap: &PolicySnapshot) {
        if snap.settings.redirect != self.settings {
            let counters = std::mem::take(&mut self.counters);
            let sessions = std::mem::take(&mut self.sessions);
            let nonces = std::mem::take(&mut self.nonces);
            let events = std::mem::take(&mut self.events);
            let rg = self.rating_group_redirects;
            *self = Redirector::new(snap);
            self.counters = counters;
            self.sessions = sessions;
            self.nonces = nonces;
            self.events = events;
            self.rating_group_redirects = rg;
        }
        self.learn_rule_hosts(snap);
        // A lift holds while the session still has the rule it lifted; once the policy engine
        // removes that rule, a later redirect rule of the same name applies afresh.
        for s in &snap.sessions {
            if let Some(state) = self.sessions.get_mut(&s.id) {
                state.lifted_rules.retain(|name| {
                    s.redirect_rules
                        .iter()
                        .any(|r| snap.rule(*r).rule.name == *name)
                });
            }
        }
        let live: rustc_hash::FxHashSet<SessionId> = snap.sessions.iter().map(|s| s.id).collect();
        self.sessions.retain(|id, _| live.contains(id));
        self.recount();
    }

    fn recount(&mut self) {
        self.rating_group_redirects = self
            .sessions
            .values()
            .flat_map(|s| &s.final_units)
            .filter(|f| f.fu.rating_group.is_some())
            .count();
    }

    fn learn_rule_hosts(&mut self, snap: &PolicySnapshot) {
        for r in &snap.rules {
            if let Some(info) = &r.rule.redirect {
                self.add_portal(info);
            }
        }
    }

    fn add_portal(&mut self, info: &RedirectInformation) {
        match info.address_type() {
            RedirectAddressType::Url => {
                if let Some((host, _)) = split_http_url(info.server_address()) {
                    self.garden.add_host(&host);
                }
            }
            RedirectAddressType::Ipv4 | RedirectAddressType::Ipv6 => {
                self.garden.add_host(info.server_address());
            }
            RedirectAddressType::SipUri => {}
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn set_cookie_secret(&mut self, secret: &[u8]) {
        self.responder.set_secret(secret);
    }

    /// Host names whose addresses belong in the walled garden: for whoever resolves them at the
    /// edge (and refreshes them per TTL) to hand in through [`Redirector::learn_portal_address`].
    pub fn portal_hosts(&self) -> &[String] {
        self.garden.hosts()
    }

    pub fn learn_portal_address(&mut self, addr: IpAddr, until: Timestamp, now: Timestamp) {
        self.garden.learn(ip_key(addr), until, now);
    }

    /// Connections whose split request is being collected.
    pub fn pending_requests(&self) -> usize {
        self.responder.pending()
    }

    pub fn watched_flows(&self) -> usize {
        self.watch.len()
    }

    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Applies Final-Unit-Action REDIRECT. Applying the same one again changes nothing. Returns
    /// whether anything changed (the caller then re-decides the session's flows).
    pub fn apply_final_unit(
        &mut self,
        snap: &PolicySnapshot,
        session: SessionId,
        fu: FinalUnitRedirect,
    ) -> bool {
        let Some(s) = snap.sessions.iter().find(|s| s.id == session) else {
            return false;
        };
        let state = self.sessions.entry(session).or_default();
        if let Some(existing) = state
            .final_units
            .iter_mut()
            .find(|f| f.fu.rating_group == fu.rating_group)
        {
            if existing.fu == fu {
                return false;
            }
        }
        let addresses = SessionConfig {
            subscriber: s.subscriber.clone(),
            ipv4: s.ipv4,
            ipv6: s.ipv6,
            rules: Vec::new(),
            predefined: Vec::new(),
            default_rule: s.default_rule,
        };
        let mut allowed: Vec<Rule> = fu
            .restriction_filters
            .iter()
            .flat_map(|f| expand_filter(f, &addresses))
            .collect();
        for name in &fu.filter_ids {
            for r in snap
                .rules
                .iter()
                .filter(|r| r.session.is_none() && r.rule.name == *name)
            {
                for filter in &r.rule.filters {
                    allowed.extend(expand_filter(&filter.flow, &addresses));
                }
            }
        }
        let info = fu.redirect.clone();
        state
            .final_units
            .retain(|f| f.fu.rating_group != fu.rating_group);
        state.final_units.push(FinalUnitState { fu, allowed });
        self.add_portal(&info);
        self.recount();
        true
    }

    /// Removes a Final-Unit REDIRECT (new credit was granted). Returns whether one was removed.
    pub fn remove_final_unit(&mut self, session: SessionId, rating_group: Option<u32>) -> bool {
        let Some(state) = self.sessions.get_mut(&session) else {
            return false;
        };
        let before = state.final_units.len();
        state
            .final_units
            .retain(|f| f.fu.rating_group != rating_group);
        let changed = state.final_units.len() != before;
        self.recount();
        changed
    }

    /// Whether any Final-Unit REDIRECT applies to a rating group only.
    #[inline]
    pub fn has_rating_group_redirects(&self) -> bool {
        self.rating_group_redirects > 0
    }

    /// The redirect holding the whole session, if any.
    fn session_redirect(
        &self,
        snap: &PolicySnapshot,
        index: u32,
        now: Timestamp,
    ) -> Option<Active> {
        let session = snap.session(index);
        let state = self.sessions.get(&session.id);
        for id in &session.redirect_rules {
            let rule = &snap.rule(*id).rule;
            if rule.active_at(now) && !state.is_some_and(|s| s.lifted_rules.contains(&rule.name)) {
                return Some(Active::Rule(*id));
            }
        }
        state?
            .final_units
            .iter()
            .position(|f| f.fu.rating_group.is_none())
            .map(Active::FinalUnit)
    }

    /// The redirect stage for a packet of a new flow of session `index`, before the normal
    /// rules.
    #[allow(clippy::too_many_arguments)]
    pub fn enforce(
        &mut self,
        snap: &PolicySnapshot,
        index: u32,
        direction: Direction,
        key: &FlowKey,
        f: &Frame<'_>,
        now: Timestamp,
        out: &mut Output,
    ) -> Stage {
        match self.session_redirect(snap, index, now) {
            Some(active) => self.enforce_active(snap, index, active, direction, key, f, now, out),
            None => Stage::Pass {
                watch: self.watch_wanted(snap.session(index).id, key, now),
            },
        }
    }

    /// The redirect stage for a flow whose normal rules metered it under `rating_group`, when
    /// Final-Unit REDIRECT applies to that rating group only.
    #[allow(clippy::too_many_arguments)]
    pub fn enforce_rating_group(
        &mut self,
        snap: &PolicySnapshot,
        index: u32,
        rating_group: u32,
        direction: Direction,
        key: &FlowKey,
        f: &Frame<'_>,
        now: Timestamp,
        out: &mut Output,
    ) -> Option<Stage> {
        let state = self.sessions.get(&snap.session(index).id)?;
        let i = state
            .final_units
            .iter()
            .position(|u| u.fu.rating_group == Some(rating_group))?;
        Some(self.enforce_active(
            snap,
            index,
            Active::FinalUnit(i),
            direction,
            key,
            f,
            now,
            out,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn enforce_active(
        &mut self,
        snap: &PolicySnapshot,
        index: u32,
        active: Active,
        direction: Direction,
        key: &FlowKey,
        f: &Frame<'_>,
        now: Timestamp,
        out: &mut Output,
    ) -> Stage {
        let session = snap.session(index);
        let (info, rating_group, allowed): (&RedirectInformation, Option<u32>, &[Rule]) =
            match active {
                Active::Rule(id) => {
                    let rule = &snap.rule(id).rule;
                    match &rule.redirect {
                        Some(info) => (info, rule.rating_group, &[]),
                        None => return Stage::Pass { watch: false },
                    }
                }
                Active::FinalUnit(i) => {
                    let Some(u) = self
                        .sessions
                        .get(&session.id)
                        .and_then(|s| s.final_units.get(i))
                    else {
                        return Stage::Pass { watch: false };
                    };
                    (&u.fu.redirect, u.fu.rating_group, &u.allowed)
                }
            };
        let http_port = self.settings.http_ports.contains(&key.remote_port);
        if self.garden.is_portal(key.remote, now) {
            self.counters.garden_portal += 1;
            return Stage::Garden {
                rating_group,
                watch: key.protocol == proto::TCP && http_port,
            };
        }
        let dns = key.remote_port == DNS_PORT && matches!(key.protocol, proto::UDP | proto::TCP);
        if dns && self.garden.is_resolver(key.remote) {
            self.counters.garden_dns += 1;
            return Stage::Garden {
                rating_group,
                watch: key.protocol == proto::UDP,
            };
        }
        let ckey = crate::policy::subscriber_key(
            key.ue,
            key.ue_port,
            key.remote,
            key.remote_port,
            key.protocol,
        );
        if allowed.iter().any(|r| r.matches(&ckey)) {
            self.counters.garden_restriction += 1;
            return Stage::Garden {
                rating_group,
                watch: false,
            };
        }
        if direction == Direction::Downlink {
            self.counters.blocked_downlink += 1;
            return Stage::Blocked;
        }
        match key.protocol {
            proto::TCP if http_port => {
                self.url.clear();
                write_redirect_url(info, &mut self.url);
                self.subscriber.clear();
                // Writing to a String cannot fail.
                let _ = write!(self.subscriber, "{}", session.subscriber);
                let target = Target {
                    url: &self.url,
                    subscriber: &self.subscriber,
                    ue: f.packet.tuple.src,
                };
                Stage::Answered(
                    self.responder
                        .http(f, &target, now, out, &mut self.counters),
                )
            }
            proto::TCP => Stage::Answered(self.responder.reset(f, out, &mut self.counters)),
            proto::UDP if dns => {
                self.counters.blocked_dns += 1;
                Stage::Blocked
            }
            proto::UDP if key.remote_port == QUIC_PORT => match self.settings.quic {
                QuicAction::Unreachable => {
                    let p = f.packet;
                    let l3 = usize::from(p.l3_offset);
                    let ip = f.bytes.get(l3..l3 + usize::from(p.ip_len)).unwrap_or(&[]);
                    let sent = emit(out, Toward::Ue, f, |link, buf| {
                        PortUnreachable {
                            link,
                            src: p.tuple.dst,
                            dst: p.tuple.src,
                            offending: ip,
                        }
                        .write(buf)
                    });
                    if sent {
                        self.counters.quic_unreachable += 1;
                        Stage::Answered(Answer::Sent)
                    } else {
                        self.counters.blocked_quic += 1;
                        Stage::Blocked
                    }
                }
                QuicAction::Drop => {
                    self.counters.blocked_quic += 1;
                    Stage::Blocked
                }
            },
            _ => {
                self.counters.blocked_other += 1;
                Stage::Blocked
            }
        }
    }

    /// Whether a flow of a session that is not (or no longer) redirected should still be shown
    /// to the watch: a portal web flow during the grace window after a lift.
    fn watch_wanted(&self, session: SessionId, key: &FlowKey, now: Timestamp) -> bool {
        key.protocol == proto::TCP
            && self.settings.http_ports.contains(&key.remote_port)
            && self
                .sessions
                .get(&session)
                .is_some_and(|s| now < s.grace_until)
            && self.garden.is_portal(key.remote, now)
    }

    /// Shows a packet of a watched flow (portal web flow, or DNS from a resolver) to the watch
    /// and the DNS snooper. Returns true when it lifted the session's redirect: the caller must
    /// re-decide the session's flows.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        snap: &PolicySnapshot,
        index: u32,
        direction: Direction,
        key: &FlowKey,
        f: &Frame<'_>,
        now: Timestamp,
    ) -> bool {
        let p = f.packet;
        let start = usize::from(p.payload_offset);
        let payload = f
            .bytes
            .get(start..start + usize::from(p.payload_len))
            .unwrap_or(&[]);
        if key.protocol == proto::UDP {
            if direction == Direction::Downlink && key.remote_port == DNS_PORT {
                self.counters.dns_learned += self.garden.snoop_dns(payload, now) as u64;
            }
            return false;
        }
        if key.protocol != proto::TCP {
            return false;
        }
        let (Some(success), Some(token_key)) = (&self.settings.success_url, &self.key) else {
            return false;
        };
        let session = snap.session(index);
        let ue = match direction {
            Direction::Uplink => p.tuple.src,
            Direction::Downlink => p.tuple.dst,
        };
        let redirected = self.session_redirect(snap, index, now).is_some()
            || (self.rating_group_redirects > 0
                && self
                    .sessions
                    .get(&session.id)
                    .is_some_and(|s| !s.final_units.is_empty()));
        let now_secs = now.as_nanos() / 1_000_000_000;
        let max_age = self.settings.token_max_age.as_secs();
        let Redirector {
            watch,
            nonces,
            counters,
            subscriber,
            ..
        } = self;
        subscriber.clear();
        // Writing to a String cannot fail.
        let _ = write!(subscriber, "{}", session.subscriber);
        let mut verified = false;
        watch.segment(
            key,
            direction,
            p.tcp_flags,
            p.tcp_seq,
            payload,
            success,
            now,
            |sighting| {
                let result = Token::from_query(sighting.query).and_then(|t| {
                    t.verify(token_key, subscriber, ue, now_secs, max_age)?;
                    let mut nonce: Nonce = ([0; token::MAX_NONCE_LEN], t.nonce.len() as u8);
                    nonce.0[..t.nonce.len()].copy_from_slice(t.nonce.as_bytes());
                    match nonces.get(&nonce) {
                        Some((owner, _)) if *owner == session.id && !redirected => {
                            counters.tokens_duplicate += 1;
                            return Ok(false);
                        }
                        Some(_) => return Err(TokenError::Replayed),
                        None => {}
                    }
                    if nonces.len() >= MAX_NONCES {
                        nonces.retain(|_, (_, until)| now < *until);
                    }
                    if nonces.len() >= MAX_NONCES {
                        // Only tokens signed with our key get here, so the table fills only
                        // if the portal mints that many; refusing is the safe side.
                        return Err(TokenError::Replayed);
                    }
                    let until = Timestamp::from_secs(t.expires);
                    nonces.insert(nonce, (session.id, until));
                    Ok(true)
                });
                match result {
                    Ok(true) => {
                        counters.successes += 1;
                        verified = true;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        match e {
                            TokenError::Malformed => counters.tokens_malformed += 1,
                            TokenError::Forged => counters.tokens_forged += 1,
                            TokenError::Expired => counters.tokens_expired += 1,
                            TokenError::OtherSubscriber => counters.tokens_other_subscriber += 1,
                            TokenError::Replayed => counters.tokens_replayed += 1,
                        }
                        tracing::warn!(
                            subscriber = %session.subscriber,
                            ue = %ue,
                            reason = e.as_str(),
                            ?direction,
                            "recharge-success token rejected"
                        );
                    }
                }
            },
        );
        if !verified || !redirected {
            return false;
        }
        self.lift(snap, index, ue, now);
        true
    }

    /// A verified recharge success: raise the event and, with the local action, lift the
    /// session's redirect now.
    fn lift(&mut self, snap: &PolicySnapshot, index: u32, ue: IpAddr, now: Timestamp) {
        let session = snap.session(index);
        tracing::info!(subscriber = %session.subscriber, ue = %ue, "recharge success: redirect lifted");
        if self.events.len() < MAX_EVENTS {
            self.events.push(Event::RechargeSuccess {
                session: session.id,
                subscriber: session.subscriber.clone(),
                ue,
                at: now,
            });
        } else {
            self.counters.events_dropped += 1;
        }
        // The only success action today is `local`: the data path lifts the redirect itself.
        let state = self.sessions.entry(session.id).or_default();
        for id in &session.redirect_rules {
            let name = &snap.rule(*id).rule.name;
            if !state.lifted_rules.contains(name) {
                state.lifted_rules.push(name.clone());
            }
        }
        state.final_units.clear();
        state.grace_until = now.saturating_add(self.settings.grace);
        self.counters.lifts += 1;
        self.recount();
    }
}

/// The redirect address as a URL: IPv4 and IPv6 addresses become `http://address/`.
fn write_redirect_url(info: &RedirectInformation, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = match info.address_type() {
        RedirectAddressType::Ipv4 => write!(out, "http://{}/", info.server_address()),
        RedirectAddressType::Ipv6 => write!(out, "http://[{}]/", info.server_address()),
        RedirectAddressType::Url | RedirectAddressType::SipUri => {
            out.write_str(info.server_address())
        }
    };
}

/// The SYN-cookie secret: configured, or derived from the token key, or a fixed value when
/// neither is set (a replay or a test; the live data path sets a random one).
fn cookie_secret(s: &RedirectSettings) -> Vec<u8> {
    if !s.cookie_secret.is_empty() {
        return s.cookie_secret.clone();
    }
    let mut secret = b"weir-cookie-from-token-key".to_vec();
    secret.extend_from_slice(&s.token_key);
    secret
}
