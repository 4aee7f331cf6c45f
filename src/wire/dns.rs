//! DNS answers as the walled garden needs them: the A and AAAA records of a response to a
//! question for one of a few host names. Read by the garden (answers snooped on the data path,
//! without allocating) and by the resolver thread (answers to its own queries).
//!
//! Like the rest of `wire`, nothing here panics or loops on any input: names are bounded and
//! compression pointers must point backwards.

use std::net::IpAddr;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// At most this many address records of one answer are read.
pub const MAX_RECORDS: usize = 16;

/// The address records (address, TTL in seconds) of one answer, in answer order; no heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Records {
    records: [Option<(IpAddr, u32)>; MAX_RECORDS],
}

impl Records {
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, u32)> + '_ {
        self.records.iter().flatten().copied()
    }
}

/// The A and AAAA records (address, TTL) of a DNS response whose first question names one of
/// `hosts` (lower case, no trailing dot); empty for anything else.
pub fn address_records(msg: &[u8], hosts: &[String]) -> Vec<(IpAddr, u32)> {
    answers(msg, hosts)
        .map(|records| records.iter().collect())
        .unwrap_or_default()
}

/// The A/AAAA records of a response without error whose first question names one of `hosts`
/// (lower case, no trailing dot); `None` for anything else.
pub fn answers(msg: &[u8], hosts: &[String]) -> Option<Records> {
    let u16_at = |at: usize| {
        msg.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let flags = u16_at(2)?;
    // A response (QR set) without error (RCODE 0).
    if flags & 0x8000 == 0 || flags & 0x000f != 0 {
        return None;
    }
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    if qd == 0 {
        return None;
    }
    let mut name = [0u8; 256];
    let (len, mut at) = read_name(msg, 12, &mut name)?;
    let qname = std::str::from_utf8(&name[..len]).ok()?;
    if !hosts.iter().any(|h| h == qname) {
        return None;
    }
    at += 4;
    for _ in 1..qd {
        at = read_name(msg, at, &mut name)?.1 + 4;
    }
    let mut out = Records::default();
    let mut n = 0;
    for _ in 0..an {
        at = read_name(msg, at, &mut name)?.1;
        let (rtype, class) = (u16_at(at)?, u16_at(at + 2)?);
        let ttl = u32::from_be_bytes(msg.get(at + 4..at + 8)?.try_into().ok()?);
        let rdlen = usize::from(u16_at(at + 8)?);
        let rdata = msg.get(at + 10..at + 10 + rdlen)?;
        at += 10 + rdlen;
        // Records other than addresses (the CNAME chain from the question) are skipped: every
        // address in the answer to a portal question is the portal's.
        let addr = match (rtype, class, rdata.len()) {
            (TYPE_A, CLASS_IN, 4) => IpAddr::from(<[u8; 4]>::try_from(rdata).ok()?),
            (TYPE_AAAA, CLASS_IN, 16) => IpAddr::from(<[u8; 16]>::try_from(rdata).ok()?),
            _ => continue,
        };
        if n < MAX_RECORDS {
            out.records[n] = Some((addr, ttl));
            n += 1;
        }
    }
    Some(out)
}

/// Reads a (possibly compressed) domain name at `at` into `out` as lower-case dotted text.
/// Returns its length and the offset just past the name where it starts.
fn read_name(msg: &[u8], mut at: usize, out: &mut [u8; 256]) -> Option<(usize, usize)> {
    let mut len = 0;
    let mut end = None;
    // Each pointer must go backwards, so following them terminates; the count is a second guard.
    let mut jumps = 0;
    loop {
        let b = *msg.get(at)?;
        match b & 0xc0 {
            0x00 if b == 0 => {
                return Some((len, end.unwrap_or(at + 1)));
            }
            0x00 => {
                let label = msg.get(at + 1..at + 1 + usize::from(b))?;
                if len != 0 {
                    *out.get_mut(len)? = b'.';
                    len += 1;
                }
                for c in label {
                    *out.get_mut(len)? = c.to_ascii_lowercase();
                    len += 1;
                }
                at += 1 + usize::from(b);
            }
            0xc0 => {
                let target = usize::from(u16::from_be_bytes([b & 0x3f, *msg.get(at + 1)?]));
                if target >= at || jumps > 32 {
                    return None;
                }
                end.get_or_insert(at + 2);
                jumps += 1;
                at = target;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A response for `name` with a CNAME to `cdn.<name>` and then address records.
    pub(crate) fn dns_response(name: &str, addrs: &[IpAddr], ttl: u32) -> Vec<u8> {
        let mut m = vec![
            0x12,
            0x34,
            0x81,
            0x80,
            0,
            1,
            0,
            (addrs.len() + 1) as u8,
            0,
            0,
            0,
            0,
        ];
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        // CNAME of the question (pointer to offset 12) to "cdn" + pointer to the question.
        m.extend_from_slice(&[
            0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'c', b'd', b'n', 0xc0, 12,
        ]);
        for a in addrs {
            m.extend_from_slice(&[0xc0, 12]);
            match a {
                IpAddr::V4(v4) => {
                    m.extend_from_slice(&[0, 1, 0, 1]);
                    m.extend_from_slice(&ttl.to_be_bytes());
                    m.extend_from_slice(&[0, 4]);
                    m.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    m.extend_from_slice(&[0, 28, 0, 1]);
                    m.extend_from_slice(&ttl.to_be_bytes());
                    m.extend_from_slice(&[0, 16]);
                    m.extend_from_slice(&v6.octets());
                }
            }
        }
        m
    }

    #[test]
    fn the_addresses_of_an_answer_for_a_known_name_skipping_its_cname() {
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80));
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x80));
        let hosts = ["portal.example".to_string()];
        let msg = dns_response("Portal.Example", &[v4, v6], 300);
        assert_eq!(address_records(&msg, &hosts), [(v4, 300), (v6, 300)]);
        assert!(address_records(&msg, &["other.example".to_string()]).is_empty());
        // An error answer (RCODE 3, NXDOMAIN) and a query (QR clear) teach nothing.
        let mut nx = msg.clone();
        nx[3] |= 3;
        assert_eq!(answers(&nx, &hosts), None);
        let mut query = msg;
        query[2] &= 0x7f;
        assert_eq!(answers(&query, &hosts), None);
    }

    #[test]
    fn at_most_max_records_are_read() {
        let addrs: Vec<IpAddr> = (0..MAX_RECORDS as u8 + 4)
            .map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)))
            .collect();
        let msg = dns_response("portal.example", &addrs, 60);
        let read = address_records(&msg, &["portal.example".to_string()]);
        assert_eq!(read.len(), MAX_RECORDS);
        assert_eq!(read[MAX_RECORDS - 1].0, addrs[MAX_RECORDS - 1]);
    }
}
