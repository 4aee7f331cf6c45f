//! The edges that touch the outside world: capture files, AF_PACKET rings with fanout, AF_XDP
//! sockets with their steering program, and multi-queue TUN. This is the only module that may use
//! `unsafe` (in `afpacket`, `xdp`, `tun` and `sys`), each block with a `// SAFETY:` comment.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod afpacket;
pub mod bpf;
pub mod pcap;
pub mod sys;
pub mod tun;
pub mod xdp;
