//! Shared helpers for clickflow's integration tests, on top of
//! `clickflow-testkit` (re-exported here), which both crates' tests share:
//!
//! * from the testkit: conformance cases ([`cases`], [`Case`], the
//!   repository's copies under `tests/conformance/` and `../shared/conformance`
//!   when it exists), [`StoreSnapshot`], [`snapshot_from_expected`],
//!   [`compare`] (SPEC section 8), [`read_maybe_gz`];
//! * running the binary: [`run_case`], [`run_clickflow`], [`parse_summary`],
//!   [`check_summary`], [`TempOut`];
//! * the SQLite store: [`read_sqlite`] (a Redis or cluster test builds its
//!   [`StoreSnapshot`] from its own store), [`schema_problems`], [`dump_sqlite`] /
//!   [`diff_dumps`] for exact equality between runs;
//! * trend deltas: [`replay_deltas`], [`replay_deltas_detailed`],
//!   [`replay_delta_lines`], [`compare_trend_maps`];
//! * dead letters: [`dead_letter_counts`], [`dead_letter_counts_of`], [`check_dead_letters`];
//! * real services (Redis, Kafka): [`services`].
//!
//! Helpers that read files panic with a message naming the file when it is
//! missing or unreadable; comparisons return human-readable mismatch lists
//! (empty = pass), capped by [`cap`].

#![allow(dead_code)]

pub mod services;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

pub use clickflow_testkit::*;

/// The file names `clickflow run` writes into its output directory.
pub const STORE_FILE: &str = "features.db";
/// Trend deltas (SPEC section 6) in the output directory.
pub const DELTAS_FILE: &str = "trend-deltas.jsonl";
/// Dead letters (SPEC section 7) in the output directory.
pub const DEAD_LETTERS_FILE: &str = "dead-letters.jsonl";

/// The dead-letter reasons of SPEC sections 1-2.
pub const DEAD_LETTER_REASONS: [&str; 3] = ["invalid", "late", "future"];

/// A free port on 127.0.0.1 (released again: the caller's server binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port on 127.0.0.1").port()
}

/// Runs `jobs` on `threads` threads; every job's problems, concatenated.
pub fn in_parallel<T: Send>(jobs: Vec<T>, threads: usize, run: impl Fn(T) -> Vec<String> + Sync) -> Vec<String> {
    let queue = std::sync::Mutex::new(jobs);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let Some(job) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else { return };
                let problems = run(job);
                failures.lock().unwrap_or_else(|p| p.into_inner()).extend(problems);
            });
        }
    });
    failures.into_inner().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// A fresh, empty directory under `std::env::temp_dir()`, removed on drop
/// unless [`TempOut::keep`] was called (keep it to look at a failure).
#[derive(Debug)]
pub struct TempOut {
    path: PathBuf,
    keep: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempOut {
    /// Creates `<temp>/clickflow-tests/<label>-<pid>-<n>-<nanos>`.
    pub fn new(label: &str) -> TempOut {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let safe: String = label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let path = std::env::temp_dir()
            .join("clickflow-tests")
            .join(format!("{safe}-{}-{n}-{nanos}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).unwrap_or_else(|e| panic!("cannot clear {}: {e}", path.display()));
        }
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempOut { path, keep: false }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Do not remove the directory on drop.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for TempOut {
    fn drop(&mut self) {
        if !self.keep && std::env::var_os("CLICKFLOW_KEEP_TEST_OUT").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs the `clickflow` binary with `args` and returns its output.
pub fn run_clickflow<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let bin = env!("CARGO_BIN_EXE_clickflow");
    Command::new(bin).args(args).output().unwrap_or_else(|e| panic!("cannot start {bin}: {e}"))
}

/// `clickflow run --config CASE/config.toml --input CASE/events.jsonl[.gz]
/// --out OUT --workers N --quiet --json`.
pub fn run_case(case: &Case, workers: usize, out_dir: &Path) -> Output {
    let workers = workers.to_string();
    run_clickflow([
        "run".as_ref(),
        "--config".as_ref(),
        case.config.as_os_str(),
        "--input".as_ref(),
        case.events.as_os_str(),
        "--out".as_ref(),
        out_dir.as_os_str(),
        "--workers".as_ref(),
        std::ffi::OsStr::new(&workers),
        "--quiet".as_ref(),
        "--json".as_ref(),
    ])
}

/// Exit status, then stdout and stderr (each cut to its last `max_bytes`).
pub fn describe_output(output: &Output, max_bytes: usize) -> String {
    fn tail(b: &[u8], max: usize) -> String {
        let s = String::from_utf8_lossy(b);
        let s = s.trim_end();
        if s.len() <= max {
            return s.to_string();
        }
        let mut start = s.len() - max;
        while !s.is_char_boundary(start) {
            start += 1;
        }
        format!("...{}", &s[start..])
    }
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        tail(&output.stdout, max_bytes),
        tail(&output.stderr, max_bytes)
    )
}

/// The `--json` summary: the last non-empty stdout line, as a JSON object.
pub fn parse_summary(output: &Output) -> Result<Value, String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).ok_or("no --json summary on stdout")?;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("summary line is not JSON ({e}): {line}"))?;
    if !v.is_object() {
        return Err(format!("summary is not a JSON object: {line}"));
    }
    Ok(v)
}

/// Checks the `--json` summary: `lines_read == accepted + invalid + late +
/// future + bot_events`, and each reason of `expected["dead_letters"]` equals
/// the summary field of that name.
pub fn check_summary(expected: &Value, summary: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let field = |name: &str, out: &mut Vec<String>| -> Option<u64> {
        let v = summary.get(name).and_then(Value::as_u64);
        if v.is_none() {
            out.push(format!("summary: field {name} missing or not a non-negative integer"));
        }
        v
    };
    let parts = ["accepted", "invalid", "late", "future", "bot_events"];
    let lines_read = field("lines_read", &mut out);
    let values: Vec<Option<u64>> = parts.iter().map(|p| field(p, &mut out)).collect();
    if let (Some(lines_read), true) = (lines_read, values.iter().all(Option::is_some)) {
        let sum: u64 = values.iter().map(|v| v.unwrap_or(0)).sum();
        if lines_read != sum {
            let detail: Vec<String> = parts.iter().zip(&values).map(|(p, v)| format!("{p} {}", v.unwrap_or(0))).collect();
            out.push(format!("summary: lines_read {lines_read} != {sum} = {}", detail.join(" + ")));
        }
    }
    if let Some(dl) = expected.get("dead_letters").and_then(Value::as_object) {
        for (reason, want) in dl {
            let want = want.as_u64().unwrap_or_else(|| panic!("expected.json: dead_letters.{reason} is not an integer"));
            match summary.get(reason).and_then(Value::as_u64) {
                Some(got) if got == want => {}
                Some(got) => out.push(format!("summary: {reason} expected {want}, got {got}")),
                None if want == 0 => {}
                None => out.push(format!("summary: {reason} expected {want}, field missing")),
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The SQLite store as a snapshot
// ---------------------------------------------------------------------------

fn sql_int(v: rusqlite::types::ValueRef<'_>) -> Result<i64, String> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Integer(i) => Ok(i),
        ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(|s| s.parse().ok()).ok_or_else(|| format!("text {:?}", String::from_utf8_lossy(t))),
        other => Err(format!("{other:?}")),
    }
}

fn sql_u64(v: rusqlite::types::ValueRef<'_>, what: &str, problems: &mut Vec<String>) -> u64 {
    match sql_int(v) {
        Ok(i) if i >= 0 => i as u64,
        Ok(i) => {
            problems.push(format!("{what}: negative integer {i}"));
            0
        }
        Err(e) => {
            problems.push(format!("{what}: not an integer: {e}"));
            0
        }
    }
}

fn sql_f64(v: rusqlite::types::ValueRef<'_>, what: &str, problems: &mut Vec<String>) -> f64 {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Real(f) => f,
        ValueRef::Integer(i) => i as f64,
        other => {
            problems.push(format!("{what}: not a number: {other:?}"));
            f64::NAN
        }
    }
}

fn sql_text(v: rusqlite::types::ValueRef<'_>, what: &str, problems: &mut Vec<String>) -> String {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => s.to_string(),
            Err(_) => {
                problems.push(format!("{what}: text is not UTF-8"));
                String::from_utf8_lossy(t).into_owned()
            }
        },
        other => {
            problems.push(format!("{what}: not text: {other:?}"));
            String::new()
        }
    }
}

/// Opens an SQLite store for reading; panics with the path on failure.
pub fn open_sqlite(path: &Path) -> rusqlite::Connection {
    if !path.is_file() {
        panic!("store {} does not exist", path.display());
    }
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .unwrap_or_else(|e| panic!("cannot open the store {}: {e}", path.display()))
}

fn die<T>(path: &Path, what: &str, e: rusqlite::Error) -> T {
    panic!("store {}: cannot read {what}: {e}", path.display())
}

/// Reads the SPEC section 7 SQLite store at `path` (a `features.db`).
/// Panics (naming the file) if the file or a table cannot be read; values of
/// the wrong type end up in [`StoreSnapshot::problems`].
pub fn read_sqlite(path: &Path) -> StoreSnapshot {
    let conn = open_sqlite(path);
    let mut snap = StoreSnapshot::default();
    let mut problems = Vec::new();

    // meta.as_of
    {
        let mut stmt = conn.prepare("SELECT value FROM meta WHERE key = 'as_of'").unwrap_or_else(|e| die(path, "meta", e));
        let mut rows = stmt.query([]).unwrap_or_else(|e| die(path, "meta", e));
        if let Some(row) = rows.next().unwrap_or_else(|e| die(path, "meta", e)) {
            let v = row.get_ref(0).unwrap_or_else(|e| die(path, "meta", e));
            match sql_int(v) {
                Ok(i) if i >= 0 => snap.as_of = Some(i as u64),
                Ok(i) => problems.push(format!("meta.as_of is negative: {i}")),
                Err(e) => problems.push(format!("meta.as_of is not an integer: {e}")),
            }
        }
    }

    // user_features
    {
        let mut stmt = conn.prepare("SELECT user_id, features FROM user_features ORDER BY user_id").unwrap_or_else(|e| die(path, "user_features", e));
        let mut rows = stmt.query([]).unwrap_or_else(|e| die(path, "user_features", e));
        while let Some(row) = rows.next().unwrap_or_else(|e| die(path, "user_features", e)) {
            let user = sql_text(row.get_ref(0).unwrap_or_else(|e| die(path, "user_features", e)), "user_features.user_id", &mut problems);
            let what = format!("user_features[{user:?}].features");
            let text = sql_text(row.get_ref(1).unwrap_or_else(|e| die(path, "user_features", e)), &what, &mut problems);
            let features = match serde_json::from_str::<Value>(&text) {
                Ok(v @ Value::Object(_)) => v,
                Ok(other) => {
                    problems.push(format!("{what} is not a JSON object: {}", clip(&other.to_string(), 120)));
                    other
                }
                Err(e) => {
                    problems.push(format!("{what} is not JSON ({e}): {}", clip(&text, 120)));
                    Value::String(text)
                }
            };
            snap.users.insert(user, features);
        }
    }

    // trends
    {
        let mut stmt = conn
            .prepare("SELECT entity_type, entity_id, window_ms, count, baseline_count, score FROM trends ORDER BY entity_type, entity_id")
            .unwrap_or_else(|e| die(path, "trends", e));
        let mut rows = stmt.query([]).unwrap_or_else(|e| die(path, "trends", e));
        while let Some(row) = rows.next().unwrap_or_else(|e| die(path, "trends", e)) {
            let g = |i: usize| row.get_ref(i).unwrap_or_else(|e| die(path, "trends", e));
            let kind = sql_text(g(0), "trends.entity_type", &mut problems);
            let id = sql_text(g(1), "trends.entity_id", &mut problems);
            let key = format!("{kind}:{id}");
            let trend = TrendRow {
                window_ms: sql_u64(g(2), &format!("trend {key}.window_ms"), &mut problems),
                count: sql_u64(g(3), &format!("trend {key}.count"), &mut problems),
                baseline_count: sql_u64(g(4), &format!("trend {key}.baseline_count"), &mut problems),
                score: sql_f64(g(5), &format!("trend {key}.score"), &mut problems),
            };
            snap.trends.insert(key, trend);
        }
    }

    // trending
    {
        let mut stmt =
            conn.prepare("SELECT list, rank, entity_id, score, count FROM trending ORDER BY list, rank").unwrap_or_else(|e| die(path, "trending", e));
        let mut rows = stmt.query([]).unwrap_or_else(|e| die(path, "trending", e));
        while let Some(row) = rows.next().unwrap_or_else(|e| die(path, "trending", e)) {
            let g = |i: usize| row.get_ref(i).unwrap_or_else(|e| die(path, "trending", e));
            let list = sql_text(g(0), "trending.list", &mut problems);
            let rank = sql_int(g(1)).unwrap_or(-1);
            let id = sql_text(g(2), &format!("trending {list}.entity_id"), &mut problems);
            let score = sql_f64(g(3), &format!("trending {list}#{rank}.score"), &mut problems);
            let count = sql_u64(g(4), &format!("trending {list}#{rank}.count"), &mut problems);
            let entries = snap.trending.entry(list.clone()).or_default();
            if rank != entries.len() as i64 + 1 {
                problems.push(format!("trending {list}: rank {rank} where {} was due (ranks must be 1..n)", entries.len() + 1));
            }
            entries.push((id, score, count));
        }
    }
    snap.problems = problems;
    snap
}

// ---------------------------------------------------------------------------
// Trend deltas
// ---------------------------------------------------------------------------

fn delta_values(v: &Value, what: &str, line: usize, problems: &mut Vec<String>) -> Option<TrendRow> {
    let int = |f: &str, problems: &mut Vec<String>| match v.get(f).and_then(Value::as_u64) {
        Some(i) => i,
        None => {
            problems.push(format!("line {line}: {what}.{f} is not a non-negative integer: {}", show(v.get(f))));
            0
        }
    };
    let window_ms = int("window_ms", problems);
    let count = int("count", problems);
    let baseline_count = int("baseline_count", problems);
    let score = match v.get("score").and_then(Value::as_f64) {
        Some(s) => s,
        None => {
            problems.push(format!("line {line}: {what}.score is not a number: {}", show(v.get("score"))));
            f64::NAN
        }
    };
    Some(TrendRow { window_ms, count, baseline_count, score })
}

fn same_row(a: &TrendRow, b: &TrendRow) -> bool {
    a.window_ms == b.window_ms && a.count == b.count && a.baseline_count == b.baseline_count && close(a.score, b.score)
}

/// Applies trend-delta messages (SPEC section 6), one JSON object per
/// non-empty line, in order. Returns the resulting trend map and every
/// violation found (uncapped): unparseable lines, missing fields, a `prev`
/// that is not the current state of its key (null for a new record),
/// deleting an absent record, a message that changes nothing, a deleted
/// message with non-null values, `as_of` going backwards, two messages for
/// one key at one `as_of`.
pub fn replay_delta_lines(text: &str) -> (BTreeMap<String, TrendRow>, Vec<String>) {
    let mut state: BTreeMap<String, TrendRow> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut last_as_of: Option<u64> = None;
    let mut seen_at: BTreeMap<String, u64> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_str(raw) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                problems.push(format!("line {line}: not a JSON object: {}", clip(raw, 120)));
                continue;
            }
            Err(e) => {
                problems.push(format!("line {line}: not JSON ({e}): {}", clip(raw, 120)));
                continue;
            }
        };
        let (Some(kind), Some(id)) = (msg.get("entity_type").and_then(Value::as_str), msg.get("entity_id").and_then(Value::as_str)) else {
            problems.push(format!("line {line}: entity_type / entity_id missing or not strings: {}", clip(raw, 120)));
            continue;
        };
        let key = format!("{kind}:{id}");
        match msg.get("as_of").and_then(Value::as_u64) {
            Some(at) => {
                if last_as_of.is_some_and(|l| at < l) {
                    problems.push(format!("line {line} ({key}): as_of {at} is before the previous message's {}", last_as_of.unwrap_or(0)));
                }
                last_as_of = Some(last_as_of.map_or(at, |l| l.max(at)));
                if seen_at.insert(key.clone(), at) == Some(at) {
                    problems.push(format!("line {line} ({key}): a second message for this key at as_of {at}"));
                }
            }
            None => problems.push(format!("line {line} ({key}): as_of missing or not an integer: {}", show(msg.get("as_of")))),
        }
        let deleted = match msg.get("deleted") {
            Some(Value::Bool(b)) => *b,
            other => {
                problems.push(format!("line {line} ({key}): deleted is not a boolean: {}", show(other)));
                false
            }
        };
        let prev = match msg.get("prev") {
            None => {
                problems.push(format!("line {line} ({key}): prev missing (must be null or an object)"));
                None
            }
            Some(Value::Null) => None,
            Some(p @ Value::Object(_)) => delta_values(p, "prev", line, &mut problems),
            Some(other) => {
                problems.push(format!("line {line} ({key}): prev is neither null nor an object: {}", show(Some(other))));
                None
            }
        };
        let current = state.get(&key).copied();
        match (&prev, &current) {
            (None, None) => {}
            (Some(p), Some(c)) if same_row(p, c) => {}
            (p, c) => problems.push(format!(
                "line {line} ({key}): prev {} but the current state is {}",
                p.as_ref().map_or("null".to_string(), TrendRow::to_string),
                c.as_ref().map_or("absent (prev must be null)".to_string(), TrendRow::to_string)
            )),
        }
        if deleted {
            for f in ["window_ms", "count", "baseline_count", "score"] {
                if !msg.get(f).is_some_and(Value::is_null) {
                    problems.push(format!("line {line} ({key}): deleted message has {f} = {} (must be null)", show(msg.get(f))));
                }
            }
            if prev.is_none() {
                problems.push(format!("line {line} ({key}): deleted message without prev"));
            }
            if current.is_none() {
                problems.push(format!("line {line} ({key}): deletes a record that does not exist"));
            }
            state.remove(&key);
        } else {
            let Some(new) = delta_values(&msg, "message", line, &mut problems) else { continue };
            if let Some(p) = &prev {
                if p.window_ms == new.window_ms && p.count == new.count && p.baseline_count == new.baseline_count && p.score == new.score {
                    problems.push(format!("line {line} ({key}): message changes nothing ({})", new));
                }
            }
            state.insert(key, new);
        }
    }
    (state, problems)
}

/// [`replay_delta_lines`] over a file; panics if it cannot be read.
pub fn replay_deltas_detailed(path: &Path) -> (BTreeMap<String, TrendRow>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read the trend deltas {}: {e}", path.display()));
    replay_delta_lines(&text)
}

/// Replays the trend-delta file at `path` in order: Ok(the trend map) or
/// Err(the violations, one per line, capped).
pub fn replay_deltas(path: &Path) -> Result<BTreeMap<String, TrendRow>, String> {
    let (state, problems) = replay_deltas_detailed(path);
    if problems.is_empty() {
        Ok(state)
    } else {
        Err(cap(problems).join("\n"))
    }
}

// ---------------------------------------------------------------------------
// Dead letters
// ---------------------------------------------------------------------------

/// Dead letters per `reason` in a JSON Lines file. Lines that are not JSON
/// objects with a string `reason` are counted under `"<malformed>"`, records
/// without a string `detail` / `source` / `raw` also under
/// `"<missing detail/source/raw>"`. Panics if the file cannot be read.
pub fn dead_letter_counts(path: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read the dead letters {}: {e}", path.display()));
    dead_letter_counts_of(&text)
}

/// [`dead_letter_counts`] of dead-letter records given as text, one per line
/// (a file's contents, or a topic's messages).
pub fn dead_letter_counts_of(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Option<Value> = serde_json::from_str(line).ok();
        match v.as_ref().and_then(|v| v.get("reason")).and_then(Value::as_str) {
            Some(reason) => {
                *counts.entry(reason.to_string()).or_insert(0) += 1;
                let v = v.as_ref().unwrap_or(&Value::Null);
                if !["detail", "source", "raw"].iter().all(|f| v.get(f).is_some_and(Value::is_string)) {
                    *counts.entry("<missing detail/source/raw>".to_string()).or_insert(0) += 1;
                }
            }
            None => *counts.entry("<malformed>".to_string()).or_insert(0) += 1,
        }
    }
    counts
}

/// Checks dead-letter counts against `expected["dead_letters"]`: every
/// expected reason matches (0 = absent or 0), and no other reason occurs.
pub fn check_dead_letters(expected: &Value, counts: &BTreeMap<String, u64>) -> Vec<String> {
    let want: BTreeMap<String, u64> = expected
        .get("dead_letters")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or_else(|| panic!("expected.json: dead_letters.{k} is not an integer"))))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let reasons: BTreeSet<&String> = want.keys().chain(counts.keys()).collect();
    for reason in reasons {
        let w = want.get(reason).copied().unwrap_or(0);
        let g = counts.get(reason).copied().unwrap_or(0);
        if w != g {
            out.push(format!("dead letters {reason:?}: expected {w}, got {g}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Exact dumps (determinism, idempotence)
// ---------------------------------------------------------------------------

/// What [`dump_sqlite`] includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpMode {
    /// user_features (user_id, features), trends without `as_of`, trending,
    /// and `meta.as_of`: what must not depend on the worker count.
    IgnoreRowAsOf,
    /// Every row of every table, all columns: what a re-run must not touch.
    Everything,
}

/// One rendered row per line, per table; values exact (floats as `{:?}`,
/// which round-trips) and typed (`i:`, `r:`, `t:`, `b:`, `null`).
pub type StoreDump = BTreeMap<String, Vec<String>>;

fn render(v: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => "null".to_string(),
        ValueRef::Integer(i) => format!("i:{i}"),
        ValueRef::Real(f) => format!("r:{f:?}"),
        ValueRef::Text(t) => format!("t:{:?}", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("b:{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

fn dump_query(conn: &rusqlite::Connection, path: &Path, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("store {}: {sql}: {e}", path.display()));
    let n = stmt.column_count();
    let mut rows = stmt.query([]).unwrap_or_else(|e| panic!("store {}: {sql}: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap_or_else(|e| panic!("store {}: {sql}: {e}", path.display())) {
        let cells: Vec<String> = (0..n).map(|i| render(row.get_ref(i).expect("column in range"))).collect();
        out.push(cells.join(" | "));
    }
    out
}

/// An exact, ordered dump of the SQLite store at `path`.
pub fn dump_sqlite(path: &Path, mode: DumpMode) -> StoreDump {
    let conn = open_sqlite(path);
    let mut dump = StoreDump::new();
    match mode {
        DumpMode::IgnoreRowAsOf => {
            for (table, sql) in [
                ("user_features", "SELECT user_id, features FROM user_features ORDER BY user_id"),
                (
                    "trends",
                    "SELECT entity_type, entity_id, window_ms, count, baseline_count, score FROM trends ORDER BY entity_type, entity_id",
                ),
                ("trending", "SELECT list, rank, entity_id, score, count FROM trending ORDER BY list, rank"),
                ("meta.as_of", "SELECT value FROM meta WHERE key = 'as_of'"),
            ] {
                dump.insert(table.to_string(), dump_query(&conn, path, sql));
            }
        }
        DumpMode::Everything => {
            let tables: Vec<String> = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
                .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
                .unwrap_or_else(|e| die(path, "sqlite_master", e));
            dump.insert("<schema>".to_string(), dump_query(&conn, path, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"));
            for name in tables {
                let quoted = format!("\"{}\"", name.replace('"', "\"\""));
                let ncols: usize = conn
                    .prepare(&format!("SELECT * FROM {quoted}"))
                    .unwrap_or_else(|e| panic!("store {}: table {name}: {e}", path.display()))
                    .column_count();
                let order: Vec<String> = (1..=ncols).map(|i| i.to_string()).collect();
                let sql = format!("SELECT * FROM {quoted} ORDER BY {}", order.join(", "));
                dump.insert(name, dump_query(&conn, path, &sql));
            }
        }
    }
    dump
}

/// Differences between two dumps (uncapped per table, at most `max` lines in all).
pub fn diff_dumps(a_label: &str, a: &StoreDump, b_label: &str, b: &StoreDump, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let tables: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for t in tables {
        let empty = Vec::new();
        let (ra, rb) = (a.get(t).unwrap_or(&empty), b.get(t).unwrap_or(&empty));
        if ra == rb {
            continue;
        }
        let sa: BTreeSet<&String> = ra.iter().collect();
        let sb: BTreeSet<&String> = rb.iter().collect();
        let only_a: Vec<&&String> = sa.difference(&sb).collect();
        let only_b: Vec<&&String> = sb.difference(&sa).collect();
        out.push(format!(
            "table {t}: {} rows in {a_label}, {} in {b_label}; {} rows only in {a_label}, {} only in {b_label}",
            ra.len(),
            rb.len(),
            only_a.len(),
            only_b.len()
        ));
        for r in only_a.iter().take(5) {
            out.push(format!("  only in {a_label}: {}", clip(r, 300)));
        }
        for r in only_b.iter().take(5) {
            out.push(format!("  only in {b_label}: {}", clip(r, 300)));
        }
        if only_a.is_empty() && only_b.is_empty() {
            out.push("  same rows, different order or multiplicity".to_string());
        }
    }
    out = cap_at(out, max);
    out
}

// ---------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------

/// The SPEC section 7 SQLite schema.
pub const SPEC_SCHEMA: &str = "
CREATE TABLE user_features(user_id TEXT PRIMARY KEY, as_of INTEGER NOT NULL, features TEXT NOT NULL);
CREATE TABLE trends(entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, as_of INTEGER NOT NULL,
       window_ms INTEGER NOT NULL, count INTEGER NOT NULL, baseline_count INTEGER NOT NULL,
       score REAL NOT NULL, PRIMARY KEY (entity_type, entity_id));
CREATE TABLE trending(list TEXT NOT NULL, rank INTEGER NOT NULL, entity_id TEXT NOT NULL,
         score REAL NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (list, rank));
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

fn table_columns(conn: &rusqlite::Connection, table: &str) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info(\"{table}\")")).expect("PRAGMA table_info");
    let rows = stmt
        .query_map([], |r| {
            Ok(format!(
                "{} {} notnull={} pk={}",
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?.to_uppercase(),
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(5)?
            ))
        })
        .expect("PRAGMA table_info");
    rows.map(|r| r.expect("PRAGMA table_info row")).collect()
}

/// Differences between the store's four tables and [`SPEC_SCHEMA`]
/// (column names, declared types, NOT NULL, primary-key positions).
pub fn schema_problems(path: &Path) -> Vec<String> {
    let spec = rusqlite::Connection::open_in_memory().expect("in-memory SQLite");
    spec.execute_batch(SPEC_SCHEMA).expect("SPEC schema");
    let conn = open_sqlite(path);
    let mut out = Vec::new();
    for table in ["user_features", "trends", "trending", "meta"] {
        let want = table_columns(&spec, table);
        let got = table_columns(&conn, table);
        if got.is_empty() {
            out.push(format!("schema: table {table} is missing"));
        } else if want != got {
            out.push(format!("schema: table {table}: expected columns [{}], got [{}]", want.join(", "), got.join(", ")));
        }
    }
    out
}

/// Formats a list of (title, lines) sections, each cut to `per_section` lines.
pub fn format_sections(sections: &[(&str, Vec<String>)], per_section: usize) -> String {
    let mut s = String::new();
    for (title, lines) in sections {
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(s, "    [{title}]");
        for l in lines.iter().take(per_section) {
            let _ = writeln!(s, "      {l}");
        }
        if lines.len() > per_section {
            let _ = writeln!(s, "      (+{} more)", lines.len() - per_section);
        }
    }
    s
}

/// Writes `snap` as a fresh SPEC section 7 SQLite store at `path` (every
/// row's `as_of` = `snap.as_of`, or 0): for testing the readers.
pub fn write_sqlite(snap: &StoreSnapshot, path: &Path) {
    let _ = std::fs::remove_file(path);
    let mut conn = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    conn.execute_batch(SPEC_SCHEMA).expect("SPEC schema");
    let at = snap.as_of.unwrap_or(0) as i64;
    let tx = conn.transaction().expect("transaction");
    for (user, features) in &snap.users {
        tx.execute("INSERT INTO user_features(user_id, as_of, features) VALUES (?1, ?2, ?3)", rusqlite::params![user, at, features.to_string()])
            .expect("insert user");
    }
    for (key, t) in &snap.trends {
        let (kind, id) = key.split_once(':').unwrap_or_else(|| panic!("trend key {key:?} is not <type>:<id>"));
        tx.execute(
            "INSERT INTO trends(entity_type, entity_id, as_of, window_ms, count, baseline_count, score) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![kind, id, at, t.window_ms as i64, t.count as i64, t.baseline_count as i64, t.score],
        )
        .expect("insert trend");
    }
    for (list, entries) in &snap.trending {
        for (i, (id, score, count)) in entries.iter().enumerate() {
            tx.execute(
                "INSERT INTO trending(list, rank, entity_id, score, count) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![list, i as i64 + 1, id, score, *count as i64],
            )
            .expect("insert trending");
        }
    }
    if let Some(a) = snap.as_of {
        tx.execute("INSERT INTO meta(key, value) VALUES ('as_of', ?1)", rusqlite::params![a.to_string()]).expect("insert meta");
    }
    tx.commit().expect("commit");
}
