//! JSON Lines files: the embedded default's trend deltas and dead letters.

use super::{DeadLetters, TrendDeltas};
use anyhow::{Context, Result};
use clickflow_dataflows::messages::{TrendChange, TrendValues};
use serde_json::{json, Value};
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

/// The dead-letter record of SPEC section 7.
pub fn dead_letter_json(reason: &str, detail: &str, source: &str, raw: &[u8]) -> Value {
    json!({"reason": reason, "detail": detail, "source": source, "raw": String::from_utf8_lossy(raw)})
}

impl DeadLetters for JsonlFile {
    fn write(&mut self, reason: &str, detail: &str, source: &str, raw: &[u8]) -> Result<()> {
        self.line(&dead_letter_json(reason, detail, source, raw))
    }
    fn flush(&mut self) -> Result<()> {
        self.flush_file()
    }
}

fn values_json(v: &TrendValues) -> Value {
    json!({"window_ms": v.window_ms, "count": v.count, "baseline_count": v.baseline_count, "score": v.score})
}

/// The trend-delta message of SPEC section 6.
pub fn delta_json(c: &TrendChange) -> Value {
    let (window_ms, count, baseline_count, score) = match &c.new {
        Some(v) => (json!(v.window_ms), json!(v.count), json!(v.baseline_count), json!(v.score)),
        None => (Value::Null, Value::Null, Value::Null, Value::Null),
    };
    json!({
        "entity_type": c.kind.as_str(),
        "entity_id": c.id,
        "as_of": c.at,
        "window_ms": window_ms,
        "count": count,
        "baseline_count": baseline_count,
        "score": score,
        "prev": c.prev.as_ref().map_or(Value::Null, values_json),
        "deleted": c.new.is_none(),
    })
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
