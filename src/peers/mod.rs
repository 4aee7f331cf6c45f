//! Reference peers the gateway talks to or stands beside: the recharge portal, the policy
//! engine and the charging system it serves beside itself.
//!
//! These are small servers for labs and tests, not part of the data path; they share the
//! gateway's configuration file and its token format.

pub mod charging_system;
pub mod policy_engine;
pub mod portal;
