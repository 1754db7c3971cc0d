//! `portcullis audit verify`: recompute every line's hash and check every link of the chain.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use serde::Serialize;

use super::format::{is_hash, line_hash, LineHead, GENESIS};
use super::Head;

/// What [`verify`] found in a sound chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct VerifyReport {
    /// Lines checked, over all files.
    pub(crate) lines: u64,
    /// The `seq` of the first line (0 when there were none).
    pub(crate) first_seq: u64,
    /// The `seq` of the last line (0 when there were none).
    pub(crate) last_seq: u64,
    /// The `hash` of the last line (64 zeros when there were none).
    pub(crate) head_hash: String,
    /// The `prev` of the first line: 64 zeros when the files hold the start of the chain,
    /// otherwise the last hash of an older file that was not given.
    pub(crate) anchor: String,
}

/// The first bad line [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}: {}", .file.display(), .line, .message)]
pub(crate) struct VerifyError {
    /// The file holding the line.
    pub(crate) file: PathBuf,
    /// The line number in that file, from 1 (0 when the file could not be read at all).
    pub(crate) line: usize,
    /// What is wrong.
    pub(crate) kind: VerifyErrorKind,
    /// What is wrong, for people.
    pub(crate) message: String,
}

/// What is wrong with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerifyErrorKind {
    /// The file could not be read.
    Io,
    /// The line is not an audit record.
    Malformed,
    /// The line's content does not match its own hash: it was edited.
    Altered,
    /// The line does not follow the line before (`prev` or `seq`): lines were removed or reordered.
    Broken,
}

// === verify ===

/// Checks the chain over `paths`, given oldest first (`path.N … path.1 path`): every line's own
/// hash, every `prev` against the hash before it, every `seq` against the one before. Reports
/// the first bad line.
pub(crate) fn verify(paths: &[PathBuf]) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport {
        lines: 0,
        first_seq: 0,
        last_seq: 0,
        head_hash: GENESIS.to_owned(),
        anchor: GENESIS.to_owned(),
    };
    let mut previous: Option<Head> = None;
    let mut buf = Vec::new();
    for path in paths {
        let fail = |line: usize, kind: VerifyErrorKind, message: String| VerifyError {
            file: path.clone(),
            line,
            kind,
            message,
        };
        let file = File::open(path)
            .map_err(|e| fail(0, VerifyErrorKind::Io, format!("cannot open: {e}")))?;
        let mut reader = BufReader::new(file);
        let mut number = 0;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| fail(number + 1, VerifyErrorKind::Io, format!("cannot read: {e}")))?;
            if n == 0 {
                break;
            }
            number += 1;
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            let head = check_line(&buf).map_err(|(kind, message)| fail(number, kind, message))?;
            match &previous {
                Some(before) => {
                    if head.prev != before.hash {
                        return Err(fail(
                            number,
                            VerifyErrorKind::Broken,
                            format!(
                                "prev {} is not the hash of the line before ({}): a line was removed or reordered",
                                short(&head.prev),
                                short(&before.hash)
                            ),
                        ));
                    }
                    if head.seq != before.seq + 1 {
                        return Err(fail(
                            number,
                            VerifyErrorKind::Broken,
                            format!(
                                "seq {} does not follow seq {}: a line was removed or reordered",
                                head.seq, before.seq
                            ),
                        ));
                    }
                }
                None => {
                    if head.prev == GENESIS && head.seq != 1 {
                        return Err(fail(
                            number,
                            VerifyErrorKind::Broken,
                            format!("the chain starts at seq {}, not 1", head.seq),
                        ));
                    }
                    report.first_seq = head.seq;
                    report.anchor = head.prev;
                }
            }
            report.lines += 1;
            previous = Some(Head {
                seq: head.seq,
                hash: head.hash,
            });
        }
    }
    if let Some(last) = previous {
        report.last_seq = last.seq;
        report.head_hash = last.hash;
    }
    Ok(report)
}

/// Checks one line on its own: an audit record whose hash matches its text.
fn check_line(line: &[u8]) -> Result<LineHead, (VerifyErrorKind, String)> {
    let malformed = |why: String| (VerifyErrorKind::Malformed, why);
    let text = std::str::from_utf8(line).map_err(|_| malformed("not UTF-8".to_owned()))?;
    let head: LineHead =
        serde_json::from_str(text).map_err(|e| malformed(format!("not an audit record: {e}")))?;
    if !is_hash(&head.prev) || !is_hash(&head.hash) {
        return Err(malformed(
            "prev and hash must be 64 lowercase hex digits".to_owned(),
        ));
    }
    // The hashed body is everything before `,"hash":"<hash>"}`, which must end the line.
    let suffix = format!(",\"hash\":\"{}\"}}", head.hash);
    let Some(body) = text.strip_suffix(suffix.as_str()) else {
        return Err(malformed("hash is not the last field".to_owned()));
    };
    if line_hash(&head.prev, body.as_bytes()) != head.hash {
        return Err((
            VerifyErrorKind::Altered,
            format!(
                "the line does not match its hash {}: it was edited",
                short(&head.hash)
            ),
        ));
    }
    Ok(head)
}

/// The first 12 hex digits of a hash, for messages.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
