//! Reference peers the gateway talks to or stands beside: today the recharge portal.
//!
//! These are small servers for labs and tests, not part of the data path; they share the
//! gateway's configuration file and its token format.

pub mod portal;
