//! The Redis online store against a real Redis (started by
//! `scripts/services.sh start`; URL from `CLICKFLOW_REDIS_URL`, else
//! `.services/env`, else redis://127.0.0.1:16379/): every conformance case
//! through Redis, a re-run that writes nothing, and a Redis that restarts
//! empty in the middle of a run.

mod common;

use common::services::{clear_redis as clear, connect_redis as connect, dump_redis as dump, expected_for_redis, read_redis, redis_url, OwnRedis};
use common::{case_named, cases, compare_uncapped, largest_case, run_clickflow, Case, TempOut};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn config(dir: &Path, case: &Case, url: &str, prefix: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let base = std::fs::read_to_string(&case.config).unwrap();
    std::fs::write(&path, format!("{base}\n[store]\nkind = \"redis\"\n\n[redis]\nurl = \"{url}\"\nprefix = \"{prefix}\"\n{extra}")).unwrap();
    path
}

#[test]
fn every_conformance_case_through_redis_matches_expected() {
    let url = redis_url();
    let mut conn = connect(&url);
    let mut failures = Vec::new();
    for case in cases() {
        for workers in [1, 4] {
            let prefix = format!("test:{}:{workers}:", case.name);
            clear(&mut conn, &prefix);
            let out = TempOut::new("redis");
            let cfg = config(out.path(), &case, &url, &prefix, "");
            let o = run_clickflow(["run", "--config", cfg.to_str().unwrap(), "--input", case.events.to_str().unwrap(), "--out", out.path().to_str().unwrap(), "--workers", &workers.to_string(), "--quiet"]);
            if !o.status.success() {
                failures.push(format!("{} ({workers} workers): {}", case.name, String::from_utf8_lossy(&o.stderr)));
                continue;
            }
            let problems = compare_uncapped(&expected_for_redis(&case), &read_redis(&mut conn, &prefix));
            if !problems.is_empty() {
                failures.push(format!("{} ({workers} workers):\n  {}", case.name, problems.into_iter().take(12).collect::<Vec<_>>().join("\n  ")));
            }
            clear(&mut conn, &prefix);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_rerun_over_the_same_input_writes_nothing_to_redis() {
    let url = redis_url();
    let mut conn = connect(&url);
    let case = case_named("session_gap");
    let prefix = "test:rerun:";
    clear(&mut conn, prefix);
    let out = TempOut::new("redis-rerun");
    let cfg = config(out.path(), &case, &url, prefix, "");
    let args = ["run", "--config", cfg.to_str().unwrap(), "--input", case.events.to_str().unwrap(), "--out", out.path().to_str().unwrap(), "--quiet"];
    assert!(run_clickflow(args).status.success());
    let first = dump(&mut conn, prefix);
    assert!(!first.is_empty());
    assert!(run_clickflow(args).status.success());
    assert_eq!(first, dump(&mut conn, prefix), "the second run changed the store");
    clear(&mut conn, prefix);
}

#[test]
fn redis_restarting_empty_mid_run_loses_nothing() {
    let case = largest_case();
    let dir = TempOut::new("redis-restart");
    let mut redis = OwnRedis::start();
    let cfg = config(dir.path(), &case, &redis.url, "cf:", "\n[input]\nbatch_lines = 16384\n");
    let run = Command::new(env!("CARGO_BIN_EXE_clickflow"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--input", case.events.to_str().unwrap(), "--out", dir.path().to_str().unwrap(), "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = redis.restart_under(run, "cf:", Duration::from_millis(700));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let snap = read_redis(&mut redis.connect(), "cf:");
    assert!(out.status.success(), "{stderr}");
    let problems = compare_uncapped(&expected_for_redis(&case), &snap);
    assert!(problems.is_empty(), "{}\n{stderr}", problems.into_iter().take(20).collect::<Vec<_>>().join("\n"));
    assert!(stderr.contains("unreachable"), "the run never saw the outage: {stderr}");
}

#[test]
fn a_run_with_other_settings_over_a_redis_store_stops_naming_the_keys() {
    let url = redis_url();
    let mut conn = connect(&url);
    let case = case_named("session_gap");
    let prefix = "test:settings:";
    clear(&mut conn, prefix);
    let out = TempOut::new("redis-settings");
    let cfg = |name: &str, extra: &str| {
        let path = out.path().join(name);
        std::fs::write(&path, format!("{extra}\n[store]\nkind = \"redis\"\n\n[redis]\nurl = \"{url}\"\nprefix = \"{prefix}\"\n")).unwrap();
        path
    };
    let (same, other) = (cfg("same.toml", ""), cfg("other.toml", "[trends]\ntrending_k = 3\n"));
    let run = |cfg: &Path| run_clickflow(["run", "--config", cfg.to_str().unwrap(), "--input", case.events.to_str().unwrap(), "--out", out.path().to_str().unwrap(), "--quiet"]);
    assert!(run(&same).status.success());
    let before = dump(&mut conn, prefix);
    let o = run(&other);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("was written with other settings") && err.contains("trends.trending_k: 20 there, 3 here") && !err.contains("panicked"), "{err}");
    assert_eq!(before, dump(&mut conn, prefix), "the refused run wrote to the store");
    assert!(run(&same).status.success());
    clear(&mut conn, prefix);
}
