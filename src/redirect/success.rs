//! What the success watch's sightings lead to: a token verified (signature, expiry, owner, and
//! a nonce never used before), the event for the control plane, and — with the local success
//! action — the redirect lifted in this worker at once. With the report action the redirect
//! stays until the policy engine removes it; the same token seen again meanwhile is a duplicate
//! that raises nothing.

use super::{Redirector, Segment, DNS_PORT};
use crate::packet::{Context, Event, FlowKey, SuccessToken};
use crate::policy::{PolicySnapshot, SessionId, SuccessAction};
use crate::time::Timestamp;
use crate::token::{Holder, Token, TokenError, MAX_NONCE_LEN};
use crate::wire::{proto, Direction};
use rustc_hash::FxHashMap;
use std::fmt::Write as _;

/// Events waiting for the control plane, at most; later ones are counted and dropped.
const MAX_EVENTS: usize = 1024;
/// Nonces of accepted tokens remembered (until their token expires), at most.
const MAX_NONCES: usize = 4096;

type Nonce = ([u8; MAX_NONCE_LEN], u8);

/// Nonces of accepted tokens, each with its session and its token's expiry. Only tokens signed
/// with our key reach it, so its keys are the portal's, not an attacker's.
#[derive(Default)]
pub(super) struct Nonces {
    seen: FxHashMap<Nonce, (SessionId, Timestamp)>,
}

impl Nonces {
    /// Takes the nonce of a verified token presented for `session` at wall-clock time `wall`.
    /// `Ok(false)`: the session's own token seen again once it is no longer redirected (the
    /// success page reloaded) — harmless, but it lifts nothing.
    fn admit(
        &mut self,
        t: &Token<'_>,
        session: SessionId,
        redirected: bool,
        wall: Timestamp,
    ) -> Result<bool, TokenError> {
        let mut nonce: Nonce = ([0; MAX_NONCE_LEN], t.nonce.len() as u8);
        nonce.0[..t.nonce.len()].copy_from_slice(t.nonce.as_bytes());
        match self.seen.get(&nonce) {
            Some((owner, _)) if *owner == session && !redirected => return Ok(false),
            Some(_) => return Err(TokenError::Replayed),
            None => {}
        }
        if self.seen.len() >= MAX_NONCES {
            self.seen.retain(|_, (_, until)| wall < *until);
        }
        if self.seen.len() >= MAX_NONCES {
            // Only tokens signed with our key get here, so the table fills only if the portal
            // mints that many; refusing is the safe side.
            return Err(TokenError::Replayed);
        }
        self.seen
            .insert(nonce, (session, Timestamp::from_secs(t.expires)));
        Ok(true)
    }
}

impl Redirector {
    /// Whether a portal web flow of a session that the redirect stage does not hold as a whole
    /// should be shown to the watch: while one of its rating groups is redirected (the portal
    /// may be reached under another), and in the grace window after a lift.
    pub(super) fn watch_wanted(&self, session: SessionId, key: &FlowKey, now: Timestamp) -> bool {
        self.is_web(key)
            && self
                .sessions
                .get(&session)
                .is_some_and(|s| now < s.grace_until || !s.final_units.is_empty())
            && self.garden.is_portal(key.remote, now)
    }

    /// Shows a packet of a watched flow (portal web flow, or DNS from a resolver) to the watch
    /// and the DNS snooper. Returns true when it lifted the session's redirect: the caller must
    /// re-decide the session's flows.
    pub fn observe(&mut self, snap: &PolicySnapshot, index: u32, cx: &Context<'_>) -> bool {
        let (key, direction, now) = (&cx.key, cx.direction, cx.now);
        let payload = cx.frame.payload();
        if key.protocol == proto::UDP {
            if direction == Direction::Downlink && key.remote_port == DNS_PORT {
                self.counters.dns_learned += self.garden.snoop_dns(payload, now) as u64;
            }
            return false;
        }
        if key.protocol != proto::TCP {
            return false;
        }
        let session = snap.session(index);
        let ue = cx.frame.ue(direction);
        let redirected = self.session_hold(snap, index, cx.wall).is_some()
            || (self.rating_group_redirects > 0
                && self
                    .sessions
                    .get(&session.id)
                    .is_some_and(|s| !s.final_units.is_empty()));
        // Reported and still redirected: the success page (or the portal's redirect to it) seen
        // again while the policy engine answers is no replay.
        let awaiting = self
            .sessions
            .get(&session.id)
            .is_some_and(|s| s.success_reported);
        let Redirector {
            settings,
            watch,
            nonces,
            counters,
            subscriber,
            ..
        } = self;
        let (Some(success), Some(token_key)) = (&settings.success_url, &settings.token_key) else {
            return false;
        };
        // Token expiries are wall-clock seconds, as the portal wrote them.
        let wall_secs = cx.wall.as_nanos() / 1_000_000_000;
        let max_age = settings.token_max_age.as_secs();
        subscriber.clear();
        // Writing to a String cannot fail.
        let _ = write!(subscriber, "{}", session.subscriber);
        let holder = Holder { subscriber, ue };
        let mut verified = None;
        watch.segment(Segment::of(cx), success, |sighting| {
            let result = Token::from_query(sighting.query).and_then(|t| {
                t.verify(token_key, holder, wall_secs, max_age)?;
                let fresh = nonces.admit(&t, session.id, redirected && !awaiting, cx.wall)?;
                Ok(fresh.then(|| SuccessToken {
                    subscriber: t.subscriber.to_string(),
                    ue: t.ue,
                    expires: t.expires,
                    nonce: t.nonce.to_string(),
                    signature: t.sig.to_string(),
                    original_url: original_url(sighting.query),
                }))
            });
            match result {
                Ok(Some(token)) => {
                    counters.successes += 1;
                    verified = Some(token);
                }
                Ok(None) => counters.tokens_duplicate += 1,
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
        });
        let Some(token) = verified.filter(|_| redirected) else {
            return false;
        };
        self.raise(snap, index, cx, token);
        match self.settings.success_action {
            SuccessAction::Local => {
                self.lift(snap, index, cx);
                true
            }
            SuccessAction::Report => {
                self.sessions
                    .entry(session.id)
                    .or_default()
                    .success_reported = true;
                self.counters.successes_reported += 1;
                tracing::info!(
                    subscriber = %session.subscriber,
                    ue = %ue,
                    "recharge success: reported, the redirect stays until the policy engine removes it"
                );
                false
            }
        }
    }

    /// Raises the event of a verified recharge success.
    fn raise(&mut self, snap: &PolicySnapshot, index: u32, cx: &Context<'_>, token: SuccessToken) {
        let session = snap.session(index);
        let ue = cx.frame.ue(cx.direction);
        if self.events.len() < MAX_EVENTS {
            self.events.push(Event::RechargeSuccess {
                session: session.id,
                subscriber: session.subscriber.clone(),
                ue,
                at: cx.wall,
                token,
            });
        } else {
            self.counters.events_dropped += 1;
        }
    }

    /// The local success action: the data path lifts the session's redirect itself, now.
    fn lift(&mut self, snap: &PolicySnapshot, index: u32, cx: &Context<'_>) {
        let session = snap.session(index);
        let ue = cx.frame.ue(cx.direction);
        tracing::info!(subscriber = %session.subscriber, ue = %ue, "recharge success: redirect lifted");
        let state = self.sessions.entry(session.id).or_default();
        for id in &session.redirect_rules {
            let name = &session.rule(*id).rule.name;
            if !state.lifted_rules.contains(name) {
                state.lifted_rules.push(name.clone());
            }
        }
        state.final_units.clear();
        state.grace_until = cx.now.saturating_add(self.settings.grace);
        self.counters.lifts += 1;
        self.recount();
    }
}

/// The original URL the success URL carries in `orig` (the portal passes on the page the
/// subscriber asked for), decoded; `None` without one.
fn original_url(query: &str) -> Option<String> {
    let value = query
        .trim_start_matches('?')
        .split('&')
        .find_map(|pair| pair.strip_prefix("orig="))?;
    let plus_as_space = value.replace('+', " ");
    let url = percent_encoding::percent_decode_str(&plus_as_space).decode_utf8_lossy();
    (!url.is_empty()).then(|| url.into_owned())
}

#[cfg(test)]
mod tests {
    use super::original_url;

    #[test]
    fn the_original_url_is_read_from_orig_and_decoded() {
        assert_eq!(
            original_url("sub=a&orig=http%3A%2F%2Fsite.example%2Fnews%3Fa%3D1%26b%3D2&sig=00"),
            Some("http://site.example/news?a=1&b=2".into())
        );
        assert_eq!(original_url("?orig=a+b"), Some("a b".into()));
        assert_eq!(original_url("sub=a&sig=00"), None);
        assert_eq!(original_url("orig=&sub=a"), None);
        assert_eq!(original_url("xorig=1"), None);
    }
}
