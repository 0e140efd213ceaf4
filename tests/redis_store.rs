//! The Redis online store against a real Redis (started by
//! `scripts/services.sh start`; URL from `CLICKFLOW_REDIS_URL`, else
//! `.services/env`, else redis://127.0.0.1:16379/): every conformance case
//! through Redis, a re-run that writes nothing, and a Redis that restarts
//! empty in the middle of a run.

mod common;

use common::{cases, compare_uncapped, run_clickflow, Case, StoreSnapshot, TempOut, TrendRow};
use redis::Commands;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn redis_url() -> String {
    if let Ok(url) = std::env::var("CLICKFLOW_REDIS_URL") {
        return url;
    }
    let env = Path::new(env!("CARGO_MANIFEST_DIR")).join(".services/env");
    std::fs::read_to_string(env)
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CLICKFLOW_REDIS_URL=").map(str::to_owned)))
        .unwrap_or_else(|| "redis://127.0.0.1:16379/".into())
}

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("no Redis at {url} ({e}): run `scripts/services.sh start` first"))
}

fn clear(conn: &mut redis::Connection, prefix: &str) {
    let keys: Vec<String> = conn.keys(format!("{prefix}*")).unwrap();
    for k in keys {
        let _: () = conn.del(k).unwrap();
    }
}

fn json_field(v: &str) -> Value {
    serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()))
}

/// Reads everything under `prefix` into the harness's snapshot form. Trending
/// sorted sets carry no counts or tie order: entries come back by score
/// (descending), then id, with count 0, and are compared as such.
fn read_redis(conn: &mut redis::Connection, prefix: &str) -> StoreSnapshot {
    let mut snap = StoreSnapshot::default();
    let meta: Option<String> = conn.hget(format!("{prefix}meta"), "as_of").unwrap();
    snap.as_of = meta.map(|v| v.parse().unwrap());
    let keys: Vec<String> = conn.keys(format!("{prefix}*")).unwrap();
    for key in keys {
        let rest = &key[prefix.len()..];
        if let Some(user) = rest.strip_prefix("user:") {
            let fields: BTreeMap<String, String> = conn.hgetall(&key).unwrap();
            let mut obj = serde_json::Map::new();
            for (k, v) in fields {
                if k != "as_of" {
                    obj.insert(k, json_field(&v));
                }
            }
            for nullable in ["last_cart_session_ts", "last_purchase_ts", "cart_session_gap_ms"] {
                obj.entry(nullable).or_insert(Value::Null);
            }
            snap.users.insert(user.to_owned(), Value::Object(obj));
        } else if let Some(trend) = rest.strip_prefix("trend:") {
            let f: BTreeMap<String, String> = conn.hgetall(&key).unwrap();
            snap.trends.insert(
                trend.to_owned(),
                TrendRow { window_ms: f["window_ms"].parse().unwrap(), count: f["count"].parse().unwrap(), baseline_count: f["baseline_count"].parse().unwrap(), score: f["score"].parse().unwrap() },
            );
        } else if let Some(list) = rest.strip_prefix("trending:") {
            let entries: Vec<(String, f64)> = conn.zrevrange_withscores(&key, 0, -1).unwrap();
            snap.trending.insert(list.to_owned(), sorted(entries.into_iter().map(|(id, s)| (id, s, 0)).collect()));
        }
    }
    snap
}

fn sorted(mut entries: Vec<(String, f64, u64)>) -> Vec<(String, f64, u64)> {
    entries.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    entries
}

/// expected.json with trending lists in the form Redis can hold.
fn expected_for_redis(case: &Case) -> Value {
    let mut want = case.expected();
    if let Some(Value::Object(lists)) = want.get_mut("trending") {
        for entries in lists.values_mut() {
            let mut v: Vec<(String, f64, u64)> = entries.as_array().unwrap().iter().map(|e| (e[0].as_str().unwrap().to_owned(), e[1].as_f64().unwrap(), 0)).collect();
            v = sorted(v);
            *entries = Value::Array(v.into_iter().map(|(id, s, c)| serde_json::json!([id, s, c])).collect());
        }
    }
    want
}

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

fn dump(conn: &mut redis::Connection, prefix: &str) -> BTreeMap<String, String> {
    let keys: Vec<String> = conn.keys(format!("{prefix}*")).unwrap();
    let mut out = BTreeMap::new();
    for k in keys {
        let kind: String = redis::cmd("TYPE").arg(&k).query(conn).unwrap();
        let v = match kind.as_str() {
            "hash" => format!("{:?}", conn.hgetall::<_, BTreeMap<String, String>>(&k).unwrap()),
            _ => format!("{:?}", conn.zrange_withscores::<_, Vec<(String, f64)>>(&k, 0, -1).unwrap()),
        };
        out.insert(k, v);
    }
    out
}

#[test]
fn a_rerun_over_the_same_input_writes_nothing_to_redis() {
    let url = redis_url();
    let mut conn = connect(&url);
    let case = cases().into_iter().find(|c| c.name == "session_gap").unwrap_or_else(|| cases().remove(0));
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
    let case = cases().into_iter().max_by_key(|c| c.events_size()).expect("a case");
    let dir = TempOut::new("redis-restart");
    // A Redis of this test's own, on a free port, without persistence.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let start_redis = || {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/services.sh installs it)")
    };
    let url = format!("redis://127.0.0.1:{port}/");
    let wait_up = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) {
                return c;
            }
            assert!(Instant::now() < deadline, "redis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut redis = start_redis();
    let mut conn = wait_up();
    let cfg = config(dir.path(), &case, &url, "cf:", "\n[input]\nbatch_lines = 16384\n");
    let exe = env!("CARGO_BIN_EXE_clickflow");
    let run = Command::new(exe)
        .args(["run", "--config", cfg.to_str().unwrap(), "--input", case.events.to_str().unwrap(), "--out", dir.path().to_str().unwrap(), "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first tick is in, kill Redis; bring it back empty a moment later.
    let deadline = Instant::now() + Duration::from_secs(120);
    while conn.hget::<_, _, Option<String>>("cf:meta", "as_of").ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "no tick written");
        std::thread::sleep(Duration::from_millis(5));
    }
    redis.kill().unwrap();
    redis.wait().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let mut redis = start_redis();
    let mut conn = wait_up();
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let snap = read_redis(&mut conn, "cf:");
    redis.kill().unwrap();
    let _ = redis.wait();
    assert!(out.status.success(), "{stderr}");
    let problems = compare_uncapped(&expected_for_redis(&case), &snap);
    assert!(problems.is_empty(), "{}\n{stderr}", problems.into_iter().take(20).collect::<Vec<_>>().join("\n"));
    assert!(stderr.contains("unreachable"), "the run never saw the outage: {stderr}");
}
