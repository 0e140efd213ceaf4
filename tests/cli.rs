//! The command line as a user meets it: bad input never stops a run, bad
//! config and missing files give one clear line and a non-zero exit, and
//! `get` reads back what `run` wrote.

mod common;

use common::{dead_letter_counts, parse_summary, read_sqlite, run_clickflow, TempOut, STORE_FILE};
use std::path::Path;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn random_bytes_and_truncated_lines_are_dead_lettered_never_a_panic() {
    let dir = TempOut::new("random-bytes");
    let mut bytes = Vec::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let good = br#"{"ts": 1704844800000, "user_id": "u1", "type": "view", "product_id": "p\u00e9", "category": "c", "price": 1.5}"#;
    let mut truncated = 0;
    for i in 0..3000u64 {
        match i % 3 {
            0 => {
                // Random bytes, never a newline (that would make two lines) nor only white space.
                let n = 1 + (next() % 200) as usize;
                let mut line: Vec<u8> = (0..n).map(|_| (next() % 255) as u8 + 1).map(|b| if b == b'\n' { b'x' } else { b }).collect();
                line[0] = b'#';
                bytes.extend_from_slice(&line);
            }
            1 => {
                let cut = 1 + (next() as usize) % (good.len() - 1);
                bytes.extend_from_slice(&good[..cut]);
                truncated += 1;
            }
            _ => bytes.extend_from_slice(String::from_utf8_lossy(good).replace("\"u1\"", &format!("\"u{i}\"")).as_bytes()),
        }
        bytes.push(b'\n');
    }
    let input = dir.path().join("noise.jsonl");
    write(&input, &bytes);
    let out = dir.path().join("out");
    let o = run_clickflow(["run", "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet", "--json", "--workers", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = parse_summary(&o).unwrap();
    assert_eq!(summary["lines_read"], 3000);
    assert_eq!(summary["invalid"], 2000, "all random and {truncated} truncated lines");
    assert_eq!(summary["accepted"], 1000);
    let dl = dead_letter_counts(&out.join("dead-letters.jsonl"));
    assert_eq!(dl.get("invalid"), Some(&2000));
}

#[test]
fn missing_input_file_is_one_clear_error() {
    let dir = TempOut::new("missing-input");
    let o = run_clickflow(["run", "--input", "/nonexistent/events.jsonl", "--out", dir.path().to_str().unwrap(), "--quiet"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("cannot open input file /nonexistent/events.jsonl"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_truncated_gzip_input_is_an_error_and_the_store_claims_nothing_past_what_was_read() {
    use std::io::{BufRead, Write};
    let dir = TempOut::new("truncated-gz");
    let t0 = 1_709_251_200_000u64;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..200_000u64 {
        writeln!(gz, r#"{{"ts": {}, "user_id": "u{}", "type": "view", "product_id": "p{}"}}"#, t0 + i * 1000, i % 97, i % 13).unwrap();
    }
    let full = gz.finish().unwrap();
    let input = dir.path().join("events.jsonl.gz");
    write(&input, &full[..full.len() * 6 / 10]);
    // The largest ts of the lines that can be read back.
    let mut readable = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&full[..full.len() * 6 / 10]));
    let (mut line, mut max_ts) = (String::new(), 0u64);
    while readable.read_line(&mut line).is_ok_and(|n| n > 0) {
        if let Some(ts) = line.strip_prefix(r#"{"ts": "#).and_then(|r| r.split(',').next()).and_then(|t| t.parse().ok()) {
            max_ts = ts;
        }
        line.clear();
    }
    assert!(max_ts > t0, "some lines are readable");
    let out = dir.path().join("out");
    let o = run_clickflow(["run", "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot read") && err.contains("events.jsonl.gz") && !err.contains("panicked"), "{err}");
    // A read error is not the end of the input: no tick at or past the last
    // ts read is claimed (the end of input would close one above it).
    let as_of = read_sqlite(&out.join(STORE_FILE)).as_of;
    assert!(as_of.is_none_or(|a| a < max_ts), "as_of {as_of:?} but the last readable ts is {max_ts}");
}

#[test]
fn unwritable_output_directory_is_one_clear_error() {
    let dir = TempOut::new("unwritable");
    let blocker = dir.path().join("file");
    write(&blocker, b"not a directory");
    let input = dir.path().join("e.jsonl");
    write(&input, br#"{"ts": 1, "user_id": "u", "type": "view"}"#);
    let o = run_clickflow(["run", "--input", input.to_str().unwrap(), "--out", blocker.join("out").to_str().unwrap(), "--quiet"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("cannot create the output directory"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_config_names_the_key() {
    let dir = TempOut::new("bad-config");
    for (text, key) in [
        ("[clock]\ntick = \"soon\"\n", "`clock.tick`"),
        ("[trends]\nwidths = [\"15m\", \"2x\"]\n", "`trends.widths[1]`"),
        ("[sessions]\ngapp = \"30m\"\n", "gapp"),
        ("[trends]\nbaseline = \"1h\"\n", "`trends.baseline`"),
    ] {
        let cfg = dir.path().join("c.toml");
        write(&cfg, text.as_bytes());
        let o = run_clickflow(["run", "--config", cfg.to_str().unwrap(), "--out", dir.path().join("o").to_str().unwrap(), "--quiet"]);
        assert!(!o.status.success(), "{text}");
        let err = stderr(&o);
        assert!(err.contains(key), "{text:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn get_reads_back_users_trends_and_trending() {
    let dir = TempOut::new("get");
    let input = dir.path().join("e.jsonl");
    let mut lines = String::new();
    for (i, user) in ["u1", "u2", "u3", "u1"].iter().enumerate() {
        lines.push_str(&format!(
            "{{\"ts\": {}, \"user_id\": \"{user}\", \"type\": \"view\", \"product_id\": \"p1\", \"category\": \"shoes\"}}\n",
            1_704_844_800_000u64 + i as u64 * 1000
        ));
    }
    write(&input, lines.as_bytes());
    let out = dir.path().join("out");
    let o = run_clickflow(["run", "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let get = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["get", "--out", out.to_str().unwrap()];
        all.extend_from_slice(args);
        let o = run_clickflow(all);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let u1 = get(&["user", "u1"]);
    assert_eq!(u1["features"]["views_1d"], 2);
    assert_eq!(u1["store_as_of"], 1_704_844_804_000u64);
    assert_eq!(get(&["user", "nobody"])["features"], serde_json::Value::Null);
    let t = get(&["trend", "product", "p1"]);
    assert_eq!(t["trend"]["count"], 4);
    let g = get(&["trending"]);
    assert_eq!(g["entries"][0]["entity_id"], "p1");
    let c = get(&["trending", "category:shoes"]);
    assert_eq!(c["entries"][0]["entity_id"], "p1");
    let o = run_clickflow(["get", "--out", dir.path().join("none").to_str().unwrap(), "user", "u1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no store at"));
}

#[test]
fn a_run_with_other_settings_over_an_existing_store_stops_naming_the_keys() {
    // SPEC section 11: the store records the section 9 settings; a run with
    // others must not mix its records with the store's.
    let dir = TempOut::new("settings");
    let case = common::case_named("session_gap");
    let out = dir.path().join("out");
    let (same, other) = (dir.path().join("same.toml"), dir.path().join("other.toml"));
    write(&same, b"[features]\nwindows = [\"1d\", \"7d\"]\n");
    write(&other, b"[features]\nwindows = [\"1d\"]\n\n[sessions]\ngap = \"10m\"\n");
    let run = |cfg: &Path| run_clickflow(["run", "--config", cfg.to_str().unwrap(), "--input", case.events.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
    assert!(run(&same).status.success());
    let store = out.join(STORE_FILE);
    let before = common::dump_sqlite(&store, common::DumpMode::Everything);
    let o = run(&other);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("was written with other settings") && err.contains("features.windows: ") && err.contains("sessions.gap: 1800000 there, 600000 here"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(common::diff_dumps("before", &before, "after", &common::dump_sqlite(&store, common::DumpMode::Everything), 10).is_empty(), "the refused run wrote to the store");
    let o = run(&same);
    assert!(o.status.success(), "the same settings run on: {}", stderr(&o));
}
