//! The real clickstream samples (Taobao, OTTO: gaps, heavy users, skewed
//! products), replayed with 1 and 2 workers, must give the store that the
//! from-scratch oracle computes for `A_end`; their expected outputs are not
//! published, so the oracle stands in for them. The samples are the
//! repository's copies in `tests/data/real/` and, when `../shared/data/real`
//! exists, every sample there that is not byte-identical to a copy.

mod common;
#[path = "../dataflows/tests/oracle/mod.rs"]
mod oracle;

use clickflow_dataflows::Params;
use common::{cap, compare_snapshots, json_lines, read_maybe_gz_bytes, read_sqlite, run_clickflow, shared_dir, TempOut};
use std::path::{Path, PathBuf};

fn samples_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".jsonl") || p.to_string_lossy().ends_with(".jsonl.gz"))
        .collect();
    files.sort();
    files
}

/// The repository's samples, then the shared ones that differ from every copy.
fn samples() -> Vec<PathBuf> {
    let mut files = samples_in(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/real"));
    let shared = shared_dir().join("data/real");
    if shared.is_dir() {
        let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
        let copies: Vec<Vec<u8>> = files.iter().map(|p| read(p)).collect();
        for file in samples_in(&shared) {
            if !copies.contains(&read(&file)) {
                files.push(file);
            }
        }
    }
    files
}

#[test]
fn real_samples_match_the_oracle_with_1_and_2_workers() {
    let files = samples();
    assert!(files.len() >= 3, "the repository holds three samples, found {files:?}");
    let params = Params::default();
    let mut failures = Vec::new();
    for file in &files {
        let admitted = oracle::admit(&json_lines(&read_maybe_gz_bytes(file)), &params);
        let want = oracle::store_at_end(&admitted, &params);
        for workers in [1, 2] {
            let out = TempOut::new("real");
            let o = run_clickflow(["run", "--input", file.to_str().unwrap(), "--out", out.path().to_str().unwrap(), "--workers", &workers.to_string(), "--quiet"]);
            if !o.status.success() {
                failures.push(format!("{}: exit {:?}: {}", file.display(), o.status, String::from_utf8_lossy(&o.stderr)));
                continue;
            }
            let problems = cap(compare_snapshots(&want, &read_sqlite(&out.path().join("features.db"))));
            if !problems.is_empty() {
                failures.push(format!("{} with {workers} workers:\n  {}", file.display(), problems.join("\n  ")));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
