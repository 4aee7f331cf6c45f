//! The store's guarantees, the same test bodies on SQLite and on a real PostgreSQL server that
//! the test starts: balances survive a restart, two engines on one database lose no update, a
//! recharge reference applies once, the redirect state moves by compare-and-set, and a newer
//! schema is refused.

#[path = "support/postgres.rs"]
mod postgres_server;

use weir::peers::policy_engine::db::Database;
use weir::peers::policy_engine::store::{RedirectState, SessionRow, Store, StoreError};
use weir::proto::v1 as pb;

fn scenarios(db: &Database) {
    // Restart with the balance intact.
    let s = Store::open(db).unwrap();
    s.create_account("imsi-1", 100, "p", &pb::Plan::default(), 1)
        .unwrap();
    assert!(matches!(
        s.create_account("imsi-1", 5, "p", &pb::Plan::default(), 1),
        Err(StoreError::Exists)
    ));
    drop(s);
    let s = Store::open(db).unwrap();
    assert_eq!(s.account("imsi-1").unwrap().unwrap().balance, 100);

    // Idempotent recharge.
    let r = s.recharge("imsi-1", 50, Some("pay-1"), 1, 1).unwrap();
    assert_eq!((r.account.balance, r.duplicate), (150, false));
    let again = s.recharge("imsi-1", 50, Some("pay-1"), 1, 2).unwrap();
    assert_eq!((again.account.balance, again.duplicate), (150, true));
    // No reference: a NULL of the text column.
    let plain = s.recharge("imsi-1", 0, None, 1, 2).unwrap();
    assert_eq!((plain.account.balance, plain.credit.reference), (150, None));

    // Two engines on one database, recharging the same account at once: exact final balance.
    let engines = [Store::open(db).unwrap(), Store::open(db).unwrap()];
    std::thread::scope(|t| {
        for (e, store) in engines.iter().enumerate() {
            t.spawn(move || {
                for i in 0..100 {
                    store
                        .recharge("imsi-1", 1, Some(&format!("e{e}-{i}")), 1, 1)
                        .unwrap();
                    // The same reference from both engines applies once.
                    store
                        .recharge("imsi-1", 1000, Some(&format!("both-{i}")), 1, 1)
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(
        s.account("imsi-1").unwrap().unwrap().balance,
        150 + 200 + 100 * 1000
    );

    // Compare-and-set of the redirect state: of two engines, one moves it.
    s.put_session(&SessionRow {
        session_id: "s1".into(),
        subscriber_id: "imsi-1".into(),
        redirected: true,
        installed: vec!["redirect".into()],
        ..Default::default()
    })
    .unwrap();
    let (from, to) = (
        RedirectState {
            redirected: true,
            lifted: false,
        },
        RedirectState {
            redirected: false,
            lifted: true,
        },
    );
    let moved: Vec<bool> = engines
        .iter()
        .map(|e| e.swap_redirect_state("s1", from, to, &[]).unwrap())
        .collect();
    assert_eq!(moved, vec![true, false]);
    let session = s.session("s1").unwrap().unwrap();
    assert_eq!((session.redirected, session.lifted), (false, true));
    assert!(session.installed.is_empty());
    drop(engines);

    assert_eq!(s.schema_version().unwrap(), 2);
    drop(s);
}

#[test]
fn the_store_keeps_its_guarantees_on_sqlite() {
    let path = std::env::temp_dir().join(format!("weir-backends-{}.sqlite", std::process::id()));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    scenarios(&Database::Sqlite(path.clone()));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
}

#[test]
fn the_store_keeps_its_guarantees_on_postgres() {
    let Some(pg) = postgres_server::Postgres::start("guarantees") else {
        return;
    };
    let db = Database::Postgres(pg.url.clone());
    scenarios(&db);
    // A newer schema is refused, naming the database without its password.
    let mut c = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    c.batch_execute("UPDATE weir_schema SET version = 99")
        .unwrap();
    drop(c);
    let with_password = Database::Postgres(pg.url.replace("weir@", "weir:s3cret@"));
    match Store::open(&with_password) {
        Err(e @ StoreError::TooNew { found: 99, .. }) => {
            let text = e.to_string();
            assert!(
                !text.contains("s3cret") && text.contains("weir:***@"),
                "{text}"
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a newer schema was opened"),
    }
}
