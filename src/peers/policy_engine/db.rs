//! One connection to the store's database, SQLite or PostgreSQL, and every place where the two
//! dialects differ.
//!
//! The store and the charging system write one body of SQL, in SQLite's spelling (`?N`
//! placeholders), that both servers run: sums are `CAST(... AS BIGINT)` (PostgreSQL's `SUM` of a
//! `BIGINT` is `NUMERIC`), flags are integers, ids come back with `RETURNING`. What cannot be
//! shared lives here: the placeholders (`?N` becomes `$N`), the migrations' column types
//! ([`postgres_ddl`]), how a write transaction starts and retries ([`Conn::transaction`]) and
//! where the schema version is kept ([`Conn::schema_version`]). Values cross as [`Param`] (in)
//! and [`Value`] (out), so no caller names either driver.

use super::store::StoreError;
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// Where the store lives, as the configuration names it.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(std::path::PathBuf),
    /// A `postgres://` or `postgresql://` URL (libpq's syntax; may carry a password).
    Postgres(String),
}

impl From<&std::path::Path> for Database {
    fn from(p: &std::path::Path) -> Database {
        Database::Sqlite(p.to_path_buf())
    }
}

impl From<&std::path::PathBuf> for Database {
    fn from(p: &std::path::PathBuf) -> Database {
        Database::Sqlite(p.clone())
    }
}

impl From<&Database> for Database {
    fn from(d: &Database) -> Database {
        d.clone()
    }
}

impl Database {
    /// Whether `text` names a PostgreSQL database rather than a file.
    pub fn is_postgres_url(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }
}

/// Shows the database with any password replaced by `***`, so it can be logged and put in
/// errors.
impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({self})")
    }
}

/// `url` with the password of its user part and any `password=` parameter replaced by `***`.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    if scheme.is_empty() {
        format!("{authority}{tail}")
    } else {
        format!("{scheme}://{authority}{tail}")
    }
}

/// A value handed to a statement.
#[derive(Clone, Copy, Debug)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// What can be bound to a placeholder.
pub trait Bind {
    fn bind(&self) -> Param<'_>;
}

impl Bind for i64 {
    fn bind(&self) -> Param<'_> {
        Param::Int(*self)
    }
}
impl Bind for u32 {
    fn bind(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}
impl Bind for bool {
    fn bind(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}
impl Bind for str {
    fn bind(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl Bind for String {
    fn bind(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl Bind for Vec<u8> {
    fn bind(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl<T: Bind> Bind for Option<T> {
    fn bind(&self) -> Param<'_> {
        self.as_ref().map_or(Param::Null, Bind::bind)
    }
}
impl<T: Bind + ?Sized> Bind for &T {
    fn bind(&self) -> Param<'_> {
        (**self).bind()
    }
}

/// The parameters of a statement, in placeholder order: `params![sub, amount]`.
#[macro_export]
macro_rules! params {
    ($($x:expr),* $(,)?) => {
        &[$($crate::peers::policy_engine::db::Bind::bind(&$x)),*][..]
    };
}
pub use crate::params;

/// A value read back.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// One result row.
#[derive(Clone, Debug)]
pub struct Row(Vec<Value>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Value, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {i} in the row")))
    }

    fn wrong(i: usize, want: &str, got: &Value) -> StoreError {
        StoreError::Corrupt(format!("column {i} holds {got:?}, not {want}"))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.cell(i)? {
            Value::Null => Ok(None),
            Value::Int(n) => Ok(Some(*n)),
            v => Err(Self::wrong(i, "an integer", v)),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?
            .ok_or_else(|| Self::wrong(i, "an integer", &Value::Null))
    }

    pub fn u32(&self, i: usize) -> Result<u32, StoreError> {
        let n = self.int(i)?;
        u32::try_from(n).map_err(|_| Self::wrong(i, "a 32-bit count", &Value::Int(n)))
    }

    pub fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.int(i)? != 0)
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.cell(i)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            v => Err(Self::wrong(i, "text", v)),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?
            .ok_or_else(|| Self::wrong(i, "text", &Value::Null))
    }

    pub fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.cell(i)? {
            Value::Blob(b) => Ok(b.clone()),
            v => Err(Self::wrong(i, "bytes", v)),
        }
    }
}

/// How many times a PostgreSQL write transaction is tried when concurrent ones conflict.
const ATTEMPTS: u32 = 50;

/// A PostgreSQL connection with its prepared statements.
pub struct Pg {
    client: Option<postgres::Client>,
    statements: HashMap<&'static str, postgres::Statement>,
    /// A statement failed with a serialization failure or deadlock in the open transaction:
    /// the transaction is to be tried again.
    conflict: bool,
}

impl Drop for Pg {
    fn drop(&mut self) {
        // Closing blocks on the client's own runtime, which tokio refuses on an async thread:
        // close it on a thread of its own there.
        if let Some(client) = self.client.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("pg-close".into())
                    .spawn(move || drop(client));
            }
        }
    }
}

/// The open connection.
pub enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Pg>),
}

/// `?N` placeholders as PostgreSQL spells them (`$N`). The SQL here never has a `?` in a
/// string literal.
fn postgres_placeholders(sql: &str) -> String {
    sql.replace('?', "$")
}

/// A migration in PostgreSQL's types: SQLite's row-id primary keys become identity columns,
/// `INTEGER` (SQLite's 64-bit integer) `BIGINT`, `BLOB` `BYTEA`, and `WITHOUT ROWID` (a SQLite
/// storage hint) goes.
pub fn postgres_ddl(sql: &str) -> String {
    sql.replace(
        "INTEGER PRIMARY KEY",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    )
    .replace("INTEGER", "BIGINT")
    .replace("BLOB", "BYTEA")
    .replace(") WITHOUT ROWID", ")")
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(n) => ValueRef::Integer(n),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
            Param::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn sqlite_row(r: &rusqlite::Row<'_>, n: usize) -> Result<Row, StoreError> {
    use rusqlite::types::ValueRef;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(match r.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Int(n),
            ValueRef::Real(x) => {
                return Err(StoreError::Corrupt(format!("column {i} holds a real, {x}")))
            }
            ValueRef::Text(t) => Value::Text(
                String::from_utf8(t.to_vec())
                    .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))?,
            ),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        });
    }
    Ok(Row(out))
}

/// `p` as the type PostgreSQL inferred for its placeholder.
fn pg_param<'a>(p: &Param<'a>, ty: &Type) -> Result<Box<dyn ToSql + Sync + 'a>, StoreError> {
    let bad = || StoreError::Corrupt(format!("cannot bind {p:?} as {ty}"));
    Ok(match *p {
        // A NULL still has to be of the placeholder's type.
        Param::Null if matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR) => {
            Box::new(None::<&str>)
        }
        Param::Null if *ty == Type::BYTEA => Box::new(None::<&[u8]>),
        Param::Null if *ty == Type::INT4 => Box::new(None::<i32>),
        Param::Null if *ty == Type::INT2 => Box::new(None::<i16>),
        Param::Null if *ty == Type::BOOL => Box::new(None::<bool>),
        Param::Null => Box::new(None::<i64>),
        Param::Int(n) if *ty == Type::INT8 => Box::new(n),
        Param::Int(n) if *ty == Type::INT4 => Box::new(i32::try_from(n).map_err(|_| bad())?),
        Param::Int(n) if *ty == Type::INT2 => Box::new(i16::try_from(n).map_err(|_| bad())?),
        Param::Int(n) if *ty == Type::BOOL => Box::new(n != 0),
        Param::Text(s) if matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR) => Box::new(s),
        Param::Blob(b) if *ty == Type::BYTEA => Box::new(b),
        _ => return Err(bad()),
    })
}

fn pg_row(r: &postgres::Row) -> Result<Row, StoreError> {
    let mut out = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let ty = c.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?
                .map(|n| Value::Int(n.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?
                .map(|n| Value::Int(n.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?
                .map(|b| Value::Int(b.into()))
        } else if matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME) {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else if *ty == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
        } else {
            return Err(StoreError::Corrupt(format!(
                "column {} is of type {ty}, which the store does not read",
                c.name()
            )));
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

impl Pg {
    fn client(&mut self) -> &mut postgres::Client {
        // Only Drop takes the client out.
        self.client
            .as_mut()
            .expect("the client is there until drop")
    }

    fn noted<T>(&mut self, r: Result<T, postgres::Error>) -> Result<T, StoreError> {
        r.map_err(|e| {
            if matches!(
                e.code(),
                Some(&SqlState::T_R_SERIALIZATION_FAILURE | &SqlState::T_R_DEADLOCK_DETECTED)
            ) {
                self.conflict = true;
            }
            StoreError::from(e)
        })
    }

    fn statement(&mut self, sql: &'static str) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let prepared = self.client().prepare(&postgres_placeholders(sql));
        let s = self.noted(prepared)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    fn run(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        let stmt = self.statement(sql)?;
        let boxed = params
            .iter()
            .zip(stmt.params())
            .map(|(p, ty)| pg_param(p, ty))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let r = self.client().query(&stmt, &refs);
        self.noted(r)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        let r = self.client().batch_execute(sql);
        self.noted(r)
    }
}

impl Conn {
    /// Connects to PostgreSQL (no TLS: a local socket or a trusted network).
    pub fn postgres(url: &str) -> Result<Conn, postgres::Error> {
        let client = postgres::Client::connect(url, postgres::NoTls)?;
        Ok(Conn::Postgres(Box::new(Pg {
            client: Some(client),
            statements: HashMap::new(),
            conflict: false,
        })))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Conn::Postgres(_))
    }

    /// Runs a statement; returns the rows it changed.
    pub fn execute(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<usize, StoreError> {
        match self {
            Conn::Sqlite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params))?),
            Conn::Postgres(pg) => {
                let stmt = pg.statement(sql)?;
                let boxed = params
                    .iter()
                    .zip(stmt.params())
                    .map(|(p, ty)| pg_param(p, ty))
                    .collect::<Result<Vec<_>, _>>()?;
                let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
                let r = pg.client().execute(&stmt, &refs);
                Ok(usize::try_from(pg.noted(r)?).unwrap_or(usize::MAX))
            }
        }
    }

    /// Every row of a query (or of a statement with `RETURNING`).
    pub fn query(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let n = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(sqlite_row(r, n)?);
                }
                Ok(out)
            }
            Conn::Postgres(pg) => pg.run(sql, params)?.iter().map(pg_row).collect(),
        }
    }

    /// The first row, if any.
    pub fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row, which the query always has (an aggregate).
    pub fn query_one(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from: {sql}")))
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(pg) => pg.batch(sql),
        }
    }

    /// Ends any transaction left open (after a panic inside one), ignoring that none was.
    pub fn rollback_quietly(&mut self) {
        let _ = self.batch("ROLLBACK");
    }

    /// Runs `f` as one write transaction, committed when it returns `Ok`, rolled back when it
    /// returns `Err`.
    ///
    /// SQLite: `BEGIN IMMEDIATE` takes the file's write lock up front, so writers queue (for the
    /// busy timeout) and never deadlock upgrading a read lock. PostgreSQL: `SERIALIZABLE`, so
    /// every transaction sees and leaves a state some serial order would; one that conflicts
    /// with a concurrent one fails with a serialization failure (or a deadlock) and `f` runs
    /// again from the start, a little later, up to [`ATTEMPTS`] times.
    pub fn transaction<T, E: From<StoreError>>(
        &mut self,
        mut f: impl FnMut(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let begin = match self {
            Conn::Sqlite(_) => "BEGIN IMMEDIATE",
            Conn::Postgres(_) => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Conn::Postgres(pg) = self {
                pg.conflict = false;
            }
            self.batch(begin)?;
            let result = f(self);
            let outcome = match result {
                Ok(v) => match self.batch("COMMIT") {
                    Ok(()) => return Ok(v),
                    Err(e) => Err(E::from(e)),
                },
                Err(e) => Err(e),
            };
            // After a failed COMMIT PostgreSQL has ended the transaction already and SQLite
            // may have; a ROLLBACK that finds none is harmless.
            let _ = self.batch("ROLLBACK");
            let conflict = matches!(self, Conn::Postgres(pg) if pg.conflict);
            if !conflict || attempt >= ATTEMPTS {
                return outcome;
            }
            std::thread::sleep(backoff(attempt));
        }
    }

    /// The schema version: SQLite keeps it in `PRAGMA user_version`, PostgreSQL in a table of
    /// one row (created here, at 0, when missing).
    pub fn schema_version(&mut self) -> Result<i64, StoreError> {
        match self {
            Conn::Sqlite(c) => Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?),
            Conn::Postgres(_) => {
                self.batch(
                    "CREATE TABLE IF NOT EXISTS weir_schema (version BIGINT NOT NULL);
                     INSERT INTO weir_schema (version)
                        SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM weir_schema);",
                )?;
                self.query_one("SELECT version FROM weir_schema", &[])?
                    .int(0)
            }
        }
    }

    pub fn set_schema_version(&mut self, version: i64) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => Ok(c.pragma_update(None, "user_version", version)?),
            Conn::Postgres(_) => {
                self.execute("UPDATE weir_schema SET version = ?1", params![version])?;
                Ok(())
            }
        }
    }

    /// Runs the migrations from the stored version on, in one transaction; refuses a schema
    /// newer than `migrations` knows. Several processes may open the same database at once:
    /// SQLite's write lock, or a PostgreSQL advisory lock, lets one migrate and the others then
    /// find the schema current.
    pub fn migrate(&mut self, migrations: &[&str], target: &str) -> Result<(), StoreError> {
        // Migrations run as plain transactions (DDL under SERIALIZABLE gains nothing); the lock
        // orders concurrent openers.
        match self {
            Conn::Sqlite(_) => self.batch("BEGIN IMMEDIATE")?,
            Conn::Postgres(_) => self.batch("BEGIN; SELECT pg_advisory_xact_lock(2003133810)")?,
        }
        let result = (|| {
            let version = self.schema_version()?;
            let known = migrations.len();
            if version > known as i64 {
                return Err(StoreError::TooNew {
                    target: target.to_string(),
                    found: version,
                    known,
                });
            }
            for (i, sql) in migrations.iter().enumerate().skip(version as usize) {
                match self {
                    Conn::Sqlite(_) => self.batch(sql)?,
                    Conn::Postgres(_) => self.batch(&postgres_ddl(sql))?,
                }
                self.set_schema_version((i + 1) as i64)?;
                tracing::info!(database = %target, version = i + 1, "database migrated");
            }
            Ok(())
        })();
        match result {
            Ok(()) => self.batch("COMMIT"),
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// How long to wait before attempt `attempt + 1`: a few milliseconds, growing, with jitter so
/// two conflicting transactions do not meet again.
fn backoff(attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let base = 1u64 << attempt.min(6);
    Duration::from_micros(base * 500 + u64::from(nanos % 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://weir:s3cret@db.example:5432/weir"),
            "postgres://weir:***@db.example:5432/weir"
        );
        assert_eq!(
            redact("postgresql://weir@%2Frun%2Fpg/weir?password=s3cret&sslmode=disable"),
            "postgresql://weir@%2Frun%2Fpg/weir?password=***&sslmode=disable"
        );
        assert_eq!(
            redact("postgres://db.example/weir"),
            "postgres://db.example/weir"
        );
        let d = Database::Postgres("postgres://u:p@h/d".into());
        assert_eq!(
            format!("{d} {d:?}"),
            "postgres://u:***@h/d Database(postgres://u:***@h/d)"
        );
    }

    #[test]
    fn migrations_speak_postgres() {
        assert_eq!(
            postgres_ddl("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, b BLOB) WITHOUT ROWID;"),
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, b BYTEA);"
        );
        assert_eq!(
            postgres_placeholders("a = ?1 AND b = ?12"),
            "a = $1 AND b = $12"
        );
    }
}
