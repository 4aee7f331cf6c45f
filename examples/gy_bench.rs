//! Gy benchmark: CreditControl requests per second that the reference charging system of
//! `weir policy-engine` (the release binary, its own process and store) sustains, on SQLite, on
//! PostgreSQL, or on both in one run, one after the other with the same load.
//!
//! ```sh
//! cargo build --release --bin weir && cargo run --release --example gy_bench
//! cargo run --release --example gy_bench -- --store sqlite,postgres --callers 64 --seconds 20
//! ```
//!
//! `--store` lists the stores to measure (default `sqlite`): `sqlite` is a file in a temporary
//! folder; `postgres` a fresh cluster of Debian's PostgreSQL the bench starts on a unix socket of
//! its own and stops at the end (as the store's tests do), as user `postgres` when run as root.
//! `GY_BENCH_PG_SQL` is SQL run on that server before the policy engine starts, to try a
//! setting (`ALTER DATABASE weir SET synchronous_commit = off`).
//!
//! `--callers` concurrent callers (default 64) each run credit control sessions back to back
//! for `--seconds` (default 20): CCR-I asking for 1 MB of rating group 10, CCR-U reporting
//! 1 MB used and asking for 1 MB more, CCR-T reporting the last 1 MB. Every request is its own
//! store transaction (reserve, debit, release, the answer kept for retries). The subscribers are
//! `--accounts` accounts (default 1000), each with a data bucket and money after it, drawn in
//! turn so callers rarely share one. Every answer must be DIAMETER_SUCCESS with the units asked
//! for; anything else is counted and printed.
//!
//! The policy engine binary is `target/release/weir` (or `WEIR_BIN`).

#[path = "support/policy_engine.rs"]
mod policy_engine;
#[path = "../tests/support/postgres.rs"]
mod postgres_server;

use policy_engine::{arg, text_arg, PolicyEngine};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::proto::v1 as pb;

const KEY: &str = "000102030405060708090a0b0c0d0e0f";
const MB: u64 = 1_000_000;

/// The policy engine's configuration: `accounts` accounts with money enough for the run.
fn config(database: &str, accounts: u32) -> String {
    let mut text = format!(
        r#"listen = "127.0.0.1:0"
database = "{database}"
origin_host = "ocs.bench"
token_key = "{KEY}"
predefined_rules = ["web"]

[redirect_rule]
name = "recharge-redirect"
precedence = 1
rating_group = 98
redirect = {{ support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }}
flow = [{{ description = "permit out ip from any to assigned" }}]

[[plan]]
name = "standard"
predefined = ["web"]
rate = [{{ per_mb = 1 }}]

[charging]
validity_time = 600
"#
    );
    for i in 0..accounts {
        text.push_str(&format!(
            "\n[[account]]\nsubscriber = \"{}\"\nbalance = 1000000000000\n",
            subscriber(i)
        ));
    }
    text
}

fn subscriber(i: u32) -> String {
    format!("imsi-00101{:010}", i)
}

fn mscc(used: u64, ask: u64) -> Vec<pb::MultipleServicesCreditControl> {
    vec![pb::MultipleServicesCreditControl {
        rating_group: Some(10),
        requested_service_unit: (ask > 0).then(|| pb::ServiceUnits {
            cc_total_octets: Some(ask),
            ..Default::default()
        }),
        used_service_unit: if used > 0 {
            vec![pb::UsedServiceUnit {
                units: Some(pb::ServiceUnits {
                    cc_total_octets: Some(used),
                    ..Default::default()
                }),
                reporting_reason: pb::ReportingReason::Threshold as i32,
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    }]
}

/// Whether an answer is the success the request should get.
fn good(a: &pb::CreditControlAnswer, ask: u64) -> bool {
    let Some(m) = a.multiple_services_credit_control.first() else {
        return false;
    };
    let granted = m
        .granted_service_unit
        .as_ref()
        .and_then(|g| g.cc_total_octets)
        .unwrap_or(0);
    a.result_code == pb::ResultCode::DiameterSuccess as i32
        && m.result_code == pb::ResultCode::DiameterSuccess as i32
        && granted == ask
}

/// What one store sustained.
struct Outcome {
    store: String,
    requests: u64,
    seconds: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    wrong: u64,
    debited: i64,
    reported: i64,
    /// Transactions PostgreSQL rolled back: a conflict each, the transaction run again.
    rolled_back: Option<i64>,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

fn main() {
    let callers = arg("--callers", 64) as usize;
    let seconds = arg("--seconds", 20);
    let accounts = arg("--accounts", 1000) as u32;
    let stores: Vec<String> = text_arg("--store")
        .unwrap_or_else(|| "sqlite".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let mut outcomes = Vec::new();
    for store in &stores {
        outcomes.push(run(store, callers, seconds, accounts));
    }
    println!();
    println!("| store | callers | requests | CCR-I/U/T cycles | requests/s | p50 | p99 | max | unexpected answers | transactions rolled back and run again | debited = reported |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|");
    for o in &outcomes {
        println!(
            "| {} | {callers} | {} | {} | {:.0} | {:.1?} | {:.1?} | {:.1?} | {} | {} | {} octets, {} |",
            o.store,
            o.requests,
            o.requests / 3,
            o.per_second(),
            o.p50,
            o.p99,
            o.max,
            o.wrong,
            o.rolled_back.map_or("–".to_string(), |n| n.to_string()),
            o.debited,
            if o.debited == o.reported { "yes" } else { "NO" },
        );
    }
    if let [first, rest @ ..] = outcomes.as_slice() {
        for o in rest {
            println!(
                "gy_bench: {} / {}: {:.2}x the requests/s",
                o.store,
                first.store,
                o.per_second() / first.per_second()
            );
        }
    }
    for o in &outcomes {
        assert_eq!(
            o.debited, o.reported,
            "{}: debited must equal reported",
            o.store
        );
    }
}

fn run(store: &str, callers: usize, seconds: u64, accounts: u32) -> Outcome {
    let dir = std::env::temp_dir().join(format!("weir-gy-bench-{}-{store}", std::process::id()));
    // The server outlives the policy engine (declared first, dropped last).
    let pg = match store {
        "sqlite" => None,
        "postgres" => Some(
            postgres_server::Postgres::start("gy-bench")
                .expect("PostgreSQL is installed (apt-get install postgresql)"),
        ),
        other => panic!("--store takes sqlite and/or postgres, not {other}"),
    };
    let database = pg
        .as_ref()
        .map_or("pe.sqlite".to_string(), |pg| pg.url.clone());
    let pe = PolicyEngine::start(&dir, &config(&database, accounts));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let addr = pe.addr.clone();
    let mut outcome = rt.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("an address")
            .connect()
            .await
            .expect("connects");
        // Every account gets a 1 GB data bucket, then a money container after it.
        let mut admin = pb::admin_client::AdminClient::new(channel.clone());
        for i in 0..accounts {
            for (unit, amount) in [
                (pb::CreditUnit::Octets, 1_000 * MB as i64),
                (pb::CreditUnit::Money, 0),
            ] {
                admin
                    .add_credit_container(pb::AddCreditContainerRequest {
                        subscriber_id: subscriber(i),
                        unit: unit as i32,
                        amount,
                        expires_at: 0,
                    })
                    .await
                    .expect("a container");
            }
        }
        let requests = Arc::new(AtomicU64::new(0));
        let wrong = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..callers {
            let (requests, wrong, next) = (requests.clone(), wrong.clone(), next.clone());
            let mut client = pb::charging_system_client::ChargingSystemClient::new(channel.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies: Vec<Duration> = Vec::new();
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let session = format!("bench;{c};{n}");
                    let sub = subscriber((n % u64::from(accounts)) as u32);
                    let steps = [
                        (pb::CcRequestType::InitialRequest, 0, sub.clone(), 0, MB),
                        (pb::CcRequestType::UpdateRequest, 1, String::new(), MB, MB),
                        (pb::CcRequestType::TerminationRequest, 2, String::new(), MB, 0),
                    ];
                    for (kind, number, subscriber_id, used, ask) in steps {
                        let t = Instant::now();
                        let answer = client
                            .credit_control(pb::CreditControlRequest {
                                session_id: session.clone(),
                                origin_host: "gw.bench".into(),
                                cc_request_type: kind as i32,
                                cc_request_number: number,
                                subscriber_id,
                                multiple_services_credit_control: mscc(used, ask),
                                ..Default::default()
                            })
                            .await;
                        latencies.push(t.elapsed());
                        requests.fetch_add(1, Ordering::Relaxed);
                        let ok = match &answer {
                            Ok(a) if kind == pb::CcRequestType::TerminationRequest => {
                                a.get_ref().result_code == pb::ResultCode::DiameterSuccess as i32
                            }
                            Ok(a) => good(a.get_ref(), ask),
                            Err(_) => false,
                        };
                        if !ok && wrong.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("unexpected answer: {answer:?}");
                        }
                    }
                }
                latencies
            }));
        }
        let mut latencies: Vec<Duration> = Vec::new();
        for t in tasks {
            latencies.extend(t.await.expect("a caller"));
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        let total = requests.load(Ordering::Relaxed);
        let wrong = wrong.load(Ordering::Relaxed);
        println!(
            "gy_bench: {store}: {callers} callers, {accounts} accounts, {:.1} s: {total} CreditControl requests ({} CCR-I/U/T cycles), {:.0} requests/s; latency p50 {:?}, p99 {:?}, max {:?}; {wrong} unexpected answers",
            elapsed.as_secs_f64(),
            total / 3,
            total as f64 / elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            latencies.last().copied().unwrap_or_default(),
        );
        // What was debited must be what was reported: 2 MB per completed cycle.
        let mut debited: i64 = 0;
        for i in 0..accounts {
            let list = admin
                .list_credit_containers(pb::ListCreditContainersRequest {
                    subscriber_id: subscriber(i),
                })
                .await
                .expect("the containers")
                .into_inner();
            for c in list.containers {
                if c.unit == pb::CreditUnit::Octets as i32 {
                    debited += 1_000 * MB as i64 - c.amount;
                }
                assert_eq!(c.reserved, 0, "{store}: a reservation was left open");
            }
        }
        let reported = (total / 3) * 2 * MB;
        println!("gy_bench: {store}: debited {debited} octets, reported {reported}, no reservation left open");
        Outcome {
            store: store.to_string(),
            requests: total,
            seconds: elapsed.as_secs_f64(),
            p50: pct(0.50),
            p99: pct(0.99),
            max: latencies.last().copied().unwrap_or_default(),
            wrong,
            debited,
            reported: reported as i64,
            rolled_back: None,
        }
    });
    // Every SERIALIZABLE conflict is one ROLLBACK before the transaction runs again (the
    // server's statistics, read outside the runtime: the client blocks).
    if let Some(pg) = &pg {
        let mut c = postgres::Client::connect(&pg.url, postgres::NoTls).expect("the server");
        let row = c
            .query_one(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = 'weir'",
                &[],
            )
            .expect("the statistics");
        let (commits, rollbacks): (i64, i64) = (row.get(0), row.get(1));
        println!("gy_bench: {store}: {commits} transactions committed, {rollbacks} rolled back");
        outcome.rolled_back = Some(rollbacks);
    }
    drop(pe);
    outcome
}
