//! The real clickstream samples in `../shared/data/real/` (Taobao, OTTO:
//! gaps, heavy users, skewed products), discovered at run time and replayed
//! with 1 and 2 workers, must give the store that the from-scratch oracle
//! computes for `A_end` — their expected outputs are not published, so the
//! oracle stands in for them.

mod common;
#[path = "../dataflows/tests/oracle/mod.rs"]
mod oracle;

use clickflow_dataflows::Params;
use common::{compare, read_maybe_gz, read_sqlite, run_clickflow, TempOut};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

fn samples() -> Vec<PathBuf> {
    let dir = common::conformance_dir().join("../data/real");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".jsonl") || p.to_string_lossy().ends_with(".jsonl.gz"))
        .collect();
    files.sort();
    files
}

fn expected(snapshot: &oracle::Snapshot, as_of: Option<u64>) -> Value {
    let trends: Map<String, Value> = snapshot
        .trends
        .iter()
        .map(|(k, t)| (k.clone(), json!({"window_ms": t.window_ms, "count": t.count, "baseline_count": t.baseline_count, "score": t.score})))
        .collect();
    let trending: Map<String, Value> = snapshot
        .trending
        .iter()
        .map(|(list, entries)| (list.clone(), Value::Array(entries.iter().map(|(id, s, c)| json!([id, s, c])).collect())))
        .collect();
    json!({"as_of": as_of, "users": snapshot.users, "trends": trends, "trending": trending})
}

#[test]
fn real_samples_match_the_oracle_with_1_and_2_workers() {
    let files = samples();
    assert!(!files.is_empty(), "no samples found");
    let params = Params::default();
    let mut failures = Vec::new();
    for file in &files {
        let text = read_maybe_gz(file);
        let lines: Vec<Vec<u8>> = text.split('\n').map(|l| l.as_bytes().to_vec()).collect();
        let admitted = oracle::admit(&lines, &params);
        let want = match admitted.a_end {
            Some(at) => oracle::snapshot_as_of(&admitted.events, &params, at),
            None => oracle::Snapshot::default(),
        };
        let want = expected(&want, admitted.a_end);
        for workers in [1, 2] {
            let out = TempOut::new("real");
            let o = run_clickflow(["run", "--input", file.to_str().unwrap(), "--out", out.path().to_str().unwrap(), "--workers", &workers.to_string(), "--quiet"]);
            if !o.status.success() {
                failures.push(format!("{}: exit {:?}: {}", file.display(), o.status, String::from_utf8_lossy(&o.stderr)));
                continue;
            }
            let problems = compare(&want, &read_sqlite(&out.path().join("features.db")));
            if !problems.is_empty() {
                failures.push(format!("{} with {workers} workers:\n  {}", file.display(), problems.join("\n  ")));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
