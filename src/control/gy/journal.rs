//! The journal of Gy requests that carry used units and are not answered yet: one line per
//! request before it is sent (`S`, fsynced, with its Session-Id and CC-Request-Number), one
//! line per answer (`A`). What is sent and not answered when the gateway restarts is sent
//! again, with the same number, so the charging system (idempotent on the number) counts it
//! exactly once.
//!
//! It never decides anything: it records, and on open says what is still owed.

use crate::proto::v1 as pb;
use prost::Message as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("credit journal {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("credit journal {path}:{line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

pub struct Journal {
    file: File,
    path: PathBuf,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Journal {
    /// Opens (or creates) the journal at `path`; returns it with the requests still
    /// unanswered, in the order they were sent. The file is rewritten to hold only those.
    pub fn open(path: &Path) -> Result<(Journal, Vec<pb::CreditControlRequest>), JournalError> {
        let io_err = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut owed: Vec<pb::CreditControlRequest> = Vec::new();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(e)),
        };
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let Some(line) = line.strip_suffix('\n') else {
                // Cut short by a crash while it was written: never fsynced, so its request
                // was never sent.
                tracing::warn!(path = %path.display(), line = i + 1,
                    "credit journal: an incomplete last line is ignored");
                continue;
            };
            let corrupt = |reason: &str| JournalError::Corrupt {
                path: path.to_path_buf(),
                line: i + 1,
                reason: reason.to_string(),
            };
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some("S"), Some(_), Some(_), Some(body)) => {
                    let bytes = unhex(body).ok_or_else(|| corrupt("not hex"))?;
                    let r = pb::CreditControlRequest::decode(bytes.as_slice())
                        .map_err(|_| corrupt("not a CreditControlRequest"))?;
                    owed.push(r);
                }
                (Some("A"), Some(id), Some(n), None) => {
                    let n: u32 = n.parse().map_err(|_| corrupt("bad number"))?;
                    owed.retain(|r| {
                        !(r.session_id.replace(' ', "_") == id && r.cc_request_number == n)
                    });
                }
                _ => return Err(corrupt("expected 'S id number request' or 'A id number'")),
            }
        }
        // Rewritten beside and renamed over, so a crash leaves the old file or the new one.
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(io_err)?;
            for r in &owed {
                f.write_all(Self::line(r).as_bytes()).map_err(io_err)?;
            }
            f.sync_all().map_err(io_err)?;
        }
        std::fs::rename(&tmp, path).map_err(io_err)?;
        let file = OpenOptions::new().append(true).open(path).map_err(io_err)?;
        Ok((
            Journal {
                file,
                path: path.to_path_buf(),
            },
            owed,
        ))
    }

    fn line(r: &pb::CreditControlRequest) -> String {
        // A Session-Id with a space would split the line; the gateway's never has one.
        format!(
            "S {} {} {}\n",
            r.session_id.replace(' ', "_"),
            r.cc_request_number,
            hex(&r.encode_to_vec())
        )
    }

    /// Records `r` before it is sent, on disk (fsync) when this returns.
    pub fn sent(&mut self, r: &pb::CreditControlRequest) -> Result<(), JournalError> {
        self.file
            .write_all(Self::line(r).as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Records that the request `number` of `session_id` was answered. Not fsynced: if it is
    /// lost, the request is sent again and the charging system answers it from its record.
    pub fn answered(&mut self, session_id: &str, number: u32) -> Result<(), JournalError> {
        self.file
            .write_all(format!("A {} {number}\n", session_id.replace(' ', "_")).as_bytes())
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, n: u32, octets: u64) -> pb::CreditControlRequest {
        pb::CreditControlRequest {
            session_id: id.into(),
            cc_request_type: pb::CcRequestType::UpdateRequest as i32,
            cc_request_number: n,
            multiple_services_credit_control: vec![pb::MultipleServicesCreditControl {
                rating_group: Some(10),
                used_service_unit: vec![pb::UsedServiceUnit {
                    units: Some(pb::ServiceUnits {
                        cc_total_octets: Some(octets),
                        ..Default::default()
                    }),
                    reporting_reason: pb::ReportingReason::QuotaExhausted as i32,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn what_was_sent_and_not_answered_comes_back_once_in_order() {
        let dir = std::env::temp_dir().join(format!("weir-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gy.journal");
        let _ = std::fs::remove_file(&path);
        let (mut j, owed) = Journal::open(&path).unwrap();
        assert!(owed.is_empty());
        j.sent(&request("gw;1", 1, 1000)).unwrap();
        j.sent(&request("gw;2", 1, 2000)).unwrap();
        j.answered("gw;1", 1).unwrap();
        j.sent(&request("gw;1", 2, 3000)).unwrap();
        drop(j);
        // A crash in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"S gw;1 3 0a").unwrap();
        drop(f);
        let (mut j, owed) = Journal::open(&path).unwrap();
        assert_eq!(owed, [request("gw;2", 1, 2000), request("gw;1", 2, 3000)]);
        j.answered("gw;2", 1).unwrap();
        j.answered("gw;1", 2).unwrap();
        drop(j);
        let (_, owed) = Journal::open(&path).unwrap();
        assert!(owed.is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_damaged_journal_is_named_with_its_line() {
        let dir = std::env::temp_dir().join(format!("weir-journal-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gy.journal");
        std::fs::write(&path, "A gw;1 1\nS gw;1 2 zz\n").unwrap();
        let e = Journal::open(&path).err().unwrap().to_string();
        assert_eq!(e, format!("credit journal {}:2: not hex", path.display()));
        std::fs::remove_dir_all(&dir).ok();
    }
}
