//! The oracle (tests/oracle) must reproduce every conformance case's
//! expected.json (the repository's copies and `../shared/conformance`, as
//! clickflow-testkit discovers them): it is the reference the incremental
//! dataflow is tested against, so it has to be right first.

mod oracle;

use clickflow_dataflows::params::{Params, Window};
use clickflow_testkit::{cap, cases, compare_snapshots, json_lines, read_maybe_gz_bytes, snapshot_from_expected, Case};
use serde_json::Value;
use std::time::Instant;

// ---------------------------------------------------------------------------
// A tiny TOML subset: `[section]`, `key = "string" | integer | ["a", "b"]`,
// `#` comments. Just enough for the SPEC section 9 keys; anything else panics.
// ---------------------------------------------------------------------------

fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => {}
        }
    }
    line
}

fn toml_string(key: &str, v: &str) -> String {
    let v = v.trim();
    let inner = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("config {key}: expected a string, got {v}"));
    assert!(!inner.contains('\\') && !inner.contains('"'), "config {key}: escapes not supported");
    inner.to_string()
}

fn toml_strings(key: &str, v: &str) -> Vec<String> {
    let inner = v
        .trim()
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or_else(|| panic!("config {key}: expected a one-line array, got {v}"));
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| toml_string(key, s))
        .collect()
}

fn toml_int(key: &str, v: &str) -> u64 {
    v.trim().replace('_', "").parse().unwrap_or_else(|e| panic!("config {key}: {v}: {e}"))
}

fn duration_ms(key: &str, s: &str) -> u64 {
    let units: [(&str, u64); 5] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)];
    for (unit, factor) in units {
        if let Some(n) = s.strip_suffix(unit) {
            if let Ok(n) = n.parse::<u64>() {
                return n * factor;
            }
        }
    }
    panic!("config {key}: bad duration {s:?}")
}

fn toml_duration(key: &str, v: &str) -> u64 {
    duration_ms(key, &toml_string(key, v))
}

/// Params from a case's config.toml (everything not set stays at its default).
fn parse_config(text: &str) -> Params {
    let mut p = Params::default();
    let mut section = String::new();
    for raw in text.lines() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("config: cannot parse {line:?}"));
        let key = format!("{section}.{}", k.trim());
        let key = key.as_str();
        match key {
            "clock.tick" => p.tick_ms = toml_duration(key, v),
            "clock.allowed_lateness" => p.allowed_lateness_ms = toml_duration(key, v),
            "clock.mode" => assert_eq!(toml_string(key, v), "event", "the oracle only knows event time"),
            "clock.max_future" | "clock.idle_timeout" => {} // wall-clock mode only
            "bots.user_agent_patterns" => p.user_agent_patterns = toml_strings(key, v),
            "bots.burst_events" => p.burst_events = toml_int(key, v) as u32,
            "bots.burst_span" => p.burst_span_ms = toml_duration(key, v),
            "bots.daily_max_events" => p.daily_max_events = toml_int(key, v) as u32,
            "sessions.gap" => p.session_gap_ms = toml_duration(key, v),
            "features.windows" => {
                p.windows = toml_strings(key, v)
                    .into_iter()
                    .map(|name| Window { ms: duration_ms(key, &name), name })
                    .collect()
            }
            "trends.widths" => {
                p.trend_widths_ms = toml_strings(key, v).iter().map(|s| duration_ms(key, s)).collect()
            }
            "trends.min_events" => p.trend_min_events = toml_int(key, v),
            "trends.baseline" => p.baseline_ms = toml_duration(key, v),
            "trends.trending_k" => p.trending_k = toml_int(key, v) as usize,
            "trends.trending_min_count" => p.trending_min_count = toml_int(key, v),
            _ => panic!("config: key {key} not supported by the test's tiny parser"),
        }
    }
    p.check().unwrap_or_else(|e| panic!("config: {e}"));
    p
}

/// Runs one case; returns its mismatches (empty = pass).
fn run_case(case: &Case) -> Vec<String> {
    let config = std::fs::read_to_string(&case.config).unwrap_or_else(|e| panic!("{}: {e}", case.config.display()));
    let params = parse_config(&config);
    let lines = json_lines(&read_maybe_gz_bytes(&case.events));
    let expected = case.expected();
    let admitted = oracle::admit(&lines, &params);
    drop(lines);

    let mut problems = Vec::new();
    let dead = expected.get("dead_letters").cloned().unwrap_or(Value::Null);
    let count = |reason: &str| dead.get(reason).and_then(Value::as_u64).unwrap_or(0);
    if count("invalid") != admitted.invalid {
        problems.push(format!("dead letters invalid: expected {}, got {}", count("invalid"), admitted.invalid));
    }
    if count("late") != admitted.late {
        problems.push(format!("dead letters late: expected {}, got {}", count("late"), admitted.late));
    }
    if count("future") != 0 {
        problems.push(format!("dead letters future: expected {}, the oracle has none in event mode", count("future")));
    }
    // as_of, users, trends, trending and the bots' flag times.
    let got = oracle::store_at_end(&admitted, &params);
    problems.extend(cap(compare_snapshots(&snapshot_from_expected(&expected), &got)));
    problems
}

#[test]
fn oracle_matches_every_conformance_case() {
    let mut failed = Vec::new();
    for case in cases() {
        let start = Instant::now();
        let problems = run_case(&case);
        let took = start.elapsed();
        if problems.is_empty() {
            eprintln!("PASS {} ({took:.2?})", case.name);
        } else {
            eprintln!("FAIL {} ({took:.2?}):", case.name);
            for p in &problems {
                eprintln!("    {p}");
            }
            failed.push(case.name);
        }
    }
    assert!(failed.is_empty(), "oracle disagrees with conformance cases: {failed:?}");
}
