//! Multi-process clusters on 127.0.0.1, launched by `scripts/cluster.sh`:
//! every conformance case as 2 processes x 2 workers gives the same SQLite
//! store and trend deltas as 1 process x 1 worker (file input), and the same
//! Redis contents (Kafka input); a killed process stops the others with an
//! error naming it, and a relaunch ends as expected; a cluster that never
//! forms is an error, not a hang.

mod common;

use common::services::{clear_redis, config_text, connect_redis, expected_for_redis, produce_case, read_redis, redis_as_of, redis_url, write_config, Names};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A `[cluster]` section for `processes` x `workers` on fresh ports.
fn cluster_section(processes: usize, workers: usize) -> String {
    let addresses: Vec<String> = (0..processes).map(|_| format!("\"127.0.0.1:{}\"", free_port())).collect();
    format!("\n[cluster]\nprocesses = {processes}\nworkers = {workers}\naddresses = [{}]\njoin_timeout = \"30s\"\n", addresses.join(", "))
}

/// `scripts/cluster.sh CMD CONFIG ARGS...` with this test's binary and its own state folder.
fn cluster_sh(cmd: &str, config: &Path, state: &Path, args: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh");
    Command::new(script)
        .arg(cmd)
        .arg(config)
        .args(args)
        .env("CLICKFLOW_BIN", env!("CARGO_BIN_EXE_clickflow"))
        .env("CLICKFLOW_CLUSTER_DIR", state)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/cluster.sh: {e}"))
}

/// Starts the cluster of `config` and waits for every process; the problems (empty: all exited 0).
fn run_cluster(config: &Path, state: &Path, args: &[&str]) -> Vec<String> {
    let start = cluster_sh("start", config, state, args);
    if !start.status.success() {
        return vec![format!("cluster.sh start failed: {}", describe_output(&start, 3000))];
    }
    let wait = cluster_sh("wait", config, state, &[]);
    if wait.status.success() {
        Vec::new()
    } else {
        vec![format!("cluster.sh wait: {}", describe_output(&wait, 3000))]
    }
}

/// Process `p`'s log.
fn log(state: &Path, p: usize) -> String {
    std::fs::read_to_string(state.join(format!("p{p}.log"))).unwrap_or_default()
}

/// The tests that run many cluster processes take turns: on two cores, the
/// kill test's 10 s limit must not be eaten by another test's clusters.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Cluster runs at a time (each is 2 processes x 2 workers).
const CLUSTERS_AT_ONCE: usize = 3;

#[test]
fn every_case_as_2_processes_x_2_workers_gives_the_store_and_deltas_of_1_process_x_1_worker() {
    let _turn = heavy();
    let failures = in_parallel(cases(), CLUSTERS_AT_ONCE, |case| {
        let single = TempOut::new(&format!("cluster-1x1-{}", case.name));
        let mut multi = TempOut::new(&format!("cluster-2x2-{}", case.name));
        let o = run_case(&case, 1, single.path());
        if !o.status.success() {
            return vec![format!("{}: 1x1 run failed: {}", case.name, describe_output(&o, 2000))];
        }
        let base = std::fs::read_to_string(&case.config).unwrap();
        let config = write_config(multi.path(), &format!("{base}{}", cluster_section(2, 2)));
        let out = multi.path().join("out");
        let state = multi.path().join("state");
        let mut problems = run_cluster(&config, &state, &["--input", case.events.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
        if problems.is_empty() {
            let (a, b) = (dump_sqlite(&single.path().join(STORE_FILE), DumpMode::Everything), dump_sqlite(&out.join(STORE_FILE), DumpMode::Everything));
            problems.extend(diff_dumps("1x1", &a, "2x2", &b, 10));
            if std::fs::read(single.path().join(DELTAS_FILE)).ok() != std::fs::read(out.join(DELTAS_FILE)).ok() {
                problems.push("trend-deltas.jsonl differs".into());
            }
            problems.extend(compare(&case.expected(), &read_sqlite(&out.join(STORE_FILE))));
        }
        if problems.is_empty() {
            Vec::new()
        } else {
            multi.keep();
            vec![format!("{} (kept in {}):\n  {}", case.name, multi.path().display(), problems.join("\n  "))]
        }
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_case_from_kafka_as_2_processes_x_2_workers_gives_the_redis_of_1_process_x_1_worker() {
    let _turn = heavy();
    let redis = redis_url();
    let failures = in_parallel(cases(), CLUSTERS_AT_ONCE, |case| {
        // Four partitions spread the readers over both processes; one keeps a
        // case with late events exactly as the file orders it.
        let partitions = if case.has_late_events() { 1 } else { 4 };
        let dir = TempOut::new(&format!("cluster-kafka-{}", case.name));
        let base = std::fs::read_to_string(&case.config).unwrap();
        let single = Names::new(&format!("c1x1-{}", case.name));
        let mut multi = Names::new(&format!("c2x2-{}", case.name));
        multi.topic = single.topic.clone();
        std::fs::create_dir_all(dir.path().join("1x1")).unwrap();
        let single_cfg = write_config(&dir.path().join("1x1"), &config_text(&base, &single, &redis, "batch_lines = 4096"));
        let multi_cfg = write_config(dir.path(), &(config_text(&base, &multi, &redis, "batch_lines = 4096") + &cluster_section(2, 2)));
        produce_case(&case, &single_cfg, partitions);
        let out = dir.path().join("out");
        let o = run_clickflow(["run", "--config", single_cfg.to_str().unwrap(), "--until-end", "--out", out.to_str().unwrap(), "--quiet"]);
        let mut problems = Vec::new();
        if !o.status.success() {
            problems.push(format!("1x1 run failed: {}", describe_output(&o, 2000)));
        }
        problems.extend(run_cluster(&multi_cfg, &dir.path().join("state"), &["--until-end", "--out", out.to_str().unwrap(), "--quiet"]));
        let mut conn = connect_redis(&redis);
        if problems.is_empty() {
            let (a, b) = (read_redis(&mut conn, &single.prefix), read_redis(&mut conn, &multi.prefix));
            let want = expected_for_redis(&case);
            problems.extend(compare_uncapped(&want, &a).into_iter().take(5).map(|p| format!("1x1: {p}")));
            problems.extend(compare_uncapped(&want, &b).into_iter().take(5).map(|p| format!("2x2: {p}")));
            if a.users != b.users || a.trending != b.trending || a.as_of != b.as_of {
                problems.push("the 1x1 and 2x2 Redis contents differ".into());
            }
            problems.extend(compare_trend_maps("1x1", &a.trends, "2x2", &b.trends).into_iter().take(5));
        }
        clear_redis(&mut conn, &single.prefix);
        clear_redis(&mut conn, &multi.prefix);
        if problems.is_empty() {
            Vec::new()
        } else {
            vec![format!("{} ({partitions} partitions):\n  {}", case.name, problems.join("\n  "))]
        }
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_killed_process_stops_the_others_naming_it_and_a_relaunch_ends_as_expected() {
    let _turn = heavy();
    let case = largest_case();
    let redis = redis_url();
    let dir = TempOut::new("cluster-kill");
    let names = Names::new("cluster-kill");
    let base = std::fs::read_to_string(&case.config).unwrap();
    // Three processes x one worker: process 1 dies, "the rest" are 0 and 2.
    let config = write_config(dir.path(), &(config_text(&base, &names, &redis, "batch_lines = 4096") + &cluster_section(3, 1)));
    produce_case(&case, &config, 1);
    let out = dir.path().join("out");
    let state = dir.path().join("state");
    let args = ["--until-end", "--out", out.to_str().unwrap(), "--quiet"];
    let start = cluster_sh("start", &config, &state, &args);
    assert!(start.status.success(), "{}", describe_output(&start, 3000));
    let mut conn = connect_redis(&redis);
    let as_of = |conn: &mut redis::Connection| redis_as_of(conn, &names.prefix);
    let deadline = Instant::now() + Duration::from_secs(120);
    while as_of(&mut conn).is_none() {
        assert!(Instant::now() < deadline, "no tick written");
        assert!(!state.join("p0.rc").exists(), "the run ended before a tick was seen: {}", log(&state, 0));
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid: PathBuf = state.join("p1.pid");
    let pid = std::fs::read_to_string(pid).unwrap();
    let killed_at = as_of(&mut conn);
    assert!(Command::new("kill").args(["-KILL", pid.trim()]).status().unwrap().success());
    // The rest stop by themselves, within the issue's 10 s, naming process 1.
    let deadline = Instant::now() + Duration::from_secs(10);
    for p in [0, 2] {
        let rc = state.join(format!("p{p}.rc"));
        while !rc.exists() {
            assert!(Instant::now() < deadline, "process {p} still runs 10 s after process 1 was killed: {}", log(&state, p));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_ne!(std::fs::read_to_string(&rc).unwrap().trim(), "0", "process {p} exited 0 after losing process 1");
        assert!(log(&state, p).contains("lost process 1 (127.0.0.1:"), "process {p} does not name the lost process: {}", log(&state, p));
    }
    let after_kill = as_of(&mut conn);
    assert!(after_kill >= killed_at, "as_of moved back from {killed_at:?} to {after_kill:?}");
    // A relaunch of the whole cluster reads the topic again and ends as if uninterrupted.
    let problems = run_cluster(&config, &state, &args);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let snap = read_redis(&mut conn, &names.prefix);
    let diff = compare_uncapped(&expected_for_redis(&case), &snap);
    clear_redis(&mut conn, &names.prefix);
    assert!(diff.is_empty(), "killed at as_of {killed_at:?}, relaunched:\n{}", diff.into_iter().take(20).collect::<Vec<_>>().join("\n"));
}

#[test]
fn a_cluster_that_never_forms_is_an_error_not_a_hang() {
    let dir = TempOut::new("cluster-alone");
    let section = cluster_section(2, 1).replace("join_timeout = \"30s\"", "join_timeout = \"2s\"");
    let config = write_config(dir.path(), &section);
    let case = cases().remove(0);
    // Process 0 alone: process 1 is never started.
    let o = run_clickflow(["run", "--config", config.to_str().unwrap(), "--process", "0", "--input", case.events.to_str().unwrap(), "--out", dir.path().to_str().unwrap(), "--quiet"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the cluster did not form within 2000 ms") && !stderr.contains("panicked"), "{stderr}");
    let o = run_clickflow(["run", "--config", config.to_str().unwrap(), "--process", "2", "--quiet"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("process index 2 is not below the 2 processes"), "{stderr}");
}

#[test]
fn a_signal_to_one_process_stops_a_whole_live_cluster_cleanly() {
    let redis = redis_url();
    let dir = TempOut::new("cluster-live-stop");
    let names = Names::new("cluster-live-stop");
    let config = write_config(dir.path(), &(config_text("[clock]\nmode = \"wall\"\n", &names, &redis, "") + &cluster_section(2, 1)));
    // Two partitions, one per process; a few events stamped with the wall clock.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let lines: Vec<String> = (0..40).map(|i| format!(r#"{{"ts": {}, "user_id": "u{}", "type": "view", "product_id": "p1"}}"#, now + i * 10, i % 7)).collect();
    let messages: Vec<common::services::Msg<'_>> = lines.iter().enumerate().map(|(i, l)| common::services::Msg::value(l.as_bytes()).to(i as i32 % 2)).collect();
    common::services::produce_raw(&common::services::kafka_brokers(), &names.topic, 2, &messages);
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    let start = cluster_sh("start", &config, &state, &["--out", out.to_str().unwrap(), "--quiet", "--json"]);
    assert!(start.status.success(), "{}", describe_output(&start, 3000));
    let mut conn = connect_redis(&redis);
    let deadline = Instant::now() + Duration::from_secs(60);
    while redis_as_of(&mut conn, &names.prefix).is_none() {
        assert!(Instant::now() < deadline, "no tick written: {}", log(&state, 0));
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGTERM to process 1 only: process 0 hears of it and stops too.
    let pid = std::fs::read_to_string(state.join("p1.pid")).unwrap();
    assert!(Command::new("kill").args(["-TERM", pid.trim()]).status().unwrap().success());
    let wait = cluster_sh("wait", &config, &state, &[]);
    assert!(wait.status.success(), "{}\n{}\n{}", describe_output(&wait, 2000), log(&state, 0), log(&state, 1));
    let summary = log(&state, 0).lines().rev().find(|l| l.starts_with('{')).map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).expect("process 0's summary");
    assert_eq!((summary["lines_read"].as_u64(), summary["processes"].as_u64()), (Some(40), Some(2)), "{summary}");
    clear_redis(&mut conn, &names.prefix);
}
