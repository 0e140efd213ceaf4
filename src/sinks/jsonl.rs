//! JSON Lines files: the embedded default's trend deltas and dead letters
//! (their JSON shapes are in [`super::records`]).

use super::records::{dead_letter_json, delta_json, Reason};
use super::{DeadLetters, TrendDeltas};
use anyhow::{Context, Result};
use clickflow_dataflows::messages::TrendChange;
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// An append-only JSON Lines file.
pub struct JsonlFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlFile {
    /// Creates (`append == false`: truncates) or appends to `path`.
    pub fn open(path: &Path, append: bool) -> Result<JsonlFile> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .with_context(|| format!("cannot open {} for writing", path.display()))?;
        Ok(JsonlFile { path: path.to_owned(), out: BufWriter::with_capacity(1 << 20, file) })
    }

    /// Opens the trend-delta file of a store that is as of `as_of`, appending:
    /// first cuts off trailing deltas of ticks after `as_of` (flushed just
    /// before a crash that kept the store from holding their tick) and a torn
    /// last line, so that the file still replays to the store's trends.
    pub fn open_deltas(path: &Path, as_of: Option<u64>) -> Result<JsonlFile> {
        if let Some(as_of) = as_of {
            if path.exists() {
                truncate_after(path, as_of).with_context(|| format!("cannot repair {} to as_of {as_of}", path.display()))?;
            }
        }
        JsonlFile::open(path, as_of.is_some())
    }

    fn line(&mut self, v: &Value) -> Result<()> {
        serde_json::to_writer(&mut self.out, v)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"))
            .with_context(|| format!("cannot write to {}", self.path.display()))
    }

    fn flush_file(&mut self) -> Result<()> {
        self.out.flush().with_context(|| format!("cannot write to {}", self.path.display()))
    }
}

/// Cuts `path` after its last complete line whose `as_of` is at most `as_of`
/// (lines are in `as_of` order); reads backwards from the end in blocks.
fn truncate_after(path: &Path, as_of: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let keeps = |line: &[u8]| {
        line.last() == Some(&b'\n') && serde_json::from_slice::<Value>(line).ok().and_then(|v| v.get("as_of").and_then(Value::as_u64)).is_some_and(|a| a <= as_of)
    };
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    // `buf` holds the file's bytes [end - buf.len(), end); `end` is where the kept part would stop.
    let mut end = file.metadata()?.len();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let start = end - buf.len() as u64;
        // The last line of `buf` begins after the last newline before its final byte.
        let body = &buf[..buf.len().saturating_sub(1)];
        match body.iter().rposition(|&b| b == b'\n') {
            Some(nl) => {
                if keeps(&buf[nl + 1..]) {
                    break;
                }
                end -= (buf.len() - nl - 1) as u64;
                buf.truncate(nl + 1);
            }
            None if start == 0 => {
                if buf.is_empty() || !keeps(&buf) {
                    end = 0;
                }
                break;
            }
            None => {
                let step = start.min(1 << 20);
                let mut block = vec![0u8; step as usize];
                file.seek(SeekFrom::Start(start - step))?;
                file.read_exact(&mut block)?;
                block.extend_from_slice(&buf);
                buf = block;
            }
        }
    }
    file.set_len(end)
}

impl DeadLetters for JsonlFile {
    fn write(&mut self, reason: Reason, detail: &str, source: &str, raw: &[u8]) -> Result<()> {
        self.line(&dead_letter_json(reason, detail, source, raw))
    }
    fn flush(&mut self) -> Result<()> {
        self.flush_file()
    }
}

impl TrendDeltas for JsonlFile {
    fn write(&mut self, changes: &[&TrendChange]) -> Result<()> {
        for c in changes {
            self.line(&delta_json(c))?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.flush_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta_line(as_of: u64) -> String {
        format!("{{\"entity_type\":\"product\",\"entity_id\":\"p\",\"as_of\":{as_of},\"deleted\":false}}\n")
    }

    #[test]
    fn deltas_after_the_stores_as_of_and_a_torn_line_are_cut_on_resume() {
        let dir = std::env::temp_dir().join(format!("clickflow-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.jsonl");
        let kept: String = [1000, 2000, 2000].map(delta_line).concat();
        let text = kept.clone() + &delta_line(3000) + &delta_line(4000) + "{\"entity_type\":\"pro";
        std::fs::write(&path, &text).unwrap();
        drop(JsonlFile::open_deltas(&path, Some(2000)).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), kept);
        drop(JsonlFile::open_deltas(&path, Some(500)).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "every tick is after the store's as_of");
        let big: String = (0..40_000u64).map(|i| delta_line(i * 10)).collect();
        std::fs::write(&path, &big).unwrap();
        drop(JsonlFile::open_deltas(&path, Some(399_990)).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap().len(), big.len(), "nothing to cut");
        drop(JsonlFile::open_deltas(&path, Some(5)).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), delta_line(0), "cut across read blocks");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
