//! The store's connections: one for SQLite, several for PostgreSQL, handed out one caller at a
//! time.
//!
//! SQLite takes one write lock per file, so a second connection would only wait for it (and
//! make writers race for the busy timeout); the store keeps one. PostgreSQL runs writers side by
//! side, each `SERIALIZABLE` transaction tried again when it conflicts, so the store keeps
//! [`POSTGRES_CONNECTIONS`] and as many requests as that run at once. A caller borrows a
//! connection for as long as it holds the guard; what it must never do is borrow a second one
//! while holding the first (with all of them borrowed that way it would wait for ever).

use super::db::Conn;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex};

/// Connections the store opens to PostgreSQL: enough that requests of different subscribers
/// overlap (the server works on one while the next travels the socket), few enough that the
/// retries of conflicting `SERIALIZABLE` transactions stay rare.
pub const POSTGRES_CONNECTIONS: usize = 8;

pub struct Pool {
    idle: Mutex<Vec<Conn>>,
    returned: Condvar,
}

impl Pool {
    pub fn new(conns: Vec<Conn>) -> Pool {
        Pool {
            idle: Mutex::new(conns),
            returned: Condvar::new(),
        }
    }

    /// A connection, waiting while every one is borrowed.
    pub fn get(&self) -> PooledConn<'_> {
        // A panic while the lock is held leaves only a list of idle connections behind, which
        // is still right, so a poisoned lock is used as it is.
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(conn) = idle.pop() {
                return PooledConn {
                    pool: self,
                    conn: Some(conn),
                };
            }
            idle = self.returned.wait(idle).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A borrowed connection; it goes back to the pool on drop.
pub struct PooledConn<'a> {
    pool: &'a Pool,
    /// Only Drop takes it out.
    conn: Option<Conn>,
}

impl Deref for PooledConn<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("the connection is there until drop")
    }
}

impl DerefMut for PooledConn<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("the connection is there until drop")
    }
}

impl Drop for PooledConn<'_> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // A panic in the middle of a transaction would leave it open on this connection, and
        // the next borrower's BEGIN would run inside it: end it here. Without one open the
        // ROLLBACK is a harmless warning.
        if std::thread::panicking() {
            conn.rollback_quietly();
        }
        self.pool
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        self.pool.returned.notify_one();
    }
}
