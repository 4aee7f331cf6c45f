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
//! worker at once; with `"report"` the redirect stays until the policy engine removes it. The lift is worker state layered over the immutable policy snapshot: it holds
//! until the policy engine changes the session's redirect rules.
//!
//! Like the engine, nothing here reads a clock or touches a socket; the only frames it writes
//! go into the caller's [`Output`]. This file holds the [`Redirector`] and enforcement;
//! `final_unit` the Final-Unit redirects, `success` the watch's verdicts (tokens, nonces, lifts),
//! `counters` what all of it did.

mod cookie;
mod counters;
mod final_unit;
mod garden;
mod http;
mod responder;
mod success;
mod watch;

pub use cookie::{siphash24, CookieJar, EPOCH_SECS};
pub use counters::Counters;
pub use final_unit::{restriction_rules, FinalUnitRedirect};
pub use garden::Garden;
pub use http::{
    html_escape, sniff_request, sniff_response, write_302, RequestHead, ResponseSniff, Sniff,
};
pub use responder::{Answer, Responder, MAX_REQUEST, PENDING_SLOTS};
pub use watch::{Segment, Sighting, Watch};
// Raised here, defined below every stage; named here too for the callers that drain them.
pub use crate::packet::Event;
pub use crate::token::{parse_hex_key, KeyTooShort, Token, TokenError, TokenKey};

use crate::classify::Rule;
use crate::packet::{ip_key, Context, FlowKey, Output, Toward};
use crate::policy::{
    PolicySnapshot, PortalHost, QuicAction, RedirectAddressType, RedirectInformation,
    RedirectSettings, RuleId, SessionId,
};
use crate::time::Timestamp;
use crate::wire::{proto, Direction, PortUnreachable};
use final_unit::FinalUnitState;
use rustc_hash::FxHashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

const DNS_PORT: u16 = 53;
const QUIC_PORT: u16 = 443;

/// Who the 302 sends where.
pub struct Target<'a> {
    pub url: &'a str,
    pub subscriber: &'a str,
    pub ue: IpAddr,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Active {
    Rule(RuleId),
    FinalUnit(usize),
}

/// A redirect holding a flow of one session: found by [`Redirector::rating_group_hold`] (or
/// inside [`Redirector::enforce`]) and handed to [`Redirector::enforce_hold`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The session's index in the snapshot.
    session: u32,
    active: Active,
}

#[derive(Default)]
struct SessionState {
    /// Redirect rules lifted by a verified recharge success, by name.
    lifted_rules: Vec<String>,
    final_units: Vec<FinalUnitState>,
    grace_until: Timestamp,
    /// `success_action = "report"`: a recharge success was reported while the session was
    /// redirected, and the policy engine has not removed the redirect yet.
    success_reported: bool,
}

/// One worker's redirect state.
pub struct Redirector {
    settings: RedirectSettings,
    responder: Responder,
    /// The cookie secret was set by the caller, not derived from the settings.
    live_secret: bool,
    garden: Garden,
    watch: Watch,
    sessions: FxHashMap<SessionId, SessionState>,
    /// Final-Unit REDIRECTs with a rating group, across sessions: zero means the per-rating-
    /// group check can be skipped.
    rating_group_redirects: usize,
    nonces: success::Nonces,
    events: Vec<Event>,
    counters: Counters,
    url: String,
    subscriber: String,
}

impl Redirector {
    pub fn new(snap: &PolicySnapshot) -> Redirector {
        let settings = snap.settings.redirect.clone();
        let secret = cookie_secret(&settings);
        Redirector {
            responder: Responder::new(&secret, settings.location.clone()),
            live_secret: false,
            garden: Garden::new(
                snap.portal_addresses(),
                &settings.dns_resolvers,
                snap.portal_hosts(),
            ),
            settings,
            watch: Watch::default(),
            sessions: FxHashMap::default(),
            rating_group_redirects: 0,
            nonces: success::Nonces::default(),
            events: Vec::new(),
            counters: Counters::default(),
            url: String::new(),
            subscriber: String::new(),
        }
    }

    /// Takes a newer snapshot, rebuilding only what a changed setting touches: the live SYN-cookie
    /// secret, the watch, the nonces and the learned portal addresses stay (a reload must not
    /// reset handshakes in flight or forget a success being read); lifts that no longer apply
    /// are forgotten.
    pub fn set_snapshot(&mut self, snap: &PolicySnapshot) {
        let new = &snap.settings.redirect;
        if new.location != self.settings.location {
            self.responder.set_template(new.location.clone());
        }
        if !self.live_secret && cookie_secret(new) != cookie_secret(&self.settings) {
            self.responder.set_secret(&cookie_secret(new));
        }
        self.settings = new.clone();
        // A lift holds while the session still has the rule it lifted; once the policy engine
        // removes that rule, a later redirect rule of the same name applies afresh.
        // Only the sessions this worker holds redirect state for are looked at: a new snapshot
        // costs the worker nothing per session of the policy.
        self.sessions.retain(|id, state| {
            let Some((_, s)) = snap.session_by_id(*id) else {
                return false;
            };
            state.lifted_rules.retain(|name| {
                s.redirect_rules
                    .iter()
                    .any(|r| s.rule(*r).rule.name == *name)
            });
            // The policy engine answered the report: a later redirect is a new one, and the
            // reported token replayed under it is a replay.
            if s.redirect_rules.is_empty() && state.final_units.is_empty() {
                state.success_reported = false;
            }
            true
        });
        self.recount();
        // The garden of the new policy, with the portals of the Final-Unit redirects in force.
        let mut hosts = snap.portal_hosts().to_vec();
        let mut addresses = snap.portal_addresses().to_vec();
        let final_units = self.sessions.values().flat_map(|s| &s.final_units);
        for portal in final_units.filter_map(|f| PortalHost::of(&f.fu.redirect)) {
            match portal {
                PortalHost::Name(n) if !hosts.contains(&n) => hosts.push(n),
                PortalHost::Address(a) if !addresses.contains(&a) => addresses.push(a),
                _ => {}
            }
        }
        self.garden
            .reconfigure(&addresses, &self.settings.dns_resolvers, &hosts);
    }

    fn add_portal(&mut self, info: &RedirectInformation) {
        match PortalHost::of(info) {
            Some(PortalHost::Name(host)) => self.garden.add_host(&host),
            Some(PortalHost::Address(addr)) => self.garden.add_address(addr),
            None => {}
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Replaces the SYN-cookie secret with one the caller chose (the live data path: random
    /// bytes); from then on reloads keep it.
    pub fn set_cookie_secret(&mut self, secret: &[u8]) {
        self.responder.set_secret(secret);
        self.live_secret = true;
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

    /// The redirect holding the whole session `index` at wall-clock time `wall` (rules turn on
    /// and off at dates), if any.
    fn session_hold(&self, snap: &PolicySnapshot, index: u32, wall: Timestamp) -> Option<Hold> {
        let session = snap.session(index);
        let state = self.sessions.get(&session.id);
        for id in &session.redirect_rules {
            let rule = &session.rule(*id).rule;
            if rule.active_at(wall) && !state.is_some_and(|s| s.lifted_rules.contains(&rule.name)) {
                return Some(Hold {
                    session: index,
                    active: Active::Rule(*id),
                });
            }
        }
        let i = state?
            .final_units
            .iter()
            .position(|f| f.fu.rating_group.is_none())?;
        Some(Hold {
            session: index,
            active: Active::FinalUnit(i),
        })
    }

    /// The Final-Unit REDIRECT holding `rating_group` of session `index` alone, if any.
    pub fn rating_group_hold(
        &self,
        snap: &PolicySnapshot,
        index: u32,
        rating_group: u32,
    ) -> Option<Hold> {
        let state = self.sessions.get(&snap.session(index).id)?;
        let i = state
            .final_units
            .iter()
            .position(|u| u.fu.rating_group == Some(rating_group))?;
        Some(Hold {
            session: index,
            active: Active::FinalUnit(i),
        })
    }

    /// The redirect stage for a packet of a new flow of session `index`, before the normal
    /// rules.
    pub fn enforce(
        &mut self,
        snap: &PolicySnapshot,
        index: u32,
        cx: &Context<'_>,
        out: &mut Output,
    ) -> Stage {
        match self.session_hold(snap, index, cx.wall) {
            Some(hold) => self.enforce_hold(snap, hold, cx, out),
            None => Stage::Pass {
                watch: self.watch_wanted(snap.session(index).id, &cx.key, cx.now),
            },
        }
    }

    /// A packet of a flow that a redirect holds: through the walled garden, answered, or
    /// blocked.
    pub fn enforce_hold(
        &mut self,
        snap: &PolicySnapshot,
        hold: Hold,
        cx: &Context<'_>,
        out: &mut Output,
    ) -> Stage {
        let session = snap.session(hold.session);
        let (info, rating_group, allowed): (&RedirectInformation, Option<u32>, &[Rule]) =
            match hold.active {
                Active::Rule(id) => {
                    let rule = &session.rule(id).rule;
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
        let restricted = allowed.iter().any(|r| r.matches(&cx.key.subscriber_key()));
        if self.is_web(&cx.key) && cx.direction == Direction::Uplink {
            // Whom the 302 names, written while the redirect is at hand.
            self.url.clear();
            write_redirect_url(info, &mut self.url);
            self.subscriber.clear();
            // Writing to a String cannot fail.
            let _ = write!(self.subscriber, "{}", session.subscriber);
        }
        if let Some(watch) = self.garden_admits(&cx.key, restricted, cx.now) {
            return Stage::Garden {
                rating_group,
                watch,
            };
        }
        if cx.direction == Direction::Downlink {
            self.counters.blocked_downlink += 1;
            return Stage::Blocked;
        }
        self.answer(cx, out)
    }

    /// TCP to one of the ports the 302 responder answers.
    fn is_web(&self, key: &FlowKey) -> bool {
        key.protocol == proto::TCP && self.settings.http_ports.contains(&key.remote_port)
    }

    /// Whether the walled garden lets a flow through (counted by what let it: the portal, a
    /// resolver, or — `restricted` — a restriction filter), and if so whether the watch should
    /// see it: portal web flows and DNS answers.
    fn garden_admits(&mut self, key: &FlowKey, restricted: bool, now: Timestamp) -> Option<bool> {
        if self.garden.is_portal(key.remote, now) {
            self.counters.garden_portal += 1;
            return Some(self.is_web(key));
        }
        if is_dns(key) && self.garden.is_resolver(key.remote) {
            self.counters.garden_dns += 1;
            return Some(key.protocol == proto::UDP);
        }
        if restricted {
            self.counters.garden_restriction += 1;
            return Some(false);
        }
        None
    }

    /// An uplink packet outside the walled garden: a web request gets the 302 (to the address
    /// in `self.url`, naming `self.subscriber`), other TCP an RST, QUIC an ICMP unreachable,
    /// the rest nothing.
    fn answer(&mut self, cx: &Context<'_>, out: &mut Output) -> Stage {
        let (key, f) = (&cx.key, &cx.frame);
        match key.protocol {
            proto::TCP if self.is_web(key) => {
                let target = Target {
                    url: &self.url,
                    subscriber: &self.subscriber,
                    ue: f.packet.tuple.src,
                };
                Stage::Answered(self.responder.http(cx, &target, out, &mut self.counters))
            }
            proto::TCP => Stage::Answered(self.responder.reset(f, out, &mut self.counters)),
            proto::UDP if is_dns(key) => {
                self.counters.blocked_dns += 1;
                Stage::Blocked
            }
            proto::UDP if key.remote_port == QUIC_PORT => match self.settings.quic {
                QuicAction::Unreachable => {
                    let t = f.packet.tuple;
                    let sent = out.reply(Toward::Ue, f, |link, buf| {
                        PortUnreachable {
                            link,
                            src: t.dst,
                            dst: t.src,
                            offending: f.ip(),
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
}

/// DNS, over UDP or TCP.
fn is_dns(key: &FlowKey) -> bool {
    key.remote_port == DNS_PORT && matches!(key.protocol, proto::UDP | proto::TCP)
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
    if let Some(key) = &s.token_key {
        secret.extend_from_slice(key.as_bytes());
    }
    secret
}
