//! Kafka in, Redis and Kafka out, against the real servers of
//! `scripts/services.sh start` (a Kafka-protocol broker and Redis on
//! 127.0.0.1): every conformance case produced to a topic and run with
//! `--until-end` must give exactly `expected.json` in Redis, a trend-delta
//! topic that replays to the Redis trend hashes, the expected dead letters on
//! the dead-letter topic, and committed offsets at the end of the topic.
//! Then: re-runs, Redis restarts, malformed messages, wall-clock mode, idle
//! partitions, offsets never committed ahead of the store, and clear errors.

mod common;
#[path = "../dataflows/tests/oracle/mod.rs"]
mod oracle;

use common::services::{
    clear_redis, committed, config_text, connect_redis, dump_redis, expected_for_redis, high_watermarks, kafka_brokers, produce_case, produce_raw, read_redis, read_topic,
    redis_as_of, redis_url, topic_lines, write_config, Msg, Names, OwnRedis,
};
use common::{
    case_named, cases, check_dead_letters, check_summary, compare_trend_maps, compare_uncapped, dead_letter_counts_of, describe_output, free_port, in_parallel, largest_case,
    parse_summary, replay_delta_lines, run_clickflow, Case, TempOut, cap, compare_snapshots, json_lines, read_maybe_gz_bytes,
};
use redis::Commands;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run_until_end(cfg: &Path, out: &Path, workers: usize) -> Output {
    run_clickflow(["run", "--config", cfg.to_str().unwrap(), "--until-end", "--out", out.to_str().unwrap(), "--workers", &workers.to_string(), "--quiet", "--json"])
}

/// Every check of a finished `--until-end` run against the case.
fn check_kafka_run(case: &Case, names: &Names, output: &Output) -> Vec<String> {
    let mut problems = Vec::new();
    if !output.status.success() {
        return vec![format!("run failed: {}", describe_output(output, 3000))];
    }
    let expected = expected_for_redis(case);
    match parse_summary(output) {
        Ok(s) => problems.extend(check_summary(&expected, &s)),
        Err(e) => problems.push(e),
    }
    let mut conn = connect_redis(&redis_url());
    let snap = read_redis(&mut conn, &names.prefix);
    problems.extend(compare_uncapped(&expected, &snap).into_iter().take(12));
    let brokers = kafka_brokers();
    let (replayed, violations) = replay_delta_lines(&topic_lines(&brokers, &names.deltas));
    problems.extend(violations.into_iter().take(6).map(|v| format!("delta topic: {v}")));
    problems.extend(compare_trend_maps("replayed delta topic", &replayed, "redis", &snap.trends).into_iter().take(6));
    let dead = read_topic(&brokers, &names.dead);
    let text: String = dead.iter().map(|r| String::from_utf8_lossy(&r.payload).into_owned() + "\n").collect();
    problems.extend(check_dead_letters(&expected, &dead_letter_counts_of(&text)));
    for r in &dead {
        let v: Value = serde_json::from_slice(&r.payload).unwrap_or(Value::Null);
        let source = v["source"].as_str().unwrap_or("");
        if !source.starts_with(&format!("{}:", names.topic)) || r.key.as_deref() != Some(source.as_bytes()) {
            problems.push(format!("dead letter source {source:?} / key {:?} does not name the topic, partition and offset", r.key.as_deref().map(String::from_utf8_lossy)));
            break;
        }
    }
    let marks = high_watermarks(&brokers, &names.topic);
    let done = committed(&brokers, &names.group, &names.topic);
    for (p, hwm) in marks.into_iter().filter(|(_, h)| *h > 0) {
        if done.get(&p) != Some(&hwm) {
            problems.push(format!("partition {p}: committed offset {:?}, the topic ends at {hwm}", done.get(&p)));
        }
    }
    problems
}

/// One case run through Kafka; its problems (empty: pass).
fn kafka_case_run(case: &Case, partitions: i32, workers: usize, batch: Option<usize>) -> Vec<String> {
    let redis = redis_url();
    let names = Names::new(&format!("{}-{partitions}p{workers}w", case.name));
    let out = TempOut::new("kafka-case");
    let base = std::fs::read_to_string(&case.config).unwrap();
    let extra = batch.map_or(String::new(), |b| format!("batch_lines = {b}"));
    let cfg = write_config(out.path(), &config_text(&base, &names, &redis, &extra));
    produce_case(case, &cfg, partitions);
    let output = run_until_end(&cfg, out.path(), workers);
    let problems = check_kafka_run(case, &names, &output);
    clear_redis(&mut connect_redis(&redis), &names.prefix);
    problems
}

#[test]
fn every_conformance_case_from_kafka_matches_expected_in_redis() {
    // (case, partitions, workers, batch_lines). One partition is one reader:
    // lateness exactly the file's. Cases without late events also run from 4
    // partitions keyed by user_id; batch_lines = 1 closes a tick per chunk.
    let mut runs = Vec::new();
    for case in cases() {
        runs.push((case.clone(), 1, 1, None));
        runs.push((case.clone(), 1, 2, Some(1)));
        if !case.has_late_events() {
            runs.push((case.clone(), 4, 2, Some(1)));
            runs.push((case, 4, 4, None));
        }
    }
    // The runs wait on broker round trips, not the CPU: four at a time.
    let failures = in_parallel(runs, 4, |(case, partitions, workers, batch)| {
        let problems = kafka_case_run(&case, partitions, workers, batch);
        if problems.is_empty() {
            return Vec::new();
        }
        vec![format!("{} ({partitions} partitions, {workers} workers, batch {batch:?}):\n  {}", case.name, problems.join("\n  "))]
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_second_run_over_the_same_topic_writes_nothing() {
    let case = case_named("session_gap");
    let names = Names::new("rerun");
    let out = TempOut::new("kafka-rerun");
    let redis = redis_url();
    let cfg = write_config(out.path(), &config_text(&std::fs::read_to_string(&case.config).unwrap(), &names, &redis, ""));
    produce_case(&case, &cfg, 1);
    let first = run_until_end(&cfg, out.path(), 1);
    assert!(check_kafka_run(&case, &names, &first).is_empty(), "{}", describe_output(&first, 2000));
    let mut conn = connect_redis(&redis);
    let before = dump_redis(&mut conn, &names.prefix);
    let deltas_before = high_watermarks(&kafka_brokers(), &names.deltas);
    let second = run_until_end(&cfg, out.path(), 2);
    assert!(second.status.success(), "{}", describe_output(&second, 2000));
    assert_eq!(parse_summary(&second).unwrap()["ticks_written"], 0, "the second run wrote ticks");
    assert_eq!(before, dump_redis(&mut conn, &names.prefix), "the second run changed the store");
    assert_eq!(deltas_before, high_watermarks(&kafka_brokers(), &names.deltas), "the second run published trend deltas");
    clear_redis(&mut conn, &names.prefix);
}

#[test]
fn redis_restarting_empty_mid_kafka_run_loses_nothing() {
    let case = largest_case();
    let names = Names::new("redis-restart");
    let out = TempOut::new("kafka-redis-restart");
    let mut redis = OwnRedis::start();
    let cfg = write_config(out.path(), &config_text(&std::fs::read_to_string(&case.config).unwrap(), &names, &redis.url, "batch_lines = 4096"));
    produce_case(&case, &cfg, 1);
    let run = Command::new(env!("CARGO_BIN_EXE_clickflow"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--until-end", "--out", out.path().to_str().unwrap(), "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = redis.restart_under(run, &names.prefix, Duration::from_millis(700));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("unreachable"), "the run never saw the outage: {stderr}");
    let problems = compare_uncapped(&expected_for_redis(&case), &read_redis(&mut redis.connect(), &names.prefix));
    assert!(problems.is_empty(), "{}\n{stderr}", problems.into_iter().take(20).collect::<Vec<_>>().join("\n"));
}

#[test]
fn malformed_messages_go_to_the_dead_letter_topic_and_counts_reconcile() {
    let names = Names::new("malformed");
    let out = TempOut::new("kafka-malformed");
    let redis = redis_url();
    let huge_garbage = vec![b'x'; 900_000];
    let mut huge_valid = br#"{"ts": 1700000002000, "user_id": "u2", "type": "view", "pad": ""#.to_vec();
    huge_valid.extend(std::iter::repeat_n(b'a', 800_000));
    huge_valid.extend(br#""}"#);
    let messages = [
        Msg::value(br#"{"ts": 1700000000000, "user_id": "u1", "type": "view", "product_id": "p1"}"#),
        Msg::value(b"\xff\xfe{\"ts\": 1}"),
        Msg::value(b"not json at all"),
        Msg::value(&huge_garbage),
        Msg::value(&huge_valid),
        Msg::value(br#"{"ts": 1700000001000, "user_id": "u1", "type": "click"}"#),
        Msg::value(b""),
        Msg::null(),
        Msg::value(b"   "),
        Msg::value(br#"{"ts": 1700000003000, "user_id": "u1", "type": "cart", "product_id": "p1"}"#),
        Msg::value(br#"{"ts": 1600000000000, "user_id": "u1", "type": "view"}"#),
    ];
    produce_raw(&kafka_brokers(), &names.topic, 1, &messages);
    let cfg = write_config(out.path(), &config_text("", &names, &redis, ""));
    let output = run_until_end(&cfg, out.path(), 1);
    assert!(output.status.success(), "{}", describe_output(&output, 3000));
    let s = parse_summary(&output).unwrap();
    let field = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(field("lines_read"), 8, "eleven messages, three of them empty, null or blank: {s}");
    assert_eq!((field("accepted"), field("invalid"), field("late")), (3, 4, 1), "{s}");
    assert!(check_summary(&Value::Null, &s).is_empty(), "{:?}", check_summary(&Value::Null, &s));
    let dead = read_topic(&kafka_brokers(), &names.dead);
    let letters: Vec<Value> = dead.iter().map(|r| serde_json::from_slice(&r.payload).expect("a dead letter is JSON")).collect();
    let reasons: Vec<&str> = letters.iter().map(|l| l["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["invalid", "invalid", "invalid", "invalid", "late"], "{letters:?}");
    let sources: Vec<&str> = letters.iter().map(|l| l["source"].as_str().unwrap()).collect();
    let at = |o: u32| format!("{}:0:{o}", names.topic);
    assert_eq!(sources, [at(1), at(2), at(3), at(5), at(10)]);
    assert!(letters[0]["detail"].as_str().unwrap().contains("UTF-8"), "{}", letters[0]["detail"]);
    assert!(letters[2]["detail"].as_str().unwrap().contains("raw cut"), "the huge message's raw is cut: {}", letters[2]["detail"]);
    assert!(letters[2]["raw"].as_str().unwrap().len() < 300_000);
    assert!(letters[3]["detail"].as_str().unwrap().contains("type"), "{}", letters[3]["detail"]);
    let mut conn = connect_redis(&redis);
    let snap = read_redis(&mut conn, &names.prefix);
    assert_eq!(snap.users["u1"]["views_1d"], 1);
    assert_eq!(snap.users["u2"]["views_1d"], 1, "a huge valid event is an event");
    assert_eq!(committed(&kafka_brokers(), &names.group, &names.topic).get(&0), Some(&11));
    clear_redis(&mut conn, &names.prefix);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Starts a live run (no `--until-end`) in the background.
fn spawn_live(cfg: &Path, out: &Path, workers: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_clickflow"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "--workers", &workers.to_string(), "--quiet", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// SIGTERM, then the run's output (it must stop by itself within 30 s).
fn stop(mut child: Child) -> Output {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Polls `check` every 50 ms until it returns `Some` (panics after `secs`).
fn wait_for<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn user_field(conn: &mut redis::Connection, prefix: &str, user: &str, field: &str) -> Option<String> {
    conn.hget(format!("{prefix}user:{user}"), field).ok().flatten()
}

#[test]
fn wall_clock_mode_slides_windows_without_traffic_and_dead_letters_future_events() {
    let names = Names::new("wall");
    let out = TempOut::new("kafka-wall");
    let redis = redis_url();
    let base = "[clock]\nmode = \"wall\"\nmax_future = \"1m\"\n\n[features]\nwindows = [\"3s\", \"1h\"]\n\n[trends]\nwidths = [\"2s\"]\nbaseline = \"1h\"\n";
    let cfg = write_config(out.path(), &config_text(base, &names, &redis, ""));
    produce_raw(&kafka_brokers(), &names.topic, 1, &[]);
    let run = spawn_live(&cfg, out.path(), 1);
    let now = now_ms();
    let view = format!(r#"{{"ts": {now}, "user_id": "w1", "type": "view", "product_id": "p1"}}"#);
    let future = format!(r#"{{"ts": {}, "user_id": "w1", "type": "view"}}"#, now + 3_600_000);
    produce_raw(&kafka_brokers(), &names.topic, 1, &[Msg::value(view.as_bytes()), Msg::value(future.as_bytes())]);
    let mut conn = connect_redis(&redis);
    wait_for(30, "the view in views_3s", || (user_field(&mut conn, &names.prefix, "w1", "views_3s").as_deref() == Some("1")).then_some(()));
    // No more traffic: the wall clock alone moves the 3 s window past the view.
    wait_for(30, "views_3s to drop to 0", || (user_field(&mut conn, &names.prefix, "w1", "views_3s").as_deref() == Some("0")).then_some(()));
    assert_eq!(user_field(&mut conn, &names.prefix, "w1", "views_1h").as_deref(), Some("1"));
    let as_of = |conn: &mut redis::Connection| redis_as_of(conn, &names.prefix).unwrap_or(0);
    let a = as_of(&mut conn);
    wait_for(30, "as_of to keep advancing", || (as_of(&mut conn) > a).then_some(()));
    let output = stop(run);
    assert!(output.status.success(), "{}", describe_output(&output, 3000));
    let s = parse_summary(&output).unwrap();
    assert_eq!((s["accepted"].as_u64(), s["future"].as_u64()), (Some(1), Some(1)), "{s}");
    let dead = read_topic(&kafka_brokers(), &names.dead);
    let letter: Value = serde_json::from_slice(&dead[0].payload).unwrap();
    assert_eq!((dead.len(), letter["reason"].as_str()), (1, Some("future")), "{letter}");
    assert_eq!(committed(&kafka_brokers(), &names.group, &names.topic).get(&0), Some(&2), "both messages are reflected");
    clear_redis(&mut conn, &names.prefix);
}

/// A real sample's lines with every integer `ts` moved by the same amount,
/// so that the newest event is `newest` (other lines unchanged).
fn retimed(path: &Path, newest: u64) -> Vec<String> {
    let lines: Vec<String> = json_lines(&read_maybe_gz_bytes(path)).into_iter().map(|l| String::from_utf8(l).unwrap()).filter(|l| !l.trim().is_empty()).collect();
    let ts = |l: &str| serde_json::from_str::<Value>(l).ok().and_then(|v| v["ts"].as_u64());
    let max = lines.iter().filter_map(|l| ts(l)).max().unwrap();
    lines
        .iter()
        .map(|l| match (serde_json::from_str::<Value>(l), ts(l)) {
            (Ok(mut v), Some(t)) => {
                v["ts"] = Value::from(t + newest - max);
                v.to_string()
            }
            _ => l.clone(),
        })
        .collect()
}

#[test]
fn a_live_start_over_retained_history_replays_it_then_runs_on_the_wall_clock() {
    // SPEC section 2: a reader replays its partition's backlog in event
    // time, and only then follows the wall clock. Nine days of a real
    // sample, retimed to end 20 s ago, are in the topic before the run starts.
    let names = Names::new("catch-up");
    let out = TempOut::new("kafka-catch-up");
    let redis = redis_url();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/real/taobao_b.jsonl");
    let lines = retimed(&sample, now_ms() - 20_000);
    produce_raw(&kafka_brokers(), &names.topic, 1, &lines.iter().map(|l| Msg::value(l.as_bytes())).collect::<Vec<_>>());
    let cfg = write_config(out.path(), &config_text("[clock]\nmode = \"wall\"\n", &names, &redis, ""));
    let run = spawn_live(&cfg, out.path(), 1);
    let mut conn = connect_redis(&redis);
    let started = now_ms();
    // Caught up, then live: ticks follow the wall clock past the history.
    wait_for(120, "as_of past the start of the run", || redis_as_of(&mut conn, &names.prefix).filter(|&a| a > started));
    let output = stop(run);
    assert!(output.status.success(), "{}", describe_output(&output, 3000));
    let summary = parse_summary(&output).unwrap();
    let store = read_redis(&mut conn, &names.prefix);
    let as_of = store.as_of.unwrap();

    // The store is the from-scratch store as of that tick over the sample's
    // lines in topic order, the lateness of one reader included.
    let params = clickflow_dataflows::Params::default();
    let bytes: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
    let admitted = oracle::admit(&bytes, &params);
    assert!(admitted.events.len() > 5_000, "{} events", admitted.events.len());
    assert_eq!(summary["late"].as_u64(), Some(admitted.late), "history is replayed in event time, not dead-lettered as late: {summary}");
    assert_eq!(summary["invalid"].as_u64(), Some(admitted.invalid), "{summary}");
    let mut want = oracle::snapshot_as_of(&admitted.events, &params, as_of);
    for entries in want.trending.values_mut() {
        // Redis keeps scores, not counts, and orders ties by id.
        entries.iter_mut().for_each(|e| e.2 = 0);
        entries.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    let problems = cap(compare_snapshots(&want, &store));
    assert!(problems.is_empty(), "as of {as_of}:\n{}", problems.join("\n"));
    assert!(!store.users.is_empty());
    clear_redis(&mut conn, &names.prefix);
}

#[test]
fn a_store_that_rejects_writes_ends_a_live_run_and_commits_nothing_it_does_not_hold() {
    let names = Names::new("store-rejects");
    let out = TempOut::new("kafka-store-rejects");
    let redis = OwnRedis::start();
    let cfg = write_config(out.path(), &config_text("", &names, &redis.url, ""));
    let events = |from: u64, to: u64| -> Vec<String> { (from..to).map(|i| format!(r#"{{"ts": {}, "user_id": "r{}", "type": "view"}}"#, 1_700_000_000_000u64 + i * 1000, i % 3)).collect() };
    let first = events(0, 20);
    produce_raw(&kafka_brokers(), &names.topic, 1, &first.iter().map(|l| Msg::value(l.as_bytes())).collect::<Vec<_>>());
    let mut run = spawn_live(&cfg, out.path(), 1);
    let mut conn = redis.connect();
    let as_of = wait_for(60, "the first tick", || redis_as_of(&mut conn, &names.prefix));
    // Redis now refuses every write (OOM), and more events arrive: the next
    // tick cannot be stored. The run must stop by itself, with the error.
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("noeviction").query(&mut conn).unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1").query(&mut conn).unwrap();
    let second = events(20, 40);
    produce_raw(&kafka_brokers(), &names.topic, 1, &second.iter().map(|l| Msg::value(l.as_bytes())).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(120);
    while run.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = run.kill();
            panic!("a live run whose store rejects writes still ran after 120 s: {}", describe_output(&run.wait_with_output().unwrap(), 3000));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rejected a command") && !stderr.contains("panicked"), "{stderr}");
    assert_eq!(redis_as_of(&mut conn, &names.prefix), Some(as_of), "no tick after the rejection is marked");
    // Event i has ts t0 + i s: from offset (as_of - t0) / 1 s on (the 20
    // later events among them) nothing is in the store, so nothing is committed.
    let first_not_held = ((as_of - 1_700_000_000_000) / 1000) as i64;
    let committed = committed(&kafka_brokers(), &names.group, &names.topic);
    assert!(committed.get(&0).is_none_or(|&o| o <= first_not_held), "committed {committed:?}, the store holds the events below offset {first_not_held}");
}

#[test]
fn an_idle_partition_stops_holding_the_clock_back() {
    let names = Names::new("idle");
    let out = TempOut::new("kafka-idle");
    let redis = redis_url();
    let cfg = write_config(out.path(), &config_text("[clock]\nidle_timeout = \"1s\"\n", &names, &redis, ""));
    // Partition 1 never gets data; partition 0 does. Event time, live.
    let lines: Vec<String> = (0..20).map(|i| format!(r#"{{"ts": {}, "user_id": "i1", "type": "view"}}"#, 1_700_000_000_000u64 + i * 1000)).collect();
    let messages: Vec<Msg<'_>> = lines.iter().map(|l| Msg::value(l.as_bytes()).to(0)).collect();
    produce_raw(&kafka_brokers(), &names.topic, 2, &messages);
    let run = spawn_live(&cfg, out.path(), 2);
    let mut conn = connect_redis(&redis);
    // Largest ts 1_700_000_019_000, lateness 5 s: the watermark closes tick 1_700_000_014_000.
    let as_of = wait_for(60, "a tick although partition 1 is empty", || redis_as_of(&mut conn, &names.prefix));
    let output = stop(run);
    assert!(output.status.success(), "{}", describe_output(&output, 3000));
    assert_eq!(as_of, 1_700_000_014_000);
    assert_eq!(user_field(&mut conn, &names.prefix, "i1", "views_1d").as_deref(), Some("14"), "events with ts < as_of");
    clear_redis(&mut conn, &names.prefix);
}

#[test]
fn offsets_are_never_committed_ahead_of_the_store() {
    let names = Names::new("commit");
    let out = TempOut::new("kafka-commit");
    let redis = redis_url();
    let cfg = write_config(out.path(), &config_text("", &names, &redis, ""));
    produce_raw(&kafka_brokers(), &names.topic, 1, &[]);
    let run = spawn_live(&cfg, out.path(), 1);
    let brokers = kafka_brokers();
    let mut conn = connect_redis(&redis);
    let mut ts_of: Vec<u64> = Vec::new();
    let mut checks = 0;
    // Events arrive in bursts, out of order within the allowed lateness; after
    // each burst, whatever offset is committed must be covered by the store.
    for burst in 0..8u64 {
        let lines: Vec<String> = (0..50u64)
            .map(|i| {
                let ts = 1_700_000_000_000 + burst * 20_000 + i * 300 - (i % 7) * 900;
                ts_of.push(ts);
                format!(r#"{{"ts": {ts}, "user_id": "c{}", "type": "view"}}"#, i % 5)
            })
            .collect();
        let messages: Vec<Msg<'_>> = lines.iter().map(|l| Msg::value(l.as_bytes())).collect();
        produce_raw(&brokers, &names.topic, 1, &messages);
        for _ in 0..10 {
            // The commit is read first: the store can only be further along.
            let c = committed(&brokers, &names.group, &names.topic).get(&0).copied();
            let as_of = redis_as_of(&mut conn, &names.prefix);
            if let Some(c) = c {
                let as_of = as_of.expect("an offset was committed before any tick was stored");
                let ahead: Vec<u64> = ts_of[..c as usize].iter().copied().filter(|&ts| ts >= as_of).collect();
                assert!(ahead.is_empty(), "committed offset {c}, but the store (as_of {as_of}) does not reflect events {ahead:?} below it");
                checks += 1;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    let output = stop(run);
    assert!(output.status.success(), "{}", describe_output(&output, 3000));
    assert!(checks > 0, "no offset was ever committed");
    clear_redis(&mut conn, &names.prefix);
}

#[test]
fn kafka_unreachable_or_topic_missing_is_one_clear_error() {
    let out = TempOut::new("kafka-errors");
    let port = free_port();
    let cfg = write_config(out.path(), &format!("[input]\nkind = \"kafka\"\n\n[kafka]\nbrokers = \"127.0.0.1:{port}\"\nconnect_timeout = \"2s\"\n"));
    let o = run_clickflow(["run", "--config", cfg.to_str().unwrap(), "--until-end", "--out", out.path().to_str().unwrap(), "--quiet"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach Kafka at 127.0.0.1:") && !stderr.contains("panicked"), "{stderr}");
    let names = Names::new("missing");
    let cfg = write_config(out.path(), &config_text("", &names, &redis_url(), ""));
    let o = run_clickflow(["run", "--config", cfg.to_str().unwrap(), "--until-end", "--out", out.path().to_str().unwrap(), "--quiet"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("Kafka topic `{}` does not exist", names.topic)) && !stderr.contains("panicked"), "{stderr}");
}

/// `clickflow ARGS`, killed (and the test failed) if it runs past `secs`.
fn run_with_deadline(args: &[&str], secs: u64) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clickflow")).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("clickflow {args:?} still ran after {secs} s (a stall): {}", describe_output(&out, 2000));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn workers_whose_partitions_drift_apart_wait_for_each_other_and_finish() {
    let case = largest_case();
    drifting_partitions_finish(&std::fs::read_to_string(&case.config).unwrap(), "1s", 20_000, "drift", |cfg, _| produce_case(&case, cfg, 2));
}

#[test]
fn alignment_tighter_than_a_tick_does_not_hold_every_worker_back() {
    // Workers hear each other's watermarks at tick granularity. With a
    // drift below the tick, two workers within one tick must not each count
    // as ahead of the other (an exact watermark compared with a rounded one
    // marks both, and both wait for good). The rule itself is tested
    // deterministically in src/sources/reader/state.rs; this is the run end
    // to end: two partitions with events a minute apart over two days,
    // partition 1 half a minute behind partition 0, a day's tick, 100-line
    // chunks, and fetches of about 1 KB, so that a partition marked ahead
    // is not read far past the chunk it is in.
    let config = "[clock]\ntick = \"1d\"\n\n[trends]\nwidths = [\"1d\"]\n\n[kafka.consumer]\n\
                  \"fetch.max.bytes\" = \"1024\"\n\"message.max.bytes\" = \"1024\"\n\"max.partition.fetch.bytes\" = \"1024\"\n\
                  \"queued.max.messages.kbytes\" = \"1\"\n\"queued.min.messages\" = \"1\"\n";
    drifting_partitions_finish(config, "0ms", 100, "drift0", |_, topic| {
        let lines: Vec<(i32, String)> = (0..2 * 1440u64)
            .flat_map(|i| {
                (0..2u64).map(move |p| {
                    let ts = 1_700_006_400_000 + i * 60_000 + p * 30_000;
                    (p as i32, format!(r#"{{"ts": {ts}, "user_id": "d{}", "type": "view", "product_id": "x{}"}}"#, i % 13, i % 5))
                })
            })
            .collect();
        let messages: Vec<Msg<'_>> = lines.iter().map(|(p, l)| Msg::value(l.as_bytes()).to(*p)).collect();
        produce_raw(&kafka_brokers(), topic, 2, &messages);
    });
}

/// Two partitions (`produce` writes them, given the first config and the
/// topic), each read in many chunks: with a small `max_drift` the workers'
/// partitions keep holding each other back. Two workers must finish, and
/// agree with one worker reading both partitions (per-partition
/// watermarks: the same events).
fn drifting_partitions_finish(base: &str, max_drift: &str, batch_lines: usize, name: &str, produce: impl FnOnce(&Path, &str)) {
    let redis = redis_url();
    let out = TempOut::new(&format!("kafka-{name}"));
    let one = Names::new(&format!("{name}-1w"));
    let mut two = Names::new(&format!("{name}-2w"));
    two.topic = one.topic.clone();
    let extra = format!("batch_lines = {batch_lines}\nmax_drift = \"{max_drift}\"");
    std::fs::create_dir_all(out.path().join("one")).unwrap();
    std::fs::create_dir_all(out.path().join("two")).unwrap();
    let cfg1 = write_config(&out.path().join("one"), &config_text(base, &one, &redis, &extra));
    let cfg2 = write_config(&out.path().join("two"), &config_text(base, &two, &redis, &extra));
    produce(&cfg1, &one.topic);
    let mut snaps = Vec::new();
    for (cfg, names, workers) in [(&cfg1, &one, "1"), (&cfg2, &two, "2")] {
        let o = run_with_deadline(&["run", "--config", cfg.to_str().unwrap(), "--until-end", "--workers", workers, "--out", out.path().to_str().unwrap(), "--quiet", "--json"], 300);
        assert!(o.status.success(), "{}", describe_output(&o, 3000));
        let s = parse_summary(&o).unwrap();
        assert!(check_summary(&Value::Null, &s).is_empty(), "{s}");
        let mut conn = connect_redis(&redis);
        snaps.push(read_redis(&mut conn, &names.prefix));
        clear_redis(&mut conn, &names.prefix);
    }
    assert!(snaps[0].as_of.is_some() && !snaps[0].users.is_empty());
    assert_eq!(snaps[0].as_of, snaps[1].as_of);
    assert!(snaps[0].users == snaps[1].users && snaps[0].trending == snaps[1].trending, "1 and 2 workers differ");
    let trends = compare_trend_maps("1 worker", &snaps[0].trends, "2 workers", &snaps[1].trends);
    assert!(trends.is_empty(), "{}", trends.join("\n"));
}
