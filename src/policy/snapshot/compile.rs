//! Compiling one session: its rules (its own and the shared predefined ones) in precedence
//! order, one classifier per direction, and the instants its rules turn on or off. A session
//! compiles alone, so a change to it costs what it holds, whatever the number of sessions.

use super::{CompiledRule, RuleId, Session, SessionId};
use crate::classify::{Classifier, Key, Linear, PackedTuples, Ports, Prefix, Rule};
use crate::policy::flow::{AddressMatch, FilterDirection, FlowDescription, PortRange};
use crate::policy::model::{FlowDirection, PccRule, SessionConfig};
use crate::time::Timestamp;
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Below this many classifier entries a linear scan beats any structure.
const LINEAR_LIMIT: usize = 24;

/// The per-direction lookup of one session.
pub(super) enum SessionClassifier {
    Linear(Linear),
    Packed(PackedTuples),
}

impl SessionClassifier {
    fn build(rules: &[Rule]) -> Self {
        if rules.len() <= LINEAR_LIMIT {
            SessionClassifier::Linear(Linear::build(rules))
        } else {
            SessionClassifier::Packed(PackedTuples::build(rules))
        }
    }

    fn classify_from(&self, key: &Key, from: u32) -> Option<u32> {
        match self {
            SessionClassifier::Linear(c) => c.classify_from(key, from),
            SessionClassifier::Packed(c) => c.classify_from(key, from),
        }
    }
}

pub(super) struct DirectionalRules {
    pub(super) classifier: SessionClassifier,
    /// Classifier entry index -> rule.
    entries: Vec<RuleId>,
}

impl DirectionalRules {
    pub(super) fn lookup(
        &self,
        rules: &[CompiledRule],
        key: &Key,
        now: Timestamp,
        timed: bool,
    ) -> Option<RuleId> {
        let mut from = 0;
        loop {
            let entry = self.classifier.classify_from(key, from)?;
            let id = self.entries[entry as usize];
            if !timed || rules[id.0 as usize].rule.active_at(now) {
                return Some(id);
            }
            from = entry + 1;
        }
    }
}

/// A session's lookups, one per direction. Sessions with the same predefined rules and none
/// of their own share one (see [`compile`]).
pub(super) struct Classifiers {
    pub(super) uplink: DirectionalRules,
    pub(super) downlink: DirectionalRules,
}

/// Classifiers shared by sessions made of predefined rules alone, keyed by those rules (their
/// addresses, in the session's order: the predefined rules live as long as the map).
pub(super) type SharedClassifiers = FxHashMap<Box<[usize]>, Arc<Classifiers>>;

/// Compiles one session. `predefined` holds the shared rules by name; a name it lacks (the
/// configuration checks names) is skipped.
///
/// The classifiers match the UE end of `assigned` as any address: a packet only reaches a
/// session's classifier when its UE address is the session's (that is how the session was
/// found), so this answers the same, and it makes the classifiers of a session with only
/// predefined rules independent of its addresses — shared through `shared`, not copied.
pub(super) fn compile(
    id: SessionId,
    slot: u32,
    stamp: u64,
    s: &SessionConfig,
    predefined: &FxHashMap<String, Arc<PccRule>>,
    shared: &mut Arc<SharedClassifiers>,
) -> Session {
    let mut rules: Vec<CompiledRule> = s
        .rules
        .iter()
        .map(|r| CompiledRule {
            rule: Arc::clone(r),
            predefined: false,
        })
        .chain(s.predefined.iter().filter_map(|name| {
            predefined.get(name).map(|r| CompiledRule {
                rule: Arc::clone(r),
                predefined: true,
            })
        }))
        .collect();
    // Lower precedence wins; ties go to dynamic rules, then to the name, so the order never
    // depends on how the rules happened to be listed.
    rules.sort_by(|a, b| {
        (a.rule.precedence, a.predefined, &a.rule.name).cmp(&(
            b.rule.precedence,
            b.predefined,
            &b.rule.name,
        ))
    });
    // A predefined rule named twice is one rule.
    rules.dedup_by(|a, b| a.predefined && b.predefined && Arc::ptr_eq(&a.rule, &b.rule));
    rules.shrink_to_fit();
    let shareable = rules
        .iter()
        .all(|r| r.predefined && r.rule.filters.iter().all(|f| !remote_is_assigned(&f.flow)));
    let classifiers = if shareable {
        let key: Box<[usize]> = rules
            .iter()
            .map(|r| Arc::as_ptr(&r.rule) as usize)
            .collect();
        match shared.get(&key) {
            Some(c) => Arc::clone(c),
            None => {
                let c = Arc::new(compile_classifiers(s, &rules));
                Arc::make_mut(shared).insert(key, Arc::clone(&c));
                c
            }
        }
    } else {
        Arc::new(compile_classifiers(s, &rules))
    };
    let mut boundaries: Vec<Timestamp> = rules
        .iter()
        .flat_map(|r| [r.rule.activation, r.rule.deactivation])
        .flatten()
        .collect();
    boundaries.sort();
    boundaries.dedup();
    boundaries.shrink_to_fit();
    let redirect_rules = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.rule.redirect.as_ref().is_some_and(|i| i.enabled()))
        .map(|(i, _)| RuleId(i as u32))
        .collect();
    Session {
        id,
        slot,
        stamp,
        subscriber: s.subscriber.clone(),
        ipv4: s.ipv4,
        ipv6: s.ipv6,
        default_rule: s.default_rule,
        rules,
        redirect_rules,
        monitoring: s.monitoring.clone(),
        credits: s.credits.clone(),
        classifiers,
        boundaries,
    }
}

/// Whether a filter names the session's own address as the remote end (a hairpin filter):
/// its classifier then depends on the session's addresses.
fn remote_is_assigned(flow: &FlowDescription) -> bool {
    let remote = match flow.direction {
        FilterDirection::Out => &flow.src,
        FilterDirection::In => &flow.dst,
    };
    matches!(remote, AddressMatch::Assigned)
}

fn compile_classifiers(s: &SessionConfig, rules: &[CompiledRule]) -> Classifiers {
    let mut up = (Vec::new(), Vec::new());
    let mut down = (Vec::new(), Vec::new());
    // A rule carrying Redirect-Information is enforced by the redirect stage, before these
    // rules; it never classifies traffic itself, so lifting a redirect leaves exactly the other
    // rules in force.
    let normal = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.rule.redirect.as_ref().is_some_and(|i| i.enabled()))
        .map(|(i, r)| (RuleId(i as u32), r));
    for (id, r) in normal {
        for filter in &r.rule.filters {
            let expanded = expand(&filter.flow, s, true);
            if matches!(
                filter.direction,
                FlowDirection::Uplink | FlowDirection::Bidirectional
            ) {
                for r in &expanded {
                    up.0.push(*r);
                    up.1.push(id);
                }
            }
            if matches!(
                filter.direction,
                FlowDirection::Downlink | FlowDirection::Bidirectional
            ) {
                for r in &expanded {
                    down.0.push(*r);
                    down.1.push(id);
                }
            }
        }
    }
    let finish = |(rules, entries): (Vec<Rule>, Vec<RuleId>)| DirectionalRules {
        classifier: SessionClassifier::build(&rules),
        entries: {
            let mut entries = entries;
            entries.shrink_to_fit();
            entries
        },
    };
    Classifiers {
        uplink: finish(up),
        downlink: finish(down),
    }
}

/// Turns one Flow-Description into classifier rules in subscriber orientation: `assigned`
/// becomes the session's addresses, port lists become one rule per range pair.
pub(crate) fn expand_filter(flow: &FlowDescription, s: &SessionConfig) -> Vec<Rule> {
    expand(flow, s, false)
}

/// [`expand_filter`]; with `ue_any`, the UE end of `assigned` as any address.
fn expand(flow: &FlowDescription, s: &SessionConfig, ue_any: bool) -> Vec<Rule> {
    // In subscriber orientation the remote end is `from` for `out` and `to` for `in`.
    let (remote, remote_ports, ue, ue_ports) = match flow.direction {
        FilterDirection::Out => (&flow.src, &flow.src_ports, &flow.dst, &flow.dst_ports),
        FilterDirection::In => (&flow.dst, &flow.dst_ports, &flow.src, &flow.src_ports),
    };
    let remote_prefixes = prefixes(remote, s);
    let ue_prefixes = if ue_any && matches!(ue, AddressMatch::Assigned) {
        vec![Prefix::ANY]
    } else {
        prefixes(ue, s)
    };
    let mut out = Vec::new();
    for rp in &remote_prefixes {
        for up in &ue_prefixes {
            // An IPv4 prefix and an IPv6 prefix can never match the same packet.
            if rp.len > 0 && up.len > 0 && (rp.addr >> 32 == 0xffff) != (up.addr >> 32 == 0xffff) {
                continue;
            }
            for rport in ports(remote_ports) {
                for uport in ports(ue_ports) {
                    out.push(Rule {
                        src: *rp,
                        dst: *up,
                        src_ports: rport,
                        dst_ports: uport,
                        protocol: flow.protocol,
                    });
                }
            }
        }
    }
    out
}

fn prefixes(m: &AddressMatch, s: &SessionConfig) -> Vec<Prefix> {
    match m {
        AddressMatch::Any => vec![Prefix::ANY],
        AddressMatch::Prefix(p) => vec![Prefix::from_ip(p.addr, p.len)],
        AddressMatch::Assigned => s
            .ipv4
            .map(|a| Prefix::from_ip(IpAddr::V4(a), 32))
            .into_iter()
            .chain(s.ipv6.map(|p| Prefix::from_ip(p.addr, p.len)))
            .collect(),
    }
}

fn ports(list: &[PortRange]) -> Vec<Ports> {
    if list.is_empty() {
        vec![Ports::ANY]
    } else {
        list.iter().map(|r| Ports { lo: r.lo, hi: r.hi }).collect()
    }
}
