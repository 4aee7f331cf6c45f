//! Reader for ClassBench rule sets and traces (IPv4 ACL format).
//!
//! Owns turning ClassBench text into [`Rule`]s and [`TraceEntry`]s; it never classifies. Used by
//! tests, benchmarks and the `classbench` example to measure classifiers on realistic rules.
//!
//! Rule line: `@SRC/PLEN DST/PLEN SPORT_LO : SPORT_HI DPORT_LO : DPORT_HI PROTO/MASK`.
//! Trace line: `SRC DST SPORT DPORT PROTO MATCH`, addresses as unsigned decimal, `MATCH` the
//! 1-based index of the first matching rule.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::{map_v4, Key, Ports, Prefix, Rule};

/// One packet of a trace and the rule it must hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    pub key: Key,
    /// 1-based rule index, as written in the file.
    pub expected: u32,
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("expected {expected} fields, found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error("a rule must start with '@', found '{0}'")]
    MissingAt(String),
    #[error("expected ADDR/LEN, found '{0}'")]
    NotAPrefix(String),
    #[error("bad IPv4 address '{0}'")]
    Address(String),
    #[error("bad prefix length '{0}' (0..=32)")]
    PrefixLength(String),
    #[error("bad port '{0}' (0..=65535)")]
    Port(String),
    #[error("expected ':' between port bounds, found '{0}'")]
    MissingColon(String),
    #[error("port range {lo} : {hi} is empty")]
    EmptyPortRange { lo: u16, hi: u16 },
    #[error("bad protocol '{0}' (PROTO/MASK in hex, e.g. 0x06/0xFF)")]
    Protocol(String),
    #[error("protocol mask {0:#04x} unsupported (only 0xFF or 0x00)")]
    ProtocolMask(u8),
    #[error("bad match index '{0}' (1-based rule number)")]
    MatchIndex(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ClassBenchError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: LineProblem },
    #[error("{}: line {line}: {problem}", path.display())]
    FileLine {
        path: PathBuf,
        line: usize,
        problem: LineProblem,
    },
}

impl ClassBenchError {
    fn in_file(self, path: &Path) -> Self {
        match self {
            ClassBenchError::Line { line, problem } => ClassBenchError::FileLine {
                path: path.to_path_buf(),
                line,
                problem,
            },
            other => other,
        }
    }
}

/// Parses a rule set; rules keep the file's order, which is their priority.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, ClassBenchError> {
    parse_lines(text, parse_rule)
}

/// Parses a trace.
pub fn parse_trace(text: &str) -> Result<Vec<TraceEntry>, ClassBenchError> {
    parse_lines(text, parse_trace_line)
}

pub fn read_rules(path: impl AsRef<Path>) -> Result<Vec<Rule>, ClassBenchError> {
    let path = path.as_ref();
    parse_rules(&read(path)?).map_err(|e| e.in_file(path))
}

pub fn read_trace(path: impl AsRef<Path>) -> Result<Vec<TraceEntry>, ClassBenchError> {
    let path = path.as_ref();
    parse_trace(&read(path)?).map_err(|e| e.in_file(path))
}

fn read(path: &Path) -> Result<String, ClassBenchError> {
    fs::read_to_string(path).map_err(|source| ClassBenchError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_lines<T>(
    text: &str,
    parse: impl Fn(&[&str]) -> Result<T, LineProblem>,
) -> Result<Vec<T>, ClassBenchError> {
    let mut out = Vec::new();
    let mut fields = Vec::with_capacity(12);
    for (i, line) in text.lines().enumerate() {
        fields.clear();
        fields.extend(line.split_whitespace());
        if fields.is_empty() {
            continue;
        }
        out.push(parse(&fields).map_err(|problem| ClassBenchError::Line {
            line: i + 1,
            problem,
        })?);
    }
    Ok(out)
}

fn expect_fields(fields: &[&str], expected: usize) -> Result<(), LineProblem> {
    if fields.len() == expected {
        Ok(())
    } else {
        Err(LineProblem::FieldCount {
            expected,
            found: fields.len(),
        })
    }
}

fn parse_rule(f: &[&str]) -> Result<Rule, LineProblem> {
    expect_fields(f, 9)?;
    let src = f[0]
        .strip_prefix('@')
        .ok_or_else(|| LineProblem::MissingAt(f[0].to_string()))?;
    Ok(Rule {
        src: parse_prefix(src)?,
        dst: parse_prefix(f[1])?,
        src_ports: parse_ports(f[2], f[3], f[4])?,
        dst_ports: parse_ports(f[5], f[6], f[7])?,
        protocol: parse_protocol(f[8])?,
    })
}

fn parse_prefix(s: &str) -> Result<Prefix, LineProblem> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| LineProblem::NotAPrefix(s.to_string()))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| LineProblem::Address(addr.to_string()))?;
    let len = len
        .parse::<u8>()
        .ok()
        .filter(|&l| l <= 32)
        .ok_or_else(|| LineProblem::PrefixLength(len.to_string()))?;
    Ok(Prefix::v4(u32::from(addr), len))
}

fn parse_port(s: &str) -> Result<u16, LineProblem> {
    s.parse().map_err(|_| LineProblem::Port(s.to_string()))
}

fn parse_ports(lo: &str, colon: &str, hi: &str) -> Result<Ports, LineProblem> {
    if colon != ":" {
        return Err(LineProblem::MissingColon(colon.to_string()));
    }
    let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
    if lo > hi {
        return Err(LineProblem::EmptyPortRange { lo, hi });
    }
    Ok(Ports { lo, hi })
}

fn parse_hex_u8(s: &str) -> Option<u8> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    u8::from_str_radix(digits, 16).ok()
}

fn parse_protocol(s: &str) -> Result<Option<u8>, LineProblem> {
    let bad = || LineProblem::Protocol(s.to_string());
    let (proto, mask) = s.split_once('/').ok_or_else(bad)?;
    let (proto, mask) = (
        parse_hex_u8(proto).ok_or_else(bad)?,
        parse_hex_u8(mask).ok_or_else(bad)?,
    );
    match mask {
        0xFF => Ok(Some(proto)),
        0x00 => Ok(None),
        other => Err(LineProblem::ProtocolMask(other)),
    }
}

fn parse_trace_line(f: &[&str]) -> Result<TraceEntry, LineProblem> {
    expect_fields(f, 6)?;
    let addr = |s: &str| {
        s.parse::<u32>()
            .map(map_v4)
            .map_err(|_| LineProblem::Address(s.to_string()))
    };
    let protocol = f[4]
        .parse::<u8>()
        .map_err(|_| LineProblem::Protocol(f[4].to_string()))?;
    let expected = f[5]
        .parse::<u32>()
        .ok()
        .filter(|&m| m >= 1)
        .ok_or_else(|| LineProblem::MatchIndex(f[5].to_string()))?;
    Ok(TraceEntry {
        key: Key {
            src: addr(f[0])?,
            dst: addr(f[1])?,
            src_port: parse_port(f[2])?,
            dst_port: parse_port(f[3])?,
            protocol,
        },
        expected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_rule_line() {
        let rules = parse_rules(
            "@64.91.107.21/32 128.222.130.81/32 0 : 65535 1221 : 1221 0x06/0xFF\n\
             @0.0.0.0/0 10.1.0.0/16 1024 : 2047 0 : 65535 0x00/0x00\n",
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].src, Prefix::v4(0x405b_6b15, 32));
        assert_eq!(rules[0].dst, Prefix::v4(0x80de_8251, 32));
        assert!(rules[0].src_ports.is_any());
        assert_eq!(rules[0].dst_ports, Ports { lo: 1221, hi: 1221 });
        assert_eq!(rules[0].protocol, Some(6));
        assert_eq!(rules[1].src, Prefix::v4(0, 0));
        assert_eq!(rules[1].dst, Prefix::v4(0x0a01_0000, 16));
        assert_eq!(rules[1].src_ports, Ports { lo: 1024, hi: 2047 });
        assert_eq!(rules[1].protocol, None);
    }

    #[test]
    fn v4_wildcard_does_not_match_v6() {
        let rules = parse_rules("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00").unwrap();
        let key = Key {
            src: 1,
            dst: 1,
            src_port: 0,
            dst_port: 0,
            protocol: 6,
        };
        assert!(!rules[0].matches(&key));
    }

    #[test]
    fn parses_a_trace_line() {
        let t = parse_trace("1600753409 3271393328 65535 21 6 413\n\n").unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].key.src, map_v4(1_600_753_409));
        assert_eq!(t[0].key.dst, map_v4(3_271_393_328));
        assert_eq!((t[0].key.src_port, t[0].key.dst_port), (65535, 21));
        assert_eq!(t[0].key.protocol, 6);
        assert_eq!(t[0].expected, 413);
    }

    fn rule_problem(text: &str) -> (usize, LineProblem) {
        match parse_rules(text) {
            Err(ClassBenchError::Line { line, problem }) => (line, problem),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn reports_line_and_problem() {
        let good = "@1.2.3.4/32 5.6.7.8/32 0 : 65535 80 : 80 0x06/0xFF\n";
        let (line, p) = rule_problem(&format!("{good}\n{}", good.replace("0xFF", "0xF0")));
        assert_eq!((line, p), (3, LineProblem::ProtocolMask(0xF0)));
        assert!(matches!(
            rule_problem(&good.replace('@', "")).1,
            LineProblem::MissingAt(_)
        ));
        assert!(matches!(
            rule_problem(&good.replace("/32 5", "/33 5")).1,
            LineProblem::PrefixLength(_)
        ));
        assert!(matches!(
            rule_problem(&good.replace("80 : 80", "81 : 80")).1,
            LineProblem::EmptyPortRange { lo: 81, hi: 80 }
        ));
        assert!(matches!(
            rule_problem(&good.replace("80 : 80", "80 - 80")).1,
            LineProblem::MissingColon(_)
        ));
        assert!(matches!(
            rule_problem(&good.replace("1.2.3.4", "1.2.3")).1,
            LineProblem::Address(_)
        ));
        assert!(matches!(
            rule_problem(&good.replace(" 0x06/0xFF", "")).1,
            LineProblem::FieldCount {
                expected: 9,
                found: 8
            }
        ));
        let msg = parse_trace("1 2 3 4 6 0").unwrap_err().to_string();
        assert_eq!(msg, "line 1: bad match index '0' (1-based rule number)");
    }

    #[test]
    fn file_errors_name_the_path() {
        let err = read_rules("no/such/rules").unwrap_err().to_string();
        assert!(err.contains("no/such/rules"), "{err}");
    }
}
