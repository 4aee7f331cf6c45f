//! The edges that touch the outside world: capture files now; raw sockets and TUN later.
//! This is the only module that may use `unsafe`, each block with a `// SAFETY:` comment.

pub mod pcap;
