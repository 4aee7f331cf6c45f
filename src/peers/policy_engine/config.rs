//! The policy engine's configuration file, read with the same located errors as the gateway's
//! (`file:line:column: path: message`, every mistake in one run).
//!
//! # Format
//!
//! ```toml
//! listen = "127.0.0.1:50051"          # default; loopback unless you mean otherwise
//! metrics_listen = "127.0.0.1:9465"   # GET /metrics (request latencies by RPC); default: off
//! database = "policy-engine.sqlite"   # required; relative to this file's folder; created on first run
//!                                     # (or "postgres://user:password@host/db": an existing database)
//! billing_delay = 30                  # seconds before a recharge reaches the balance (0-86400); default 0
//! origin_host = "pcrf.example"        # Origin-Host in RARs; default "weir-policy-engine"
//! token_key = "00112233445566778899aabbccddeeff"   # hex, >= 16 bytes: the portal's and the watch's key
//! token_max_age = 600                 # seconds a success token may live (1-86400); default 600
//! predefined_rules = ["dns", "web"]   # names of rules predefined in the gateways
//! default_plan = "standard"           # the plan of accounts created without one; default: the first plan
//! reauth = { timeout = 5, attempts = 6, backoff = 1, max_backoff = 30 }
//!     # RAR delivery: seconds per attempt (1-300), attempts (1-100), first and longest pause
//!     # between attempts in seconds (the pause doubles each time); the defaults are shown
//! tls = { cert = "pe.pem", key = "pe.key", client_ca = "gateways-ca.pem" }
//!     # serve over TLS (PEM files, relative to this file's folder); with client_ca, every
//!     # client (gateway, operator) must present a certificate that CA signed. Default: plaintext
//! gateway_tls = { ca = "gateways-ca.pem", cert = "pe-client.pem", key = "pe-client.key", domain = "gw.example" }
//!     # RARs to the gateways over TLS: the CA that signs their certificates, this engine's own
//!     # certificate and key when the gateways require one (both or neither), and the name their
//!     # certificates carry (default: the host of the address each gave in CCR-I). Default: plaintext
//!
//! [redirect_rule]                     # required: the rule a subscriber out of credit gets (balance <= 0, no bucket left),
//! name = "recharge-redirect"          # with the keys of the gateway's [[predefined_rule]];
//! precedence = 1                      # it must have a redirect with support ENABLED
//! rating_group = 98
//! redirect = { support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }
//! flow = [{ description = "permit out ip from any to assigned" }]
//!
//! [[plan]]                            # at least one
//! name = "standard"                   # required, unique, not "custom"
//! predefined = ["dns", "web"]         # each one of predefined_rules
//! usage_monitoring = [{ monitoring_key = "mk-web", total_octets = 10485760 }]
//!     # thresholds granted per monitoring key: total_octets, input_octets, output_octets
//! recharge = [500, 1000, 2000]        # amounts the recharge portal offers, in the balance's unit
//! currency = "EUR"                    # ISO 4217 code of the balance and the amounts; default: none
//! minor_units = 2                     # digits after the decimal point of that unit (0-6); default 2
//! rate = [{ rating_group = 10, per_mb = 5, reauthorization_triggers = ["CHANGE_IN_RAT"] }, { per_mb = 1, per_minute = 2 }]
//!     # what the charging system charges, in the balance's unit per MB (10^6 octets) and per
//!     # minute, per rating group; the entry without rating_group is the default; the
//!     # Trigger-Types its answers give the rating group (see peers::charging_system::rating);
//!     # default: nothing rated
//! event_triggers = ["RAT_CHANGE"]     # Event-Triggers of CCR-I (see peers::policy_engine::events)
//!
//! [[plan.on_event]]                   # the rule change that answers a CCR-U with the event
//! event = "RAT_CHANGE"
//! install = ["video"]                 # predefined rules; [[plan.on_event.rule]] for dynamic ones
//! remove = ["web"]
//!
//! [[plan.rule]]                       # dynamic rules: the keys of [[predefined_rule]]
//! name = "voice"
//! precedence = 50
//! flow = [{ description = "permit out 17 from any to assigned 5060" }]
//!
//! [charging]                          # how the charging system grants: see
//!                                     # peers::charging_system::settings; every key optional
//!
//! [[account]]                         # created on start when missing; never overwritten
//! subscriber = "imsi-001010000000002"
//! balance = 0                         # in the smallest unit of the currency
//! plan = "standard"                   # default: default_plan
//! ```

use crate::peers::charging_system::rating::{read_rates, Rate};
use crate::peers::charging_system::settings::{read_charging, ChargingSettings};
use crate::policy::reader::{as_str, join, Ctx, Fields, Value};
use crate::policy::{ClientTls, ConfigErrors, PccRule, ServerTls, SubscriberId};
use crate::proto::rules::{MAX_LIST, MAX_NAME_LEN};
use crate::token::{parse_hex_key, TokenKey};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::DeTable;

/// A usage monitoring threshold granted per monitoring key, in octets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    pub monitoring_key: String,
    pub total_octets: Option<u64>,
    pub input_octets: Option<u64>,
    pub output_octets: Option<u64>,
}

/// A `[[plan]]`: what an account's sessions get while in credit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanConfig {
    pub name: String,
    pub predefined: Vec<String>,
    pub rules: Vec<PccRule>,
    pub usage_monitoring: Vec<Grant>,
    /// What the recharge portal offers a subscriber on this plan, in the balance's unit.
    pub recharge: Vec<i64>,
    /// ISO 4217 code of the balance and the amounts; empty: not stated.
    pub currency: String,
    /// Digits after the decimal point of the balance's unit (2: cents).
    pub minor_units: u32,
    /// What the charging system charges per rating group (`rate`); empty: nothing is rated.
    pub rates: Vec<Rate>,
    /// The event triggers of CCR-I and the rule changes that answer them
    /// (`event_triggers`, `[[plan.on_event]]`).
    pub events: super::events::PlanEvents,
}

/// An `[[account]]` to create on start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedAccount {
    pub subscriber: SubscriberId,
    pub balance: i64,
    pub plan: String,
}

/// How RARs are delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reauth {
    pub timeout: Duration,
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Reauth {
    fn default() -> Self {
        Reauth {
            timeout: Duration::from_secs(5),
            attempts: 6,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// The whole file.
#[derive(Clone, Debug)]
pub struct PolicyEngineConfig {
    pub listen: SocketAddr,
    /// Where `GET /metrics` is served; `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// A SQLite file, or a PostgreSQL URL (displayed with its password redacted).
    pub database: super::db::Database,
    pub billing_delay: Duration,
    pub origin_host: String,
    pub token_key: TokenKey,
    pub token_max_age: Duration,
    pub predefined_rules: Vec<String>,
    pub default_plan: String,
    pub reauth: Reauth,
    /// TLS for the server (`None`: plaintext).
    pub tls: Option<ServerTls>,
    /// TLS for RARs to gateways (`None`: plaintext).
    pub gateway_tls: Option<ClientTls>,
    pub redirect_rule: PccRule,
    pub plans: Vec<PlanConfig>,
    pub accounts: Vec<SeedAccount>,
    /// How the charging system grants (`[charging]`).
    pub charging: ChargingSettings,
}

/// Largest balance or amount accepted anywhere, so sums stay far from `i64`'s limits (SQLite
/// would turn an overflowing sum into a float).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

impl PolicyEngineConfig {
    pub fn plan(&self, name: &str) -> Option<&PlanConfig> {
        self.plans.iter().find(|p| p.name == name)
    }

    /// Parses and validates a configuration. `origin` names it in errors; a relative database
    /// path is taken from `dir` (the file's folder).
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        dir: &Path,
    ) -> Result<PolicyEngineConfig, ConfigErrors> {
        let mut ctx = Ctx::new(text, origin);
        let root = match DeTable::parse(text) {
            Ok(root) => root,
            Err(e) => {
                let at = e.span().map_or(0, |s| s.start);
                ctx.error(at, "", format!("TOML syntax: {}", e.message().trim_end()));
                return Err(ConfigErrors(ctx.errors));
            }
        };
        let f = Fields::from_table(
            &mut ctx,
            root.get_ref(),
            root.span(),
            String::new(),
            &[
                "listen",
                "metrics_listen",
                "database",
                "billing_delay",
                "origin_host",
                "token_key",
                "token_max_age",
                "predefined_rules",
                "default_plan",
                "reauth",
                "tls",
                "gateway_tls",
                "redirect_rule",
                "plan",
                "account",
                "charging",
            ],
        );
        let c = &mut ctx;

        let listen = match f.str(c, "listen") {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 50051))),
            Some((text, span)) => match text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    let m = format!("'{text}' is not an address and port such as 127.0.0.1:50051");
                    c.error(span.start, "listen", m);
                    None
                }
            },
        };
        let metrics_listen = f.str(c, "metrics_listen").and_then(|(text, span)| {
            text.parse::<SocketAddr>()
                .map_err(|_| {
                    let m = format!("'{text}' is not an address and port such as 127.0.0.1:9465");
                    c.error(span.start, "metrics_listen", m);
                })
                .ok()
        });
        let database = f.required_str(c, "database").and_then(|(p, span)| {
            if p.trim().is_empty() {
                c.error(
                    span.start,
                    "database",
                    "the database path must not be empty",
                );
                return None;
            }
            if super::db::Database::is_postgres_url(p) {
                return Some(super::db::Database::Postgres(p.to_string()));
            }
            let path = p.strip_prefix("sqlite:").unwrap_or(p);
            Some(super::db::Database::Sqlite(dir.join(path)))
        });
        let billing_delay = f
            .int(c, "billing_delay", 0, 86_400)
            .map_or(Duration::ZERO, secs);
        let origin_host = f
            .str(c, "origin_host")
            .map_or("weir-policy-engine".to_string(), |(s, _)| s.to_string());
        let token_key = f.required_str(c, "token_key").and_then(|(hex, span)| {
            let key = parse_hex_key(hex).and_then(|k| TokenKey::new(&k).map_err(|e| e.to_string()));
            key.map_err(|m| c.error(span.start, "token_key", m)).ok()
        });
        let token_max_age = f
            .int(c, "token_max_age", 1, 86_400)
            .map_or(Duration::from_secs(600), secs);
        let predefined_rules = read_names(c, &f, "predefined_rules");
        let reauth = f
            .get("reauth")
            .and_then(|v| read_reauth(c, v))
            .unwrap_or_default();
        let tls = f.get("tls").and_then(|v| read_server_tls(c, v, "tls", dir));
        let gateway_tls = f
            .get("gateway_tls")
            .and_then(|v| read_client_tls(c, v, "gateway_tls", dir));

        let redirect_rule = match f.get("redirect_rule") {
            None => {
                f.missing(c, "redirect_rule");
                None
            }
            Some(v) => crate::policy::read_rule(c, v, "redirect_rule".to_string()).and_then(|r| {
                let enabled = r.redirect.as_ref().is_some_and(|i| i.enabled());
                if !enabled {
                    let m = "the redirect rule needs redirect = { support = \"ENABLED\", … }";
                    c.error(v.span().start, "redirect_rule", m);
                    return None;
                }
                if predefined_rules.iter().any(|(n, _)| *n == r.name) {
                    let m = format!("'{}' is also a predefined rule name", r.name);
                    c.error(v.span().start, "redirect_rule.name", m);
                }
                Some(r)
            }),
        };

        let mut plans: Vec<PlanConfig> = Vec::new();
        for (i, item) in f.array(c, "plan").unwrap_or(&[]).iter().enumerate() {
            let path = format!("plan[{i}]");
            if let Some(p) = read_plan(c, item, &path, &predefined_rules) {
                if plans.iter().any(|q| q.name == p.name) {
                    let m = format!("plan '{}' is defined twice", p.name);
                    c.error(item.span().start, &join(&path, "name"), m);
                }
                plans.push(p);
            }
        }
        if f.get("plan").is_none() {
            f.missing(c, "plan");
        }
        let default_plan = match f.str(c, "default_plan") {
            Some((name, span)) => {
                if !plans.iter().any(|p| p.name == name) {
                    let m = format!("no [[plan]] is named '{name}'");
                    c.error(span.start, "default_plan", m);
                }
                name.to_string()
            }
            None => plans.first().map(|p| p.name.clone()).unwrap_or_default(),
        };

        let charging = f
            .get("charging")
            .and_then(|v| read_charging(c, v))
            .unwrap_or_default();

        let mut accounts: Vec<SeedAccount> = Vec::new();
        // A file may seed a million accounts: duplicates are found by hash, not by scanning.
        let mut listed: std::collections::HashSet<SubscriberId> = std::collections::HashSet::new();
        for (i, item) in f.array(c, "account").unwrap_or(&[]).iter().enumerate() {
            let path = format!("account[{i}]");
            let Some(a) = Fields::new(c, item, path.clone(), &["subscriber", "balance", "plan"])
            else {
                continue;
            };
            let subscriber = a.required_str(c, "subscriber").and_then(|(s, span)| {
                SubscriberId::parse(s)
                    .map_err(|m| c.error(span.start, &a.path("subscriber"), m))
                    .ok()
            });
            let balance = a
                .int(
                    c,
                    "balance",
                    -i128::from(MAX_AMOUNT),
                    i128::from(MAX_AMOUNT),
                )
                .and_then(|n| i64::try_from(n).ok())
                .unwrap_or(0);
            let plan = match a.str(c, "plan") {
                Some((name, span)) => {
                    if !plans.iter().any(|p| p.name == name) {
                        let m = format!("no [[plan]] is named '{name}'");
                        c.error(span.start, &a.path("plan"), m);
                    }
                    name.to_string()
                }
                None => default_plan.clone(),
            };
            if let Some(subscriber) = subscriber {
                if !listed.insert(subscriber.clone()) {
                    let m = format!("account {subscriber} is listed twice");
                    c.error(item.span().start, &a.path("subscriber"), m);
                }
                accounts.push(SeedAccount {
                    subscriber,
                    balance,
                    plan,
                });
            }
        }

        if !ctx.errors.is_empty() {
            let mut errors = ctx.errors;
            errors.sort_by_key(|e| (e.line, e.column));
            return Err(ConfigErrors(errors));
        }
        let missing = || ConfigErrors(Vec::new());
        Ok(PolicyEngineConfig {
            listen: listen.ok_or_else(missing)?,
            metrics_listen,
            database: database.ok_or_else(missing)?,
            billing_delay,
            origin_host,
            token_key: token_key.ok_or_else(missing)?,
            token_max_age,
            predefined_rules: predefined_rules.into_iter().map(|(n, _)| n).collect(),
            default_plan,
            reauth,
            tls,
            gateway_tls,
            redirect_rule: redirect_rule.ok_or_else(missing)?,
            plans,
            accounts,
            charging,
        })
    }
}

fn secs(n: i128) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

/// An array of distinct, non-empty names.
pub(super) fn read_names(ctx: &mut Ctx<'_>, f: &Fields<'_, '_>, key: &str) -> Vec<(String, usize)> {
    let mut names: Vec<(String, usize)> = Vec::new();
    for (i, item) in f.array(ctx, key).unwrap_or(&[]).iter().enumerate() {
        let path = format!("{}[{i}]", f.path(key));
        let Some(name) = as_str(ctx, item, &path) else {
            continue;
        };
        let at = item.span().start;
        if name.trim().is_empty() || name.len() > MAX_NAME_LEN {
            ctx.error(
                at,
                &path,
                format!("a rule name needs 1-{MAX_NAME_LEN} bytes"),
            );
        } else if names.iter().any(|(n, _)| n == name) {
            ctx.error(at, &path, format!("'{name}' is listed twice"));
        } else {
            names.push((name.to_string(), at));
        }
    }
    if names.len() > MAX_LIST {
        let m = format!("at most {MAX_LIST} names");
        ctx.error(f.span.start, &f.path(key), m);
    }
    names
}

/// A PEM file's path, relative to `dir` (the configuration file's folder).
fn read_path(ctx: &mut Ctx<'_>, f: &Fields<'_, '_>, key: &str, dir: &Path) -> Option<PathBuf> {
    let (p, span) = f.str(ctx, key)?;
    if p.trim().is_empty() {
        ctx.error(span.start, &f.path(key), "the path must not be empty");
        return None;
    }
    Some(dir.join(p))
}

/// `{ cert, key, client_ca }`: the files are read when the server starts.
fn read_server_tls(
    ctx: &mut Ctx<'_>,
    value: &Value<'_>,
    path: &str,
    dir: &Path,
) -> Option<ServerTls> {
    let f = Fields::new(ctx, value, path.to_string(), &["cert", "key", "client_ca"])?;
    for key in ["cert", "key"] {
        if f.get(key).is_none() {
            f.missing(ctx, key);
        }
    }
    let cert = read_path(ctx, &f, "cert", dir);
    let key = read_path(ctx, &f, "key", dir);
    let client_ca = read_path(ctx, &f, "client_ca", dir);
    Some(ServerTls {
        cert: cert?,
        key: key?,
        client_ca,
    })
}

/// `{ ca, cert, key, domain }`: the files are read when the policy engine starts.
fn read_client_tls(
    ctx: &mut Ctx<'_>,
    value: &Value<'_>,
    path: &str,
    dir: &Path,
) -> Option<ClientTls> {
    let f = Fields::new(
        ctx,
        value,
        path.to_string(),
        &["ca", "cert", "key", "domain"],
    )?;
    if f.get("ca").is_none() {
        f.missing(ctx, "ca");
    }
    let ca = read_path(ctx, &f, "ca", dir);
    let cert = read_path(ctx, &f, "cert", dir);
    let key = read_path(ctx, &f, "key", dir);
    if cert.is_some() != key.is_some() {
        let m = "a client certificate needs both cert and key";
        ctx.error(f.span.start, path, m);
    }
    let domain = f.str(ctx, "domain").and_then(|(d, span)| {
        if d.trim().is_empty() {
            ctx.error(span.start, &f.path("domain"), "the name must not be empty");
            return None;
        }
        Some(d.to_string())
    });
    Some(ClientTls {
        ca: ca?,
        cert,
        key,
        domain,
    })
}

fn read_reauth(ctx: &mut Ctx<'_>, value: &Value<'_>) -> Option<Reauth> {
    let f = Fields::new(
        ctx,
        value,
        "reauth".to_string(),
        &["timeout", "attempts", "backoff", "max_backoff"],
    )?;
    let mut r = Reauth::default();
    if let Some(n) = f.int(ctx, "timeout", 1, 300) {
        r.timeout = secs(n);
    }
    if let Some(n) = f.int(ctx, "attempts", 1, 100) {
        r.attempts = u32::try_from(n).unwrap_or(1);
    }
    if let Some(n) = f.int(ctx, "backoff", 0, 3600) {
        r.backoff = secs(n);
    }
    if let Some(n) = f.int(ctx, "max_backoff", 0, 3600) {
        r.max_backoff = secs(n);
    }
    if r.max_backoff < r.backoff {
        let m = "max_backoff must not be shorter than backoff";
        ctx.error(f.span.start, "reauth.max_backoff", m);
    }
    Some(r)
}

fn read_plan(
    ctx: &mut Ctx<'_>,
    value: &Value<'_>,
    path: &str,
    predefined: &[(String, usize)],
) -> Option<PlanConfig> {
    let before = ctx.error_count();
    let f = Fields::new(
        ctx,
        value,
        path.to_string(),
        &[
            "name",
            "predefined",
            "rule",
            "usage_monitoring",
            "recharge",
            "currency",
            "minor_units",
            "rate",
            "event_triggers",
            "on_event",
        ],
    )?;
    let name = f.required_str(ctx, "name").map(|(n, span)| {
        if n.trim().is_empty() || n == "custom" {
            let m = "a plan name must not be empty or \"custom\" (the name of per-account rules)";
            ctx.error(span.start, &f.path("name"), m);
        }
        n.to_string()
    });
    let names = read_names(ctx, &f, "predefined");
    for (i, (n, at)) in names.iter().enumerate() {
        if !predefined.iter().any(|(p, _)| p == n) {
            let m = format!("'{n}' is not one of predefined_rules");
            ctx.error(*at, &format!("{}[{i}]", f.path("predefined")), m);
        }
    }
    let mut rules: Vec<PccRule> = Vec::new();
    let items = f.array(ctx, "rule").unwrap_or(&[]);
    if items.len() > MAX_LIST {
        ctx.error(
            f.span.start,
            &f.path("rule"),
            format!("at most {MAX_LIST} rules"),
        );
    }
    for (i, item) in items.iter().enumerate() {
        let rpath = format!("{}[{i}]", f.path("rule"));
        if let Some(r) = crate::policy::read_rule(ctx, item, rpath.clone()) {
            let clash =
                rules.iter().any(|q| q.name == r.name) || names.iter().any(|(n, _)| *n == r.name);
            if clash {
                let m = format!("rule '{}' is already in this plan", r.name);
                ctx.error(item.span().start, &join(&rpath, "name"), m);
            }
            rules.push(r);
        }
    }
    let mut usage_monitoring: Vec<Grant> = Vec::new();
    for (i, item) in f
        .array(ctx, "usage_monitoring")
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let upath = format!("{}[{i}]", f.path("usage_monitoring"));
        let Some(u) = Fields::new(
            ctx,
            item,
            upath,
            &[
                "monitoring_key",
                "total_octets",
                "input_octets",
                "output_octets",
            ],
        ) else {
            continue;
        };
        let octets = |ctx: &mut Ctx<'_>, key: &str| {
            u.int(ctx, key, 1, i128::from(i64::MAX))
                .and_then(|n| u64::try_from(n).ok())
        };
        let grant = Grant {
            monitoring_key: u
                .required_str(ctx, "monitoring_key")
                .map(|(k, _)| k.to_string())
                .unwrap_or_default(),
            total_octets: octets(ctx, "total_octets"),
            input_octets: octets(ctx, "input_octets"),
            output_octets: octets(ctx, "output_octets"),
        };
        if grant.total_octets.is_none()
            && grant.input_octets.is_none()
            && grant.output_octets.is_none()
        {
            let m = "a threshold needs total_octets, input_octets or output_octets";
            ctx.error(u.span.start, &u.path, m);
        }
        usage_monitoring.push(grant);
    }
    let (recharge, currency, minor_units) = read_prices(ctx, &f);
    let rates = read_rates(ctx, &f);
    let plan_rules: Vec<String> = names
        .iter()
        .map(|(n, _)| n.clone())
        .chain(rules.iter().map(|r| r.name.clone()))
        .collect();
    let events = super::events::read_plan_events(ctx, &f, predefined, &plan_rules);
    if ctx.error_count() != before {
        return None;
    }
    Some(PlanConfig {
        name: name?,
        predefined: names.into_iter().map(|(n, _)| n).collect(),
        rules,
        usage_monitoring,
        recharge,
        currency,
        minor_units,
        rates,
        events,
    })
}

/// A plan's `recharge`, `currency` and `minor_units`: what the portal offers and how it writes
/// money.
fn read_prices(ctx: &mut Ctx<'_>, f: &Fields<'_, '_>) -> (Vec<i64>, String, u32) {
    let mut recharge: Vec<i64> = Vec::new();
    let items = f.array(ctx, "recharge").unwrap_or(&[]);
    if items.len() > MAX_LIST {
        let m = format!("at most {MAX_LIST} amounts");
        ctx.error(f.span.start, &f.path("recharge"), m);
    }
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", f.path("recharge"));
        let amount = match item.get_ref() {
            toml::de::DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix()).ok(),
            _ => None,
        };
        match amount {
            Some(n) if (1..=MAX_AMOUNT).contains(&n) && !recharge.contains(&n) => recharge.push(n),
            Some(n) if recharge.contains(&n) => {
                ctx.error(item.span().start, &path, format!("{n} is offered twice"));
            }
            _ => {
                let m = format!("an amount is a whole number from 1 to {MAX_AMOUNT}");
                ctx.error(item.span().start, &path, m);
            }
        }
    }
    let currency = match f.str(ctx, "currency") {
        Some((c, span)) => {
            if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                let m = format!("'{c}' is not an ISO 4217 code such as EUR");
                ctx.error(span.start, &f.path("currency"), m);
            }
            c.to_string()
        }
        None => String::new(),
    };
    let minor_units = f
        .int(ctx, "minor_units", 0, 6)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(2);
    (recharge, currency, minor_units)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PolicyEngineConfig, ConfigErrors> {
        PolicyEngineConfig::from_toml_str(text, "pe.toml", Path::new("/var/lib/weir"))
    }

    #[test]
    fn the_example_parses() {
        let text = include_str!("../../../examples/policy-engine.toml");
        let c = parse(text).unwrap();
        assert_eq!(
            c.database,
            super::super::db::Database::Sqlite("/var/lib/weir/policy-engine.sqlite".into())
        );
        assert_eq!(c.billing_delay, Duration::from_secs(30));
        assert_eq!(c.redirect_rule.name, "recharge-redirect");
        assert_eq!(c.plan("voice").unwrap().rules[0].name, "sip");
        let voice = &c.plan("voice").unwrap().events;
        assert_eq!(voice.on_event[0].remove, ["sip"]);
        assert_eq!(
            c.plan("voice").unwrap().rates[0].triggers.values(),
            [2 + 1, 4]
        );
        assert_eq!(c.accounts.len(), 2);
        assert_eq!(c.listen, "127.0.0.1:50051".parse().unwrap());
    }

    #[test]
    fn every_mistake_is_located() {
        let text = r#"database = "pe.sqlite"
token_key = "abcd"
predefined_rules = ["dns"]

[redirect_rule]
name = "r"
precedence = 1
flow = [{ description = "permit out ip from any to assigned" }]

[[plan]]
name = "p"
predefined = ["dns", "web"]

[[plan.rule]]
name = "x"
precedence = 2
flow = [{ description = "permit out 6 frm any to assigned" }]
"#;
        let errors = parse(text).unwrap_err().0;
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(
            lines[0].starts_with("pe.toml:2:13: token_key: a token key needs at least 16 bytes"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("pe.toml:5:1: redirect_rule: the redirect rule needs redirect"),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[2],
            "pe.toml:12:22: plan[0].predefined[1]: 'web' is not one of predefined_rules"
        );
        assert!(
            lines[3].starts_with(
                "pe.toml:17:39: plan[0].rule[0].flow[0].description: Flow-Description"
            ),
            "{}",
            lines[3]
        );
    }
}
