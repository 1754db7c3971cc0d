//! The file sink: size-based rotation that keeps the chain going across files, and finding the
//! head of an existing chain when the gateway starts (cutting off a half-written last line).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{is_hash, LineHead};
use super::Head;

/// An audit file rotated by size.
#[derive(Debug)]
pub(super) struct FileSink {
    pub(super) path: PathBuf,
    pub(super) max_bytes: u64,
    pub(super) keep: usize,
    /// `None` after an error: reopened (and the chain resynchronised from disk) before the next write.
    pub(super) file: Option<File>,
    pub(super) size: u64,
}

// === impl FileSink ===

impl FileSink {
    /// `path.(k)` → `path.(k+1)` for k = keep-1 … 1, `path` → `path.1`, a fresh `path`.
    pub(super) fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            ignore_not_found(fs::remove_file(&self.path))?;
        } else {
            ignore_not_found(fs::remove_file(rotated_path(&self.path, self.keep)))?;
            for k in (1..self.keep).rev() {
                ignore_not_found(fs::rename(
                    rotated_path(&self.path, k),
                    rotated_path(&self.path, k + 1),
                ))?;
            }
            ignore_not_found(fs::rename(&self.path, rotated_path(&self.path, 1)))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        self.file = Some(file);
        self.size = 0;
        tracing::info!(path = %self.path.display(), keep = self.keep, "rotated the audit log");
        Ok(())
    }
}

fn ignore_not_found(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The name of the `k`-th rotated file of `path`: `path.k` (1 is the newest).
pub(crate) fn rotated_path(path: &Path, k: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{k}"));
    PathBuf::from(name)
}

/// Opens (or creates) the live file for appending, cuts off an incomplete last line, and finds
/// the head of the chain: its last line, or the last line of `path.1` when it is empty.
pub(super) fn open_chain_file(path: &Path, keep: usize) -> io::Result<(File, u64, Option<Head>)> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let (complete, last) = read_tail(&mut file, len)?;
    if complete < len {
        tracing::warn!(
            path = %path.display(),
            bytes = len - complete,
            "cutting off an incomplete last line of the audit log (a crash or a failed write)"
        );
        file.set_len(complete)?;
    }
    let head = match last {
        Some(line) => Some(parse_head(path, &line)?),
        None if keep > 0 => {
            let previous = rotated_path(path, 1);
            match File::open(&previous) {
                Ok(mut older) => {
                    let len = older.metadata()?.len();
                    match read_tail(&mut older, len)?.1 {
                        Some(line) => Some(parse_head(&previous, &line)?),
                        None => None,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            }
        }
        None => None,
    };
    Ok((file, complete, head))
}

/// Reads backwards from the end of a file of `len` bytes: the length up to and including the
/// last newline, and the last complete line (without its newline), if any.
fn read_tail(file: &mut File, len: u64) -> io::Result<(u64, Option<Vec<u8>>)> {
    const CHUNK: u64 = 8 * 1024;
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    while start > 0 {
        let step = CHUNK.min(start);
        start -= step;
        let mut chunk = vec![0; step as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        let begin = match buf[..end].iter().rposition(|&b| b == b'\n') {
            Some(nl) => nl + 1,
            None if start == 0 => 0,
            None => continue,
        };
        return Ok((start + end as u64 + 1, Some(buf[begin..end].to_vec())));
    }
    Ok((0, None))
}

/// The head of the chain from a file's last line.
fn parse_head(path: &Path, line: &[u8]) -> io::Result<Head> {
    let invalid = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: the last line is not an audit record ({why}); move the file aside to start a new chain",
                path.display()
            ),
        )
    };
    let head: LineHead = serde_json::from_slice(line).map_err(|e| invalid(e.to_string()))?;
    if !is_hash(&head.hash) {
        return Err(invalid("its hash is not 64 hex digits".to_owned()));
    }
    Ok(Head {
        seq: head.seq,
        hash: head.hash,
    })
}
