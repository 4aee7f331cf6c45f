//! The policy engine's store: accounts, the credits billing has yet to apply, sessions, usage
//! and spent recharge-success nonces, in one SQLite file or one PostgreSQL database.
//!
//! Several processes may share the database (several gateways talking to several policy
//! engines): every change is one write transaction ([`Conn::transaction`]: SQLite's `BEGIN
//! IMMEDIATE`, whose write lock is taken up front and waited for, with WAL letting readers run
//! beside the writer; PostgreSQL's `SERIALIZABLE`, tried again on a conflict), and balances only
//! ever move by `balance = balance + ?` or by an explicit set, so no update is lost. A session's
//! redirect state changes only by compare-and-set, so two processes reconciling the same account
//! push one RAR, not two.
//!
//! The schema is versioned ([`Conn::schema_version`]); [`MIGRATIONS`] bring any older database
//! up to date on open, and one from a newer Weir is refused rather than misread. Times are
//! seconds since the Unix epoch, handed in by the caller.

pub use super::db::{Conn, Database};
use super::pool::{Pool, PooledConn, POSTGRES_CONNECTIONS};
use crate::params;
use crate::proto::v1 as pb;
use prost::Message as _;
use std::time::Duration;

/// Schema changes, in order; entry `i` takes a file from version `i` to `i + 1`. Never edit an
/// entry once released: add one.
pub const MIGRATIONS: &[&str] = &[
    // 1: accounts, credits, sessions, usage, nonces.
    "CREATE TABLE accounts (
        subscriber_id TEXT PRIMARY KEY,
        balance INTEGER NOT NULL,
        plan_name TEXT NOT NULL,
        plan BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE credits (
        id INTEGER PRIMARY KEY,
        subscriber_id TEXT NOT NULL REFERENCES accounts(subscriber_id) ON DELETE CASCADE,
        amount INTEGER NOT NULL,
        reference TEXT,
        created_at INTEGER NOT NULL,
        due_at INTEGER NOT NULL,
        applied_at INTEGER,
        UNIQUE (subscriber_id, reference)
    );
    CREATE INDEX credits_pending ON credits(due_at) WHERE applied_at IS NULL;
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        subscriber_id TEXT NOT NULL,
        framed_ip_address TEXT NOT NULL,
        framed_ipv6_prefix TEXT NOT NULL,
        reauth_endpoint TEXT NOT NULL,
        origin_host TEXT NOT NULL,
        redirected INTEGER NOT NULL,
        lifted INTEGER NOT NULL,
        installed TEXT NOT NULL,
        cc_request_number INTEGER NOT NULL,
        started_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_subscriber ON sessions(subscriber_id);
    CREATE TABLE usage (
        session_id TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
        monitoring_key TEXT NOT NULL,
        total_octets INTEGER NOT NULL DEFAULT 0,
        input_octets INTEGER NOT NULL DEFAULT 0,
        output_octets INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (session_id, monitoring_key)
    ) WITHOUT ROWID;
    CREATE TABLE used_nonces (
        nonce TEXT PRIMARY KEY,
        subscriber_id TEXT NOT NULL,
        expires INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 2: the charging system: credit containers, credit control sessions (the last answer of
    // each, for idempotent retries), reservations, shared quota groups. Plain SQL but for the
    // `INTEGER PRIMARY KEY` ids (SQLite's row ids; an identity column in PostgreSQL, see
    // `db::postgres_ddl`).
    "CREATE TABLE credit_containers (
        id INTEGER PRIMARY KEY,
        subscriber_id TEXT NOT NULL REFERENCES accounts(subscriber_id) ON DELETE CASCADE,
        unit TEXT NOT NULL CHECK (unit IN ('money', 'octets', 'seconds')),
        amount BIGINT NOT NULL,
        expires_at BIGINT,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX credit_containers_subscriber ON credit_containers(subscriber_id, id);
    CREATE TABLE gy_sessions (
        session_id TEXT PRIMARY KEY,
        subscriber_id TEXT NOT NULL,
        origin_host TEXT NOT NULL,
        cc_request_number BIGINT NOT NULL,
        answer BLOB NOT NULL,
        terminated INTEGER NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX gy_sessions_subscriber ON gy_sessions(subscriber_id);
    CREATE TABLE gy_reservations (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        rating_group BIGINT NOT NULL,
        container_id BIGINT NOT NULL REFERENCES credit_containers(id) ON DELETE CASCADE,
        units BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX gy_reservations_session ON gy_reservations(session_id, rating_group);
    CREATE INDEX gy_reservations_container ON gy_reservations(container_id);
    CREATE INDEX gy_reservations_expiry ON gy_reservations(expires_at);
    CREATE TABLE quota_groups (
        group_id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL UNIQUE REFERENCES accounts(subscriber_id) ON DELETE CASCADE,
        threshold_octets BIGINT NOT NULL,
        restricted INTEGER NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE quota_group_members (
        subscriber_id TEXT PRIMARY KEY REFERENCES accounts(subscriber_id) ON DELETE CASCADE,
        group_id TEXT NOT NULL REFERENCES quota_groups(group_id) ON DELETE CASCADE
    );
    CREATE INDEX quota_group_members_group ON quota_group_members(group_id);",
];

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `target` is the database with any password redacted.
    #[error("cannot open the database {target}: {reason}")]
    Open { target: String, reason: String },
    #[error("the database {target} has schema version {found}, newer than this weir knows ({known}); use a newer weir")]
    TooNew {
        target: String,
        found: i64,
        known: usize,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database: {0}")]
    Postgres(#[from] postgres::Error),
    #[error("the account already exists")]
    Exists,
    #[error("no account for this subscriber")]
    NoAccount,
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

/// A credit, pending or applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credit {
    pub amount: i64,
    pub reference: Option<String>,
    pub due_at: i64,
    pub applied_at: Option<i64>,
}

/// An account with its pending credits, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountRow {
    pub subscriber_id: String,
    pub balance: i64,
    pub plan_name: String,
    pub plan: pb::Plan,
    pub created_at: i64,
    pub updated_at: i64,
    pub pending: Vec<Credit>,
    /// Whether a live data or time bucket its payer holds (its own, or its quota group
    /// owner's) has units left: online charging spends those before money, so the account is
    /// in credit even at balance <= 0.
    pub buckets_left: bool,
}

impl AccountRow {
    /// Out of credit: nothing left in money or in the payer's buckets. Redirected to the portal
    /// unless a recharge success lifted it (see `Core::wanted`).
    pub fn out_of_credit(&self) -> bool {
        self.balance <= 0 && !self.buckets_left
    }
}

/// A session as the policy engine keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SessionRow {
    pub session_id: String,
    pub subscriber_id: String,
    pub framed_ip_address: String,
    pub framed_ipv6_prefix: String,
    pub reauth_endpoint: String,
    pub origin_host: String,
    pub redirected: bool,
    /// The redirect was lifted on a verified recharge success while the credit is pending.
    pub lifted: bool,
    /// Rule names the policy engine has installed.
    pub installed: Vec<String>,
    pub cc_request_number: u32,
    pub started_at: i64,
}

/// Octets reported for one monitoring key, added up.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UsageRow {
    pub monitoring_key: String,
    pub total_octets: u64,
    pub input_octets: u64,
    pub output_octets: u64,
}

/// The session's redirect state, for compare-and-set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedirectState {
    pub redirected: bool,
    pub lifted: bool,
}

/// What a recharge did.
#[derive(Clone, Debug, PartialEq)]
pub struct Recharged {
    pub account: AccountRow,
    pub credit: Credit,
    /// The reference was seen before: nothing changed.
    pub duplicate: bool,
}

pub struct Store {
    conns: Pool,
}

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The columns of a session, in the order [`session_of_row`] reads them.
macro_rules! session_columns {
    () => {
        "session_id, subscriber_id, framed_ip_address, framed_ipv6_prefix, reauth_endpoint,
        origin_host, redirected, lifted, installed, cc_request_number, started_at"
    };
}

fn session_of_row(r: &super::db::Row) -> Result<SessionRow, StoreError> {
    let session_id = r.text(0)?;
    let installed = r.text(8)?;
    let installed = serde_json::from_str(&installed)
        .map_err(|e| StoreError::Corrupt(format!("session {session_id}: {e}")))?;
    Ok(SessionRow {
        subscriber_id: r.text(1)?,
        framed_ip_address: r.text(2)?,
        framed_ipv6_prefix: r.text(3)?,
        reauth_endpoint: r.text(4)?,
        origin_host: r.text(5)?,
        redirected: r.flag(6)?,
        lifted: r.flag(7)?,
        installed,
        cc_request_number: r.u32(9)?,
        started_at: r.int(10)?,
        session_id,
    })
}

impl Store {
    /// Opens (creating when missing) and migrates the database: a SQLite file, or a PostgreSQL
    /// database that exists already (its tables are created here).
    pub fn open(db: impl Into<Database>) -> Result<Store, StoreError> {
        let db = db.into();
        let target = db.to_string();
        let open_err = |reason: String| StoreError::Open {
            target: target.clone(),
            reason,
        };
        let mut conn = match &db {
            Database::Sqlite(path) => {
                let sqlite = |e: rusqlite::Error| open_err(e.to_string());
                let conn = rusqlite::Connection::open(path).map_err(sqlite)?;
                conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
                conn.pragma_update(None, "journal_mode", "WAL")
                    .map_err(sqlite)?;
                conn.pragma_update(None, "synchronous", "NORMAL")
                    .map_err(sqlite)?;
                conn.pragma_update(None, "foreign_keys", "ON")
                    .map_err(sqlite)?;
                Conn::Sqlite(conn)
            }
            Database::Postgres(url) => Conn::postgres(url).map_err(|e| open_err(e.to_string()))?,
        };
        conn.migrate(MIGRATIONS, &target).map_err(|e| match e {
            e @ StoreError::TooNew { .. } => e,
            e => open_err(e.to_string()),
        })?;
        let mut conns = vec![conn];
        // The schema is in place: the other connections only connect.
        if let Database::Postgres(url) = &db {
            for _ in 1..POSTGRES_CONNECTIONS {
                conns.push(Conn::postgres(url).map_err(|e| open_err(e.to_string()))?);
            }
        }
        Ok(Store {
            conns: Pool::new(conns),
        })
    }

    /// A connection of the store's, the caller's alone until the guard drops (one of several
    /// for PostgreSQL: take one at a time, never a second while holding one).
    pub(crate) fn conn(&self) -> PooledConn<'_> {
        self.conns.get()
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn().schema_version()
    }

    fn read_account(c: &mut Conn, sub: &str) -> Result<Option<AccountRow>, StoreError> {
        let Some(row) = c.query_opt(
            "SELECT balance, plan_name, plan, created_at, updated_at FROM accounts
             WHERE subscriber_id = ?1",
            params![sub],
        )?
        else {
            return Ok(None);
        };
        let plan = pb::Plan::decode(row.blob(2)?.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("plan of {sub}: {e}")))?;
        let pending = c
            .query(
                "SELECT amount, reference, due_at FROM credits
                 WHERE subscriber_id = ?1 AND applied_at IS NULL ORDER BY due_at, id",
                params![sub],
            )?
            .iter()
            .map(|r| {
                Ok(Credit {
                    amount: r.int(0)?,
                    reference: r.opt_text(1)?,
                    due_at: r.int(2)?,
                    applied_at: None,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let payer = crate::peers::charging_system::groups::payer_of(c, sub)?;
        let now = to_i64(super::now_secs());
        let buckets_left = c
            .query_one(
                "SELECT COUNT(*) FROM credit_containers WHERE subscriber_id = ?1
                    AND unit <> 'money' AND amount > 0 AND (expires_at IS NULL OR expires_at > ?2)",
                params![payer, now],
            )?
            .int(0)?
            > 0;
        Ok(Some(AccountRow {
            subscriber_id: sub.to_string(),
            balance: row.int(0)?,
            plan_name: row.text(1)?,
            plan,
            created_at: row.int(3)?,
            updated_at: row.int(4)?,
            pending,
            buckets_left,
        }))
    }

    /// Opens an account; [`StoreError::Exists`] if it is there already.
    pub fn create_account(
        &self,
        sub: &str,
        balance: i64,
        plan_name: &str,
        plan: &pb::Plan,
        now: u64,
    ) -> Result<AccountRow, StoreError> {
        let plan = plan.encode_to_vec();
        self.conn().transaction(|tx| {
            let inserted = tx.execute(
                "INSERT INTO accounts (subscriber_id, balance, plan_name, plan, created_at,
                    updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING",
                params![sub, balance, plan_name, plan, to_i64(now)],
            )?;
            if inserted == 0 {
                return Err(StoreError::Exists);
            }
            Self::read_account(tx, sub)?.ok_or(StoreError::NoAccount)
        })
    }

    pub fn account(&self, sub: &str) -> Result<Option<AccountRow>, StoreError> {
        Self::read_account(&mut self.conn(), sub)
    }

    /// Accounts after `after` in subscriber id order, at most `limit`.
    pub fn accounts(&self, after: &str, limit: usize) -> Result<Vec<AccountRow>, StoreError> {
        let mut conn = self.conn();
        let ids = conn.query(
            "SELECT subscriber_id FROM accounts WHERE subscriber_id > ?1
             ORDER BY subscriber_id LIMIT ?2",
            params![after, to_i64(limit as u64)],
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(a) = Self::read_account(&mut conn, &id.text(0)?)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    pub fn set_balance(&self, sub: &str, balance: i64, now: u64) -> Result<AccountRow, StoreError> {
        self.conn().transaction(|tx| {
            let n = tx.execute(
                "UPDATE accounts SET balance = ?2, updated_at = ?3 WHERE subscriber_id = ?1",
                params![sub, balance, to_i64(now)],
            )?;
            if n == 0 {
                return Err(StoreError::NoAccount);
            }
            Self::read_account(tx, sub)?.ok_or(StoreError::NoAccount)
        })
    }

    /// Records a payment due at `due_at`; applies it at once when `due_at <= now`. A reference
    /// seen before for the account changes nothing and returns the first credit.
    pub fn recharge(
        &self,
        sub: &str,
        amount: i64,
        reference: Option<&str>,
        due_at: u64,
        now: u64,
    ) -> Result<Recharged, StoreError> {
        self.conn().transaction(|tx| {
            let exists = tx.query_opt(
                "SELECT 1 FROM accounts WHERE subscriber_id = ?1",
                params![sub],
            )?;
            if exists.is_none() {
                return Err(StoreError::NoAccount);
            }
            if let Some(reference) = reference {
                let seen = tx.query_opt(
                    "SELECT amount, due_at, applied_at FROM credits
                     WHERE subscriber_id = ?1 AND reference = ?2",
                    params![sub, reference],
                )?;
                if let Some(r) = seen {
                    let credit = Credit {
                        amount: r.int(0)?,
                        reference: Some(reference.to_string()),
                        due_at: r.int(1)?,
                        applied_at: r.opt_int(2)?,
                    };
                    let account = Self::read_account(tx, sub)?.ok_or(StoreError::NoAccount)?;
                    return Ok(Recharged {
                        account,
                        credit,
                        duplicate: true,
                    });
                }
            }
            let (now, due_at) = (to_i64(now), to_i64(due_at));
            let applied_at = (due_at <= now).then_some(now);
            tx.execute(
                "INSERT INTO credits (subscriber_id, amount, reference, created_at, due_at,
                    applied_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![sub, amount, reference, now, due_at, applied_at],
            )?;
            if applied_at.is_some() {
                tx.execute(
                    "UPDATE accounts SET balance = balance + ?2, updated_at = ?3
                     WHERE subscriber_id = ?1",
                    params![sub, amount, now],
                )?;
            }
            let account = Self::read_account(tx, sub)?.ok_or(StoreError::NoAccount)?;
            Ok(Recharged {
                account,
                credit: Credit {
                    amount,
                    reference: reference.map(str::to_string),
                    due_at,
                    applied_at,
                },
                duplicate: false,
            })
        })
    }

    /// Applies every credit due by `now`, each exactly once even with several processes on the
    /// database; returns the subscribers whose balance changed.
    pub fn apply_due_credits(&self, now: u64) -> Result<Vec<String>, StoreError> {
        let now = to_i64(now);
        self.conn().transaction(|tx| {
            let due = tx.query(
                "UPDATE credits SET applied_at = ?1 WHERE applied_at IS NULL AND due_at <= ?1
                 RETURNING subscriber_id, amount",
                params![now],
            )?;
            let mut subscribers: Vec<String> = Vec::new();
            for row in due {
                let (sub, amount) = (row.text(0)?, row.int(1)?);
                tx.execute(
                    "UPDATE accounts SET balance = balance + ?2, updated_at = ?3
                     WHERE subscriber_id = ?1",
                    params![sub, amount, now],
                )?;
                if !subscribers.contains(&sub) {
                    subscribers.push(sub);
                }
            }
            Ok(subscribers)
        })
    }

    /// When the next pending credit falls due.
    pub fn next_due(&self) -> Result<Option<u64>, StoreError> {
        let due = self
            .conn()
            .query_one(
                "SELECT MIN(due_at) FROM credits WHERE applied_at IS NULL",
                &[],
            )?
            .opt_int(0)?;
        Ok(due.map(to_u64))
    }

    /// Starts a session, replacing one of the same id (a gateway that restarted and reused it).
    pub fn put_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        let installed =
            serde_json::to_string(&s.installed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn().transaction(|tx| {
            tx.execute(
                "DELETE FROM sessions WHERE session_id = ?1",
                params![s.session_id],
            )?;
            tx.execute(
                concat!(
                    "INSERT INTO sessions (",
                    session_columns!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                params![
                    s.session_id,
                    s.subscriber_id,
                    s.framed_ip_address,
                    s.framed_ipv6_prefix,
                    s.reauth_endpoint,
                    s.origin_host,
                    s.redirected,
                    s.lifted,
                    installed,
                    s.cc_request_number,
                    s.started_at
                ],
            )?;
            Ok(())
        })
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        self.conn()
            .query_opt(
                concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM sessions WHERE session_id = ?1"
                ),
                params![id],
            )?
            .as_ref()
            .map(session_of_row)
            .transpose()
    }

    /// Sessions after `after` in id order, of one subscriber or of all (`sub` empty).
    pub fn sessions(
        &self,
        sub: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<SessionRow>, StoreError> {
        self.conn()
            .query(
                concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM sessions WHERE (?1 = '' OR subscriber_id = ?1) AND session_id > ?2
                    ORDER BY session_id LIMIT ?3"
                ),
                params![sub, after, to_i64(limit as u64)],
            )?
            .iter()
            .map(session_of_row)
            .collect()
    }

    /// Moves a session from `from` to `to` with its new rule names, only if it is still in
    /// `from`; returns whether it moved.
    pub fn swap_redirect_state(
        &self,
        id: &str,
        from: RedirectState,
        to: RedirectState,
        installed: &[String],
    ) -> Result<bool, StoreError> {
        let installed =
            serde_json::to_string(installed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let n = self.conn().execute(
            "UPDATE sessions SET redirected = ?4, lifted = ?5, installed = ?6
             WHERE session_id = ?1 AND redirected = ?2 AND lifted = ?3",
            params![
                id,
                from.redirected,
                from.lifted,
                to.redirected,
                to.lifted,
                installed
            ],
        )?;
        Ok(n == 1)
    }

    /// Replaces the rule names of a session (after a push the gateway accepted).
    pub fn set_installed(&self, id: &str, installed: &[String]) -> Result<(), StoreError> {
        let installed =
            serde_json::to_string(installed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn().execute(
            "UPDATE sessions SET installed = ?2 WHERE session_id = ?1",
            params![id, installed],
        )?;
        Ok(())
    }

    /// Adds reported usage and records the request number; one transaction.
    pub fn add_usage(
        &self,
        id: &str,
        cc_request_number: u32,
        usage: &[UsageRow],
    ) -> Result<(), StoreError> {
        self.conn().transaction(|tx| {
            tx.execute(
                "UPDATE sessions SET cc_request_number = CASE
                    WHEN cc_request_number > ?2 THEN cc_request_number ELSE ?2 END
                 WHERE session_id = ?1",
                params![id, cc_request_number],
            )?;
            for u in usage {
                tx.execute(
                    "INSERT INTO usage (session_id, monitoring_key, total_octets, input_octets,
                        output_octets) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (session_id, monitoring_key) DO UPDATE SET
                        total_octets = usage.total_octets + excluded.total_octets,
                        input_octets = usage.input_octets + excluded.input_octets,
                        output_octets = usage.output_octets + excluded.output_octets",
                    params![
                        id,
                        u.monitoring_key,
                        to_i64(u.total_octets),
                        to_i64(u.input_octets),
                        to_i64(u.output_octets)
                    ],
                )?;
            }
            Ok(())
        })
    }

    pub fn usage(&self, id: &str) -> Result<Vec<UsageRow>, StoreError> {
        self.conn()
            .query(
                "SELECT monitoring_key, total_octets, input_octets, output_octets FROM usage
                 WHERE session_id = ?1 ORDER BY monitoring_key",
                params![id],
            )?
            .iter()
            .map(|r| {
                Ok(UsageRow {
                    monitoring_key: r.text(0)?,
                    total_octets: to_u64(r.int(1)?),
                    input_octets: to_u64(r.int(2)?),
                    output_octets: to_u64(r.int(3)?),
                })
            })
            .collect()
    }

    /// Ends a session; returns it as it was, with its usage.
    pub fn delete_session(
        &self,
        id: &str,
    ) -> Result<Option<(SessionRow, Vec<UsageRow>)>, StoreError> {
        let Some(s) = self.session(id)? else {
            return Ok(None);
        };
        let usage = self.usage(id)?;
        self.conn()
            .execute("DELETE FROM sessions WHERE session_id = ?1", params![id])?;
        Ok(Some((s, usage)))
    }

    /// Spends a nonce; false if it was spent before. Forgets nonces past their expiry, which no
    /// token can present any more.
    pub fn spend_nonce(
        &self,
        nonce: &str,
        sub: &str,
        expires: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.conn().transaction(|tx| {
            tx.execute(
                "DELETE FROM used_nonces WHERE expires < ?1",
                params![to_i64(now)],
            )?;
            let n = tx.execute(
                "INSERT INTO used_nonces (nonce, subscriber_id, expires) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![nonce, sub, to_i64(expires)],
            )?;
            Ok(n == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp(name: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("weir-store-{}-{name}.sqlite", std::process::id()));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
        }
        p
    }

    #[test]
    fn migrates_once_and_refuses_a_newer_file() {
        let path = temp("migrate");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.create_account("imsi-1", 5, "p", &pb::Plan::default(), 1)
            .unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.account("imsi-1").unwrap().unwrap().balance, 5);
        s.conn().set_schema_version(99).unwrap();
        drop(s);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn credits_wait_for_their_due_time_and_apply_once() {
        let path = temp("credits");
        let s = Store::open(&path).unwrap();
        s.create_account("imsi-1", 0, "p", &pb::Plan::default(), 100)
            .unwrap();
        let r = s.recharge("imsi-1", 500, Some("pay-1"), 130, 100).unwrap();
        assert_eq!((r.account.balance, r.duplicate), (0, false));
        assert_eq!(r.account.pending.len(), 1);
        let again = s.recharge("imsi-1", 500, Some("pay-1"), 130, 101).unwrap();
        assert!(again.duplicate);
        assert_eq!(again.account.pending.len(), 1);
        assert_eq!(s.next_due().unwrap(), Some(130));
        assert!(s.apply_due_credits(129).unwrap().is_empty());
        assert_eq!(
            s.apply_due_credits(130).unwrap(),
            vec!["imsi-1".to_string()]
        );
        assert!(s.apply_due_credits(131).unwrap().is_empty());
        let a = s.account("imsi-1").unwrap().unwrap();
        assert_eq!((a.balance, a.pending.len()), (500, 0));
        // Applied at once when nothing is to wait for.
        let now = s.recharge("imsi-1", 7, None, 200, 200).unwrap();
        assert_eq!(now.account.balance, 507);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn nonces_are_spent_once() {
        let path = temp("nonce");
        let s = Store::open(&path).unwrap();
        assert!(s.spend_nonce("n1", "imsi-1", 1000, 10).unwrap());
        assert!(!s.spend_nonce("n1", "imsi-1", 1000, 11).unwrap());
        let _ = std::fs::remove_file(&path);
    }
}
