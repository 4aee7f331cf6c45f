//! Flow-Description (TS 29.212 §5.4.2), i.e. the IPFilterRule of RFC 6733 §4.3:
//! `permit out 6 from 10.0.0.0/8 80,443,8000-8080 to assigned 1024-65535`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// `in` (from the UE) or `out` (towards the UE). TS 29.212 uses `out` with `from` = the remote
/// side and `to` = the UE; uplink packets are matched with source and destination swapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterDirection {
    In,
    Out,
}

/// An address or prefix with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl IpPrefix {
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) & mask == u32::from(p)
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(p)
            }
            _ => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AddressMatch {
    Any,
    /// The UE's own address (`assigned`).
    Assigned,
    Prefix(IpPrefix),
}

/// An inclusive port range; a single port has `lo == hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

/// A parsed Flow-Description. An empty port list means any port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowDescription {
    pub direction: FilterDirection,
    /// `None` for `ip` (any protocol).
    pub protocol: Option<u8>,
    pub src: AddressMatch,
    pub src_ports: Vec<PortRange>,
    pub dst: AddressMatch,
    pub dst_ports: Vec<PortRange>,
}

/// What is wrong with a Flow-Description and where (1-based column of the offending token).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Flow-Description: {message} '{token}' at column {column}")]
pub struct FlowDescriptionError {
    pub column: usize,
    pub token: String,
    pub message: String,
}

impl FromStr for FlowDescription {
    type Err = FlowDescriptionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Err(FlowDescriptionError {
            column: 1,
            token: s.to_string(),
            message: "not implemented".to_string(),
        })
    }
}

impl fmt::Display for FlowDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "permit")
    }
}
