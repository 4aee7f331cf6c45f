//! Flow-Description (TS 29.212 §5.4.2), i.e. the IPFilterRule of RFC 6733 §4.3:
//! `permit out 6 from 10.0.0.0/8 80,443,8000-8080 to assigned 1024-65535`.
//!
//! This module owns the parser and the canonical text form. It accepts only what TS 29.212
//! allows a PCRF to send (`permit`, no options, no negation) so that a parsed
//! [`FlowDescription`] is a plain value the classifier can trust without re-checking.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
    /// Builds a prefix, clearing host bits; `None` if `len` exceeds the address width.
    pub fn new(addr: IpAddr, len: u8) -> Option<IpPrefix> {
        if len > Self::max_len(addr) {
            return None;
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & v6_mask(len))),
        };
        Some(IpPrefix { addr, len })
    }

    /// A single address as a full-length prefix.
    pub fn host(addr: IpAddr) -> IpPrefix {
        IpPrefix {
            addr,
            len: Self::max_len(addr),
        }
    }

    /// 32 for IPv4, 128 for IPv6.
    pub fn max_len(addr: IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// Parses `addr` or `addr/len`. With `strict`, an address with host bits set below `len` is
    /// refused (a configured pool `10.45.0.1/16` is more likely a typo than intent).
    pub fn parse(s: &str, strict: bool) -> Result<IpPrefix, String> {
        let (addr_text, len_text) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr =
            parse_ip(addr_text).ok_or_else(|| format!("'{s}' is not an IPv4 or IPv6 address"))?;
        let max = Self::max_len(addr);
        let len = match len_text {
            None => max,
            Some(l) => parse_decimal(l)
                .and_then(|n| u8::try_from(n).ok())
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("prefix length '{l}' in '{s}' must be 0-{max}"))?,
        };
        let prefix = IpPrefix::new(addr, len)
            .ok_or_else(|| format!("prefix length in '{s}' must be 0-{max}"))?;
        if strict && prefix.addr != addr {
            return Err(format!("'{s}' has host bits set; did you mean {prefix}?"));
        }
        Ok(prefix)
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(p), IpAddr::V4(a)) => u32::from(a) & v4_mask(self.len) == u32::from(p),
            (IpAddr::V6(p), IpAddr::V6(a)) => u128::from(a) & v6_mask(self.len) == u128::from(p),
            _ => false,
        }
    }

    /// Whether every address of `other` is inside `self`.
    pub fn covers(&self, other: &IpPrefix) -> bool {
        self.len <= other.len && self.contains(other.addr)
    }

    /// Whether the two prefixes share at least one address.
    pub fn overlaps(&self, other: &IpPrefix) -> bool {
        self.covers(other) || other.covers(self)
    }
}

fn v4_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn v6_mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// IPv6 is told apart by its colon so that the error can name the family the user meant.
fn parse_ip(s: &str) -> Option<IpAddr> {
    if s.contains(':') {
        s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// Plain decimal digits only: `u32::from_str` would also take a leading `+`.
fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == Self::max_len(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
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

impl fmt::Display for AddressMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressMatch::Any => f.write_str("any"),
            AddressMatch::Assigned => f.write_str("assigned"),
            AddressMatch::Prefix(p) => write!(f, "{p}"),
        }
    }
}

/// An inclusive port range; a single port has `lo == hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
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

/// What is wrong with a Flow-Description and where. `column` is the 1-based byte column of the
/// offending token; a missing token is reported one past the end with an empty `token`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Flow-Description: {message}, found {} at column {column}", found(.token))]
pub struct FlowDescriptionError {
    pub column: usize,
    pub token: String,
    pub message: String,
}

fn found(token: &str) -> String {
    if token.is_empty() {
        "nothing".to_string()
    } else {
        format!("'{token}'")
    }
}

/// Protocol names accepted besides numbers, with their IANA numbers.
const PROTOCOL_NAMES: &[(&str, u8)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("tcp", 6),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("sctp", 132),
];

/// A whitespace-separated word and the byte offset where it starts.
#[derive(Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    offset: usize,
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Option<Token<'a>> {
        let rest = &self.input[self.pos..];
        let skipped = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_whitespace())
                .len();
        let start = self.pos + skipped;
        let rest = &self.input[start..];
        if rest.is_empty() {
            self.pos = start;
            return None;
        }
        let len = rest
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        self.pos = start + len;
        Some(Token {
            text: &rest[..len],
            offset: start,
        })
    }

    fn peek(&self) -> Option<Token<'a>> {
        Parser {
            input: self.input,
            pos: self.pos,
        }
        .next()
    }

    /// The next token, or an error at end of input saying what was expected.
    fn require(&mut self, what: &str) -> Result<Token<'a>, FlowDescriptionError> {
        self.next().ok_or_else(|| FlowDescriptionError {
            column: self.input.len() + 1,
            token: String::new(),
            message: format!("expected {what}"),
        })
    }

    fn keyword(&mut self, word: &str) -> Result<(), FlowDescriptionError> {
        let what = format!("'{word}'");
        let token = self.require(&what)?;
        if token.text == word {
            Ok(())
        } else {
            Err(error(token, format!("expected {what}")))
        }
    }
}

fn error(token: Token<'_>, message: impl Into<String>) -> FlowDescriptionError {
    FlowDescriptionError {
        column: token.offset + 1,
        token: token.text.to_string(),
        message: message.into(),
    }
}

fn parse_protocol(token: Token<'_>) -> Result<Option<u8>, FlowDescriptionError> {
    let text = token.text;
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match parse_decimal(text) {
            Some(0) => Err(error(
                token,
                "protocol 0 is not allowed; write 'ip' for any protocol",
            )),
            Some(n) => u8::try_from(n)
                .map(Some)
                .map_err(|_| error(token, "protocol number must be 1-255")),
            None => Err(error(token, "protocol number must be 1-255")),
        };
    }
    if text.eq_ignore_ascii_case("ip") {
        return Ok(None);
    }
    PROTOCOL_NAMES
        .iter()
        .find(|(name, _)| text.eq_ignore_ascii_case(name))
        .map(|&(_, number)| Some(number))
        .ok_or_else(|| {
            error(
                token,
                "expected a protocol number 1-255 or one of ip, icmp, igmp, tcp, udp, gre, esp, \
                 ah, icmpv6, sctp",
            )
        })
}

fn parse_address(token: Token<'_>, side: &str) -> Result<AddressMatch, FlowDescriptionError> {
    match token.text {
        "any" => return Ok(AddressMatch::Any),
        "assigned" => return Ok(AddressMatch::Assigned),
        _ => {}
    }
    if token.text.starts_with('!') {
        return Err(error(
            token,
            "negated addresses ('!') are not allowed in a Flow-Description",
        ));
    }
    IpPrefix::parse(token.text, false)
        .map(AddressMatch::Prefix)
        .map_err(|reason| {
            error(
                token,
                format!("expected the {side} address: 'any', 'assigned', or an IPv4/IPv6 address with optional /length ({reason})"),
            )
        })
}

/// Ports follow an address only when the next word starts with a digit; anything else is the
/// next keyword (or a mistake the caller reports in its own words).
fn parse_ports_if_present(p: &mut Parser<'_>) -> Result<Vec<PortRange>, FlowDescriptionError> {
    match p.peek() {
        Some(t) if t.text.starts_with(|c: char| c.is_ascii_digit()) => {
            p.next();
            parse_port_list(t)
        }
        _ => Ok(Vec::new()),
    }
}

fn parse_port_list(token: Token<'_>) -> Result<Vec<PortRange>, FlowDescriptionError> {
    let mut ranges = Vec::new();
    let mut offset = token.offset;
    for element in token.text.split(',') {
        let here = Token {
            text: element,
            offset,
        };
        offset += element.len() + 1;
        if element.is_empty() {
            return Err(error(here, "expected a port or port range in the list"));
        }
        let (lo, hi) = match element.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (element, element),
        };
        let port = |s: &str| {
            parse_decimal(s)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n != 0)
        };
        let (Some(lo), Some(hi)) = (port(lo), port(hi)) else {
            return Err(error(here, "expected a port 1-65535 or a range low-high"));
        };
        if lo > hi {
            return Err(error(here, "port range must be written low-high"));
        }
        ranges.push(PortRange { lo, hi });
    }
    Ok(ranges)
}

impl FromStr for FlowDescription {
    type Err = FlowDescriptionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut p = Parser { input: s, pos: 0 };

        let action = p.require("'permit'")?;
        match action.text {
            "permit" => {}
            "deny" => {
                return Err(error(
                    action,
                    "only 'permit' is allowed (TS 29.212 §5.4.2); block traffic with a \
                     DISABLED Flow-Status instead of 'deny'",
                ))
            }
            _ => return Err(error(action, "expected 'permit'")),
        }

        let dir = p.require("direction 'in' or 'out'")?;
        let direction = match dir.text {
            "in" => FilterDirection::In,
            "out" => FilterDirection::Out,
            _ => return Err(error(dir, "expected direction 'in' or 'out'")),
        };

        let protocol = parse_protocol(p.require("a protocol number or name")?)?;
        p.keyword("from")?;
        let src = parse_address(p.require("the source address")?, "source")?;
        let src_ports = parse_ports_if_present(&mut p)?;
        p.keyword("to")?;
        let dst_token = p.require("the destination address")?;
        let dst = parse_address(dst_token, "destination")?;
        if let (AddressMatch::Prefix(a), AddressMatch::Prefix(b)) = (&src, &dst) {
            if a.addr.is_ipv4() != b.addr.is_ipv4() {
                return Err(error(
                    dst_token,
                    "source and destination must be the same address family (IPv4 or IPv6)",
                ));
            }
        }
        let dst_ports = parse_ports_if_present(&mut p)?;
        if let Some(extra) = p.next() {
            return Err(error(
                extra,
                "expected the end of the Flow-Description; options such as frag, established \
                 or setup are not allowed",
            ));
        }

        Ok(FlowDescription {
            direction,
            protocol,
            src,
            src_ports,
            dst,
            dst_ports,
        })
    }
}

fn write_ports(f: &mut fmt::Formatter<'_>, ports: &[PortRange]) -> fmt::Result {
    for (i, range) in ports.iter().enumerate() {
        f.write_str(if i == 0 { " " } else { "," })?;
        write!(f, "{range}")?;
    }
    Ok(())
}

/// The canonical form: protocol as a number (or `ip`), prefixes without host bits and without a
/// full-length `/32` or `/128`, so equal filters print equally.
impl fmt::Display for FlowDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = match self.direction {
            FilterDirection::In => "in",
            FilterDirection::Out => "out",
        };
        write!(f, "permit {direction} ")?;
        match self.protocol {
            Some(n) => write!(f, "{n}")?,
            None => f.write_str("ip")?,
        }
        write!(f, " from {}", self.src)?;
        write_ports(f, &self.src_ports)?;
        write!(f, " to {}", self.dst)?;
        write_ports(f, &self.dst_ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(s: &str, len: u8) -> AddressMatch {
        AddressMatch::Prefix(IpPrefix {
            addr: IpAddr::V4(s.parse().unwrap()),
            len,
        })
    }

    fn v6(s: &str, len: u8) -> AddressMatch {
        AddressMatch::Prefix(IpPrefix {
            addr: IpAddr::V6(s.parse().unwrap()),
            len,
        })
    }

    fn ports(list: &[(u16, u16)]) -> Vec<PortRange> {
        list.iter().map(|&(lo, hi)| PortRange { lo, hi }).collect()
    }

    fn fd(
        direction: FilterDirection,
        protocol: Option<u8>,
        src: AddressMatch,
        src_ports: &[(u16, u16)],
        dst: AddressMatch,
        dst_ports: &[(u16, u16)],
    ) -> FlowDescription {
        FlowDescription {
            direction,
            protocol,
            src,
            src_ports: ports(src_ports),
            dst,
            dst_ports: ports(dst_ports),
        }
    }

    use AddressMatch::{Any, Assigned};
    use FilterDirection::{In, Out};

    #[test]
    fn valid_vectors() {
        let cases: Vec<(&str, FlowDescription, &str)> = vec![
            (
                "permit out 6 from 10.0.0.0/8 80,443,8000-8080 to assigned 1024-65535",
                fd(
                    Out,
                    Some(6),
                    v4("10.0.0.0", 8),
                    &[(80, 80), (443, 443), (8000, 8080)],
                    Assigned,
                    &[(1024, 65535)],
                ),
                "permit out 6 from 10.0.0.0/8 80,443,8000-8080 to assigned 1024-65535",
            ),
            (
                "permit out 17 from any to assigned",
                fd(Out, Some(17), Any, &[], Assigned, &[]),
                "permit out 17 from any to assigned",
            ),
            (
                "permit in ip from assigned to any",
                fd(In, None, Assigned, &[], Any, &[]),
                "permit in ip from assigned to any",
            ),
            (
                "permit out tcp from any 80 to assigned",
                fd(Out, Some(6), Any, &[(80, 80)], Assigned, &[]),
                "permit out 6 from any 80 to assigned",
            ),
            (
                "permit out UDP from any 53 to assigned",
                fd(Out, Some(17), Any, &[(53, 53)], Assigned, &[]),
                "permit out 17 from any 53 to assigned",
            ),
            (
                "permit out icmp from any to assigned",
                fd(Out, Some(1), Any, &[], Assigned, &[]),
                "permit out 1 from any to assigned",
            ),
            (
                "permit out igmp from any to any",
                fd(Out, Some(2), Any, &[], Any, &[]),
                "permit out 2 from any to any",
            ),
            (
                "permit out gre from 192.0.2.1 to assigned",
                fd(Out, Some(47), v4("192.0.2.1", 32), &[], Assigned, &[]),
                "permit out 47 from 192.0.2.1 to assigned",
            ),
            (
                "permit out esp from any to assigned",
                fd(Out, Some(50), Any, &[], Assigned, &[]),
                "permit out 50 from any to assigned",
            ),
            (
                "permit out AH from any to assigned",
                fd(Out, Some(51), Any, &[], Assigned, &[]),
                "permit out 51 from any to assigned",
            ),
            (
                "permit out ipv6-icmp from ::/0 to assigned",
                fd(Out, Some(58), v6("::", 0), &[], Assigned, &[]),
                "permit out 58 from ::/0 to assigned",
            ),
            (
                "permit out icmpv6 from 2001:db8::/32 to assigned",
                fd(Out, Some(58), v6("2001:db8::", 32), &[], Assigned, &[]),
                "permit out 58 from 2001:db8::/32 to assigned",
            ),
            (
                "permit out sctp from any 2905 to assigned",
                fd(Out, Some(132), Any, &[(2905, 2905)], Assigned, &[]),
                "permit out 132 from any 2905 to assigned",
            ),
            (
                "permit out IP from any to assigned",
                fd(Out, None, Any, &[], Assigned, &[]),
                "permit out ip from any to assigned",
            ),
            (
                "permit out 255 from any to any",
                fd(Out, Some(255), Any, &[], Any, &[]),
                "permit out 255 from any to any",
            ),
            (
                "permit out 6 from 10.1.2.3/8 to 10.45.0.7/32",
                fd(
                    Out,
                    Some(6),
                    v4("10.0.0.0", 8),
                    &[],
                    v4("10.45.0.7", 32),
                    &[],
                ),
                "permit out 6 from 10.0.0.0/8 to 10.45.0.7",
            ),
            (
                "permit out 6 from 0.0.0.0/0 to assigned",
                fd(Out, Some(6), v4("0.0.0.0", 0), &[], Assigned, &[]),
                "permit out 6 from 0.0.0.0/0 to assigned",
            ),
            (
                "permit out 6 from 2001:0db8:0000:0000:0000:0000:0000:0001/128 443 to assigned",
                fd(
                    Out,
                    Some(6),
                    v6("2001:db8::1", 128),
                    &[(443, 443)],
                    Assigned,
                    &[],
                ),
                "permit out 6 from 2001:db8::1 443 to assigned",
            ),
            (
                "permit out 17 from 2001:db8:aaaa:bbbb:cccc::1/48 to 2001:db8:45::/48 5060-5061",
                fd(
                    Out,
                    Some(17),
                    v6("2001:db8:aaaa::", 48),
                    &[],
                    v6("2001:db8:45::", 48),
                    &[(5060, 5061)],
                ),
                "permit out 17 from 2001:db8:aaaa::/48 to 2001:db8:45::/48 5060-5061",
            ),
            (
                "permit in 6 from assigned 1024-65535 to 198.51.100.0/24 80,443",
                fd(
                    In,
                    Some(6),
                    Assigned,
                    &[(1024, 65535)],
                    v4("198.51.100.0", 24),
                    &[(80, 80), (443, 443)],
                ),
                "permit in 6 from assigned 1024-65535 to 198.51.100.0/24 80,443",
            ),
            (
                "permit in 17 from assigned to 2001:db8::53 53",
                fd(
                    In,
                    Some(17),
                    Assigned,
                    &[],
                    v6("2001:db8::53", 128),
                    &[(53, 53)],
                ),
                "permit in 17 from assigned to 2001:db8::53 53",
            ),
            (
                "permit out ip from any 1-65535 to assigned 1",
                fd(Out, None, Any, &[(1, 65535)], Assigned, &[(1, 1)]),
                "permit out ip from any 1-65535 to assigned 1",
            ),
            (
                "permit out 6 from any 80-80 to assigned",
                fd(Out, Some(6), Any, &[(80, 80)], Assigned, &[]),
                "permit out 6 from any 80 to assigned",
            ),
            (
                "  permit   out\t6 from any   to assigned  ",
                fd(Out, Some(6), Any, &[], Assigned, &[]),
                "permit out 6 from any to assigned",
            ),
            (
                "permit out 6 from assigned to assigned",
                fd(Out, Some(6), Assigned, &[], Assigned, &[]),
                "permit out 6 from assigned to assigned",
            ),
            (
                "permit out 6 from any to ::ffff:192.0.2.1",
                fd(Out, Some(6), Any, &[], v6("::ffff:192.0.2.1", 128), &[]),
                "permit out 6 from any to ::ffff:192.0.2.1",
            ),
            (
                "permit out 6 from 2001:db8::/32 to any 443,8443",
                fd(
                    Out,
                    Some(6),
                    v6("2001:db8::", 32),
                    &[],
                    Any,
                    &[(443, 443), (8443, 8443)],
                ),
                "permit out 6 from 2001:db8::/32 to any 443,8443",
            ),
        ];
        assert!(cases.len() >= 25);
        for (text, expected, canonical) in cases {
            let parsed: FlowDescription = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(parsed.to_string(), canonical, "{text}");
            assert_eq!(
                canonical.parse::<FlowDescription>().unwrap(),
                expected,
                "{canonical}"
            );
        }
    }

    #[test]
    fn invalid_vectors() {
        // (text, column, token)
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, ""),
            ("   ", 4, ""),
            ("deny out 6 from any to assigned", 1, "deny"),
            ("allow out 6 from any to assigned", 1, "allow"),
            ("permit", 7, ""),
            ("permit both 6 from any to assigned", 8, "both"),
            ("permit out", 11, ""),
            ("permit out 0 from any to assigned", 12, "0"),
            ("permit out 256 from any to assigned", 12, "256"),
            (
                "permit out 99999999999 from any to assigned",
                12,
                "99999999999",
            ),
            ("permit out tcpp from any to assigned", 12, "tcpp"),
            ("permit out 6 frm any to assigned", 14, "frm"),
            ("permit out 6 from", 18, ""),
            (
                "permit out 6 from !10.0.0.0/8 to assigned",
                19,
                "!10.0.0.0/8",
            ),
            (
                "permit out 6 from 10.0.0.0/33 to assigned",
                19,
                "10.0.0.0/33",
            ),
            (
                "permit out 6 from 2001:db8::/129 to assigned",
                19,
                "2001:db8::/129",
            ),
            ("permit out 6 from 10.0.0.256 to assigned", 19, "10.0.0.256"),
            ("permit out 6 from 10.0.0.0/ to assigned", 19, "10.0.0.0/"),
            ("permit out 6 from anywhere to assigned", 19, "anywhere"),
            ("permit out 6 from any 0 to assigned", 23, "0"),
            ("permit out 6 from any 65536 to assigned", 23, "65536"),
            ("permit out 6 from any 80,,443 to assigned", 26, ""),
            ("permit out 6 from any 80, to assigned", 26, ""),
            ("permit out 6 from any 443-80 to assigned", 23, "443-80"),
            ("permit out 6 from any 80,90-x to assigned", 26, "90-x"),
            ("permit out 6 from any 80 443 to assigned", 26, "443"),
            ("permit out 6 from any", 22, ""),
            ("permit out 6 from any to", 25, ""),
            ("permit out 6 from any to !assigned", 26, "!assigned"),
            (
                "permit out 6 from 10.0.0.0/8 to 2001:db8::/32",
                33,
                "2001:db8::/32",
            ),
            (
                "permit out 6 from 2001:db8::1 to 10.45.0.2",
                34,
                "10.45.0.2",
            ),
            ("permit out 6 from any to assigned frag", 35, "frag"),
            (
                "permit out 6 from any to assigned 80 established",
                38,
                "established",
            ),
            ("permit out 6 from any to assigned setup", 35, "setup"),
            ("permit out 6 from any to assigned 1-2-3", 35, "1-2-3"),
            ("permit out 6 from any to assigned 80 443", 38, "443"),
            ("permit out +6 from any to assigned", 12, "+6"),
            ("permit out 6 from any +80 to assigned", 23, "+80"),
        ];
        assert!(cases.len() >= 20);
        for &(text, column, token) in cases {
            let err = text.parse::<FlowDescription>().expect_err(text);
            assert_eq!(
                (err.column, err.token.as_str()),
                (column, token),
                "{text}: {err}"
            );
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn error_messages_read_well() {
        let err = "permit out 6 frm any to assigned"
            .parse::<FlowDescription>()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Flow-Description: expected 'from', found 'frm' at column 14"
        );
        let err = "permit out 6 from any"
            .parse::<FlowDescription>()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Flow-Description: expected 'to', found nothing at column 22"
        );
        let err = "deny out 6 from any to assigned"
            .parse::<FlowDescription>()
            .unwrap_err();
        assert!(err.message.contains("only 'permit'"), "{err}");
    }

    #[test]
    fn prefix_parse_and_contains() {
        let p = IpPrefix::parse("10.45.0.0/16", true).unwrap();
        assert!(p.contains("10.45.200.1".parse().unwrap()));
        assert!(!p.contains("10.46.0.1".parse().unwrap()));
        assert!(!p.contains("2001:db8::1".parse().unwrap()));
        assert!(IpPrefix::parse("10.45.0.1/16", true)
            .unwrap_err()
            .contains("did you mean 10.45.0.0/16"));
        assert_eq!(
            IpPrefix::parse("10.45.0.1/16", false).unwrap(),
            IpPrefix::parse("10.45.0.0/16", true).unwrap()
        );
        let wide = IpPrefix::parse("2001:db8:45::/48", true).unwrap();
        let narrow = IpPrefix::parse("2001:db8:45:1::/64", true).unwrap();
        assert!(wide.covers(&narrow) && !narrow.covers(&wide) && narrow.overlaps(&wide));
        assert_eq!(IpPrefix::parse("::/0", true).unwrap().to_string(), "::/0");
    }

    fn address(v6: bool) -> impl Strategy<Value = AddressMatch> {
        let prefix = if v6 {
            (any::<u128>(), 0u8..=128)
                .prop_map(|(a, len)| IpPrefix::new(IpAddr::V6(Ipv6Addr::from(a)), len))
                .boxed()
        } else {
            (any::<u32>(), 0u8..=32)
                .prop_map(|(a, len)| IpPrefix::new(IpAddr::V4(Ipv4Addr::from(a)), len))
                .boxed()
        };
        prop_oneof![
            Just(AddressMatch::Any),
            Just(AddressMatch::Assigned),
            prefix.prop_filter_map("length within width", |p| p.map(AddressMatch::Prefix)),
        ]
    }

    fn port_list() -> impl Strategy<Value = Vec<PortRange>> {
        proptest::collection::vec(
            (1u16..=65535, 1u16..=65535).prop_map(|(a, b)| PortRange {
                lo: a.min(b),
                hi: a.max(b),
            }),
            0..4,
        )
    }

    fn flow_description() -> impl Strategy<Value = FlowDescription> {
        (
            any::<bool>(),
            prop_oneof![Just(None), (1u8..=255).prop_map(Some)],
            any::<bool>(),
        )
            .prop_flat_map(|(is_in, protocol, v6)| {
                (address(v6), port_list(), address(v6), port_list()).prop_map(
                    move |(src, src_ports, dst, dst_ports)| FlowDescription {
                        direction: if is_in { In } else { Out },
                        protocol,
                        src,
                        src_ports,
                        dst,
                        dst_ports,
                    },
                )
            })
    }

    proptest! {
        #[test]
        fn display_parses_back(fd in flow_description()) {
            let text = fd.to_string();
            let parsed: FlowDescription = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(&parsed, &fd);
            prop_assert_eq!(parsed.to_string(), text);
        }

        #[test]
        fn parser_never_panics(text in "[a-z0-9 ./:,!-]{0,60}") {
            let _ = text.parse::<FlowDescription>();
        }
    }
}
