//! A JSON Lines file, plain or gzip'd (detected by its magic bytes), read as
//! one reader: lines come out in file order, which is the order lateness
//! follows (SPEC section 2).

use super::LineSource;
use anyhow::{Context, Result};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts bytes taken from the underlying file, for progress.
struct Counting<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A file of events.
pub struct FileSource {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    line: u64,
    bytes: Arc<AtomicU64>,
    size: u64,
}

impl FileSource {
    /// Opens `path`; a missing or unreadable file is an error naming it.
    pub fn open(path: &Path) -> Result<FileSource> {
        let mut file = File::open(path).with_context(|| format!("cannot open input file {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut magic = [0u8; 2];
        let gz = file.read(&mut magic).map(|n| n == 2 && magic == [0x1f, 0x8b]).unwrap_or(false);
        let file = File::open(path).with_context(|| format!("cannot open input file {}", path.display()))?;
        let bytes = Arc::new(AtomicU64::new(0));
        let counting = Counting { inner: file, bytes: bytes.clone() };
        let reader: Box<dyn BufRead + Send> = if gz {
            Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(BufReader::with_capacity(1 << 20, counting))))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, counting))
        };
        Ok(FileSource { path: path.to_owned(), reader, line: 0, bytes, size })
    }
}

impl LineSource for FileSource {
    fn next_line(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        buf.clear();
        let n = self
            .reader
            .read_until(b'\n', buf)
            .with_context(|| format!("cannot read {} after line {}", self.path.display(), self.line))?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        // SPEC section 1: a byte order mark at the very start of the file is
        // skipped; anywhere else it is part of its line.
        if self.line == 1 && buf.starts_with(BOM) {
            buf.drain(..BOM.len());
        }
        Ok(true)
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn progress(&self) -> (u64, u64) {
        (self.bytes.load(Ordering::Relaxed), self.size)
    }
}
