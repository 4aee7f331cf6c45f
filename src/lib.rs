//! Weir: a userspace policy and charging enforcement gateway (3GPP PCEF / TDF).
//!
//! The packet path is sans-IO: [`engine::Engine::handle_frame`] takes bytes and the time and
//! returns a [`packet::Verdict`]. Sockets, threads and clocks live at the edges (`io`, and the
//! binary). Only `io` may use `unsafe`.
#![deny(unsafe_code)]

pub mod charging;
pub mod classify;
pub mod control;
pub mod dataplane;
pub mod engine;
pub mod io;
pub mod metrics;
pub mod packet;
pub mod peers;
pub mod policy;
pub mod proto;
pub mod redirect;
pub mod replay;
pub mod time;
pub mod token;
pub mod wire;
