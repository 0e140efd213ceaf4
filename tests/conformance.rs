//! Conformance: every case (the repository's copies in `tests/conformance/`
//! and `../shared/conformance` when it exists, discovered at run time by
//! `clickflow-testkit`) replayed with `clickflow run`, the store checked against the case's
//! `expected.json` by SPEC section 8, the trend deltas replayed against the
//! store, dead letters and the `--json` summary reconciled; plus determinism
//! across worker counts and an idempotent re-run. The `harness_*` tests check
//! the harness itself without the binary.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Lines shown per section of one failing run in the final report.
const REPORT_LINES_PER_SECTION: usize = 12;

type Sections = Vec<(&'static str, Vec<String>)>;

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "(non-string panic)".into())
}

/// Runs one case with `workers` into `out` and returns every check's findings
/// (all sections empty = pass).
fn check_run(case: &Case, expected: &Value, workers: usize, out: &Path) -> Sections {
    let output = run_case(case, workers, out);
    if !output.status.success() {
        return vec![("exit", vec![format!("clickflow run failed: {}", describe_output(&output, 4000))])];
    }
    check_outputs(expected, &output, out)
}

/// Every check of one finished run's stdout summary and output directory.
fn check_outputs(expected: &Value, output: &std::process::Output, out: &Path) -> Sections {
    let mut sections: Sections = Vec::new();

    let summary = match parse_summary(output) {
        Ok(s) => check_summary(expected, &s),
        Err(e) => vec![format!("{e}; {}", describe_output(output, 1000))],
    };
    sections.push(("summary", summary));

    let db = out.join(STORE_FILE);
    if !db.is_file() {
        sections.push(("store", vec![format!("{} was not written", db.display())]));
        return sections;
    }
    sections.push(("schema", schema_problems(&db)));
    let snapshot = read_sqlite(&db);
    sections.push(("store vs expected.json", compare(expected, &snapshot)));

    let deltas = out.join(DELTAS_FILE);
    if deltas.is_file() {
        let (replayed, violations) = replay_deltas_detailed(&deltas);
        sections.push(("trend-delta protocol", cap(violations)));
        sections.push(("trend deltas replayed vs store trends", cap(compare_trend_maps("replayed deltas", &replayed, "store", &snapshot.trends))));
    } else {
        sections.push(("trend deltas", vec![format!("{} was not written", deltas.display())]));
    }

    let dead = out.join(DEAD_LETTERS_FILE);
    if dead.is_file() {
        sections.push(("dead letters", check_dead_letters(expected, &dead_letter_counts(&dead))));
    } else {
        sections.push(("dead letters", vec![format!("{} was not written", dead.display())]));
    }
    sections.retain(|(_, v)| !v.is_empty());
    sections
}

struct RunResult {
    case: String,
    workers: usize,
    secs: f64,
    sections: Sections,
    kept: Option<String>,
}

#[test]
fn every_conformance_case_matches_expected_with_1_and_4_workers() {
    let cases = cases();
    let jobs: Vec<(usize, usize)> = (0..cases.len()).flat_map(|c| [(c, 1), (c, 4)]).collect();
    let expected: Vec<Mutex<Option<Value>>> = cases.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(c, workers)) = jobs.get(j) else { break };
                let case = &cases[c];
                let started = Instant::now();
                let mut out = TempOut::new(&format!("conf-{}-w{workers}", case.name));
                let sections = match catch_unwind(AssertUnwindSafe(|| {
                    let exp = {
                        let mut slot = expected[c].lock().unwrap_or_else(|p| p.into_inner());
                        slot.get_or_insert_with(|| case.expected()).clone()
                    };
                    check_run(case, &exp, workers, out.path())
                })) {
                    Ok(s) => s,
                    Err(e) => vec![("harness panic", vec![panic_message(&*e)])],
                };
                let kept = if sections.is_empty() {
                    None
                } else {
                    out.keep();
                    Some(out.path().display().to_string())
                };
                results.lock().unwrap_or_else(|p| p.into_inner()).push(RunResult {
                    case: case.name.clone(),
                    workers,
                    secs: started.elapsed().as_secs_f64(),
                    sections,
                    kept,
                });
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by(|a, b| (&a.case, a.workers).cmp(&(&b.case, b.workers)));

    let mut table = String::from("conformance results:\n");
    for r in &results {
        let n: usize = r.sections.iter().map(|(_, v)| v.len()).sum();
        let state = if r.sections.is_empty() { "PASS".to_string() } else { format!("FAIL ({n} findings)") };
        table.push_str(&format!("  {:<28} workers={}  {:<18} {:>6.2}s\n", r.case, r.workers, state, r.secs));
    }
    eprintln!("{table}");
    let failures: Vec<&RunResult> = results.iter().filter(|r| !r.sections.is_empty()).collect();
    if !failures.is_empty() {
        let mut report = format!("{} of {} conformance runs failed\n{table}\n", failures.len(), results.len());
        for f in &failures {
            report.push_str(&format!(
                "=== {} with {} worker(s){}\n",
                f.case,
                f.workers,
                f.kept.as_ref().map_or(String::new(), |p| format!(" (output kept in {p})"))
            ));
            report.push_str(&format_sections(&f.sections, REPORT_LINES_PER_SECTION));
        }
        panic!("{report}");
    }
}

fn run_ok(case: &Case, workers: usize, out: &Path) {
    let output = run_case(case, workers, out);
    assert!(output.status.success(), "case {} with {workers} worker(s): clickflow run failed: {}", case.name, describe_output(&output, 4000));
}

/// First differing line of two byte strings, for messages.
fn first_line_difference(a: &[u8], b: &[u8]) -> String {
    let (la, lb): (Vec<&[u8]>, Vec<&[u8]>) = (a.split(|&c| c == b'\n').collect(), b.split(|&c| c == b'\n').collect());
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i), lb.get(i));
        if x != y {
            let f = |l: Option<&&[u8]>| l.map_or("(end of file)".to_string(), |l| String::from_utf8_lossy(l).into_owned());
            return format!("line {}: {} vs {}", i + 1, f(x), f(y));
        }
    }
    "no line differs".to_string()
}

#[test]
fn store_is_identical_for_1_2_and_4_workers() {
    let cases = cases();
    let case = cases.iter().max_by_key(|c| (c.events_size(), c.name.clone())).expect("no conformance cases");
    eprintln!("determinism case: {} ({} bytes of events)", case.name, case.events_size());
    let mut runs = Vec::new();
    for workers in [1usize, 2, 4] {
        let out = TempOut::new(&format!("det-{}-w{workers}", case.name));
        run_ok(case, workers, out.path());
        let dump = dump_sqlite(&out.path().join(STORE_FILE), DumpMode::IgnoreRowAsOf);
        let deltas = std::fs::read(out.path().join(DELTAS_FILE)).unwrap_or_else(|e| panic!("{}: {e}", out.path().join(DELTAS_FILE).display()));
        runs.push((workers, dump, deltas, out));
    }
    let mut problems = Vec::new();
    let (w0, dump0, deltas0, _) = &runs[0];
    for (w, dump, deltas, _) in &runs[1..] {
        let diff = diff_dumps(&format!("{w0} worker(s)"), dump0, &format!("{w} workers"), dump, 20);
        if !diff.is_empty() {
            problems.push(format!("store with {w} workers differs from {w0} worker(s):\n  {}", diff.join("\n  ")));
        }
        if deltas != deltas0 {
            problems.push(format!(
                "trend-deltas.jsonl with {w} workers ({} bytes) differs from {w0} worker(s) ({} bytes); first difference at {}",
                deltas.len(),
                deltas0.len(),
                first_line_difference(deltas0, deltas)
            ));
        }
    }
    if !problems.is_empty() {
        for r in &mut runs {
            r.3.keep();
        }
        let dirs: Vec<String> = runs.iter().map(|r| r.3.path().display().to_string()).collect();
        panic!("case {}: output depends on the worker count (outputs kept in {}):\n{}", case.name, dirs.join(", "), problems.join("\n"));
    }
}

#[test]
fn rerun_over_the_same_input_writes_nothing() {
    let cases = cases();
    let case = cases
        .iter()
        .filter(|c| !c.expected()["as_of"].is_null())
        .min_by_key(|c| (c.events_size(), c.name.clone()))
        .expect("no conformance case with a non-null as_of");
    eprintln!("re-run case: {}", case.name);
    let mut out = TempOut::new(&format!("rerun-{}", case.name));
    let db = out.path().join(STORE_FILE);
    let deltas = out.path().join(DELTAS_FILE);
    run_ok(case, 1, out.path());
    let dump1 = dump_sqlite(&db, DumpMode::Everything);
    let deltas1 = std::fs::read(&deltas).unwrap_or_else(|e| panic!("{}: {e}", deltas.display()));
    run_ok(case, 1, out.path());
    let dump2 = dump_sqlite(&db, DumpMode::Everything);
    let deltas2 = std::fs::read(&deltas).unwrap_or_else(|e| panic!("{}: {e}", deltas.display()));
    let mut problems = diff_dumps("first run", &dump1, "second run", &dump2, 30);
    if deltas1 != deltas2 {
        problems.push(format!(
            "trend-deltas.jsonl changed: {} bytes after the first run, {} after the second; first difference at {}",
            deltas1.len(),
            deltas2.len(),
            first_line_difference(&deltas1, &deltas2)
        ));
    }
    if !problems.is_empty() {
        out.keep();
        panic!("case {}: the re-run changed the output (kept in {}):\n{}", case.name, out.path().display(), problems.join("\n"));
    }
}

/// The store's `meta.as_of` while a run may be writing it (`None`: no store or no tick yet).
fn live_as_of(db: &Path) -> Option<u64> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    conn.query_row("SELECT value FROM meta WHERE key = 'as_of'", [], |r| r.get::<_, String>(0)).ok()?.parse().ok()
}

#[test]
fn a_relaunch_after_a_crash_matches_an_uninterrupted_run() {
    // The largest case, killed (SIGKILL) part way, then run again with another batch size: the new run's ticks are not the old
    // one's, and the store must still end exactly as expected, with a
    // trend-delta file that replays to it.
    let case = largest_case();
    let expected = case.expected();
    let mut out = TempOut::new("crash");
    let config = |batch: usize| {
        let path = out.path().join(format!("config-{batch}.toml"));
        std::fs::write(&path, format!("{}\n[input]\nbatch_lines = {batch}\n", std::fs::read_to_string(&case.config).unwrap())).unwrap();
        path
    };
    let (first, second) = (config(4096), config(10_000));
    let db = out.path().join(STORE_FILE);
    let args = |cfg: &Path| -> Vec<std::ffi::OsString> {
        ["run", "--config"].iter().map(Into::into).chain([cfg.as_os_str().to_owned(), "--input".into(), case.events.clone().into_os_string(), "--out".into(), out.path().as_os_str().to_owned(), "--quiet".into(), "--json".into()]).collect()
    };
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_clickflow")).args(args(&first)).stdout(std::process::Stdio::null()).spawn().unwrap();
    // Kill it a third of the way through (in event time), so that the relaunch
    // skips several ticks of its own that the store already holds.
    let started = Instant::now();
    let first = loop {
        if let Some(a) = live_as_of(&db) {
            break a;
        }
        assert!(run.try_wait().unwrap().is_none(), "the first run ended before its first tick was seen");
        assert!(started.elapsed().as_secs() < 120, "no tick written");
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let end = expected["as_of"].as_u64().expect("the largest case has an as_of");
    while live_as_of(&db).is_some_and(|a| a < first + (end - first) / 3) {
        assert!(run.try_wait().unwrap().is_none(), "the first run ended before a third of it");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    let killed_at = live_as_of(&db);
    let output = run_clickflow(args(&second));
    let sections = if output.status.success() { check_outputs(&expected, &output, out.path()) } else { vec![("exit", vec![describe_output(&output, 3000)])] };
    if !sections.is_empty() {
        out.keep();
        panic!("case {} killed at as_of {killed_at:?}, relaunched (kept in {}):\n{}", case.name, out.path().display(), format_sections(&sections, REPORT_LINES_PER_SECTION));
    }
}

// ---------------------------------------------------------------------------
// The harness itself
// ---------------------------------------------------------------------------

#[test]
fn harness_expected_matches_itself_directly_and_through_sqlite() {
    let cases = cases();
    assert!(!cases.is_empty());
    for case in &cases {
        let expected = case.expected();
        let snap = snapshot_from_expected(&expected);
        let m = compare(&expected, &snap);
        assert!(m.is_empty(), "case {}: expected.json vs itself: {m:#?}", case.name);

        let out = TempOut::new(&format!("harness-{}", case.name));
        let db = out.path().join(STORE_FILE);
        write_sqlite(&snap, &db);
        assert!(schema_problems(&db).is_empty(), "{:?}", schema_problems(&db));
        let read = read_sqlite(&db);
        let m = compare(&expected, &read);
        assert!(m.is_empty(), "case {}: expected.json vs its SQLite round trip: {m:#?}", case.name);
        assert_eq!(read.trends, snap.trends, "case {}", case.name);
        assert_eq!(read.trending, snap.trending, "case {}", case.name);
        let a = dump_sqlite(&db, DumpMode::Everything);
        let b = dump_sqlite(&db, DumpMode::Everything);
        assert!(diff_dumps("a", &a, "b", &b, 5).is_empty());
    }
}

/// A small discovered case that has users with every kind of feature, trends
/// and a trending list with 2+ entries.
fn rich_case() -> (Case, Value) {
    cases()
        .into_iter()
        .filter(|c| c.events_size() < 100_000)
        .map(|c| {
            let e = c.expected();
            (c, e)
        })
        .find(|(_, e)| {
            e["users"].as_object().is_some_and(|u| !u.is_empty())
                && e["trends"].as_object().is_some_and(|t| t.len() >= 2)
                && e["trending"].as_object().is_some_and(|t| t.values().any(|l| l.as_array().is_some_and(|l| l.len() >= 2)))
        })
        .expect("no small case with users, trends and a trending list of 2+ entries")
}

#[test]
fn harness_compare_reports_every_perturbation() {
    let (case, expected) = rich_case();
    let base = snapshot_from_expected(&expected);
    let user = base.users.keys().next().unwrap().clone();
    let features = base.users[&user].as_object().unwrap().clone();
    let int_feature = features.keys().find(|k| k.starts_with("views_")).unwrap().clone();
    let spend = features.keys().find(|k| k.starts_with("spend_")).unwrap().clone();
    let hist = features.keys().find(|k| k.starts_with("hour_hist_")).unwrap().clone();
    let devices = features.keys().find(|k| k.starts_with("browse_devices_")).unwrap().clone();
    let trend = base.trends.keys().next().unwrap().clone();
    let list = base.trending.iter().find(|(_, v)| v.len() >= 2).map(|(k, _)| k.clone()).unwrap();

    type Edit = Box<dyn Fn(&mut StoreSnapshot)>;
    let feat = |name: String, f: Box<dyn Fn(&mut Value)>| -> Edit {
        let user = user.clone();
        Box::new(move |s: &mut StoreSnapshot| f(s.users.get_mut(&user).unwrap().get_mut(&name).unwrap()))
    };
    let must_report: Vec<(&str, Edit)> = vec![
        ("as_of +1", Box::new(|s| s.as_of = s.as_of.map(|a| a + 1))),
        ("as_of missing", Box::new(|s| s.as_of = None)),
        ("integer feature +1", feat(int_feature.clone(), Box::new(|v| *v = json!(v.as_u64().unwrap() + 1)))),
        ("integer feature as float", feat(int_feature.clone(), Box::new(|v| *v = json!(v.as_u64().unwrap() as f64)))),
        ("spend off by 1e-6 relative", feat(spend.clone(), Box::new(|v| *v = json!(v.as_f64().unwrap() * (1.0 + 1e-6) + 1e-6)))),
        ("spend null", feat(spend.clone(), Box::new(|v| *v = Value::Null))),
        ("hour_hist element", feat(hist.clone(), Box::new(|v| v[5] = json!(v[5].as_u64().unwrap() + 1)))),
        ("hour_hist too short", feat(hist.clone(), Box::new(|v| { v.as_array_mut().unwrap().pop(); }))),
        ("device map extra key", feat(devices.clone(), Box::new(|v| { v.as_object_mut().unwrap().insert("zz-device".into(), json!(1)); }))),
        ("device map zero entry", feat(devices.clone(), Box::new(|v| { v.as_object_mut().unwrap().insert("zz-device".into(), json!(0)); }))),
        ("last_purchase_ts 0 for null", Box::new({ let u = user.clone(); move |s: &mut StoreSnapshot| {
            let f = s.users.get_mut(&u).unwrap();
            f["last_purchase_ts"] = if f["last_purchase_ts"].is_null() { json!(0) } else { Value::Null };
        }})),
        ("feature missing", Box::new({ let (u, n) = (user.clone(), int_feature.clone()); move |s: &mut StoreSnapshot| { s.users.get_mut(&u).unwrap().as_object_mut().unwrap().remove(&n); }})),
        ("feature extra", Box::new({ let u = user.clone(); move |s: &mut StoreSnapshot| { s.users.get_mut(&u).unwrap()["views_99d"] = json!(0); }})),
        ("user missing", Box::new({ let u = user.clone(); move |s: &mut StoreSnapshot| { s.users.remove(&u); }})),
        ("user extra", Box::new(|s| { s.users.insert("zz-extra-user".into(), json!({})); })),
        ("trend count +1", Box::new({ let t = trend.clone(); move |s: &mut StoreSnapshot| s.trends.get_mut(&t).unwrap().count += 1 })),
        ("trend window", Box::new({ let t = trend.clone(); move |s: &mut StoreSnapshot| s.trends.get_mut(&t).unwrap().window_ms += 1 })),
        ("trend baseline", Box::new({ let t = trend.clone(); move |s: &mut StoreSnapshot| s.trends.get_mut(&t).unwrap().baseline_count += 1 })),
        ("trend score 1e-6", Box::new({ let t = trend.clone(); move |s: &mut StoreSnapshot| s.trends.get_mut(&t).unwrap().score *= 1.0 + 1e-6 })),
        ("trend missing", Box::new({ let t = trend.clone(); move |s: &mut StoreSnapshot| { s.trends.remove(&t); }})),
        ("trend extra", Box::new(|s| { s.trends.insert("product:zz-extra".into(), TrendRow { window_ms: 1, count: 1, baseline_count: 1, score: 1.0 }); })),
        ("trending swapped", Box::new({ let l = list.clone(); move |s: &mut StoreSnapshot| s.trending.get_mut(&l).unwrap().swap(0, 1) })),
        ("trending entry dropped", Box::new({ let l = list.clone(); move |s: &mut StoreSnapshot| { s.trending.get_mut(&l).unwrap().pop(); }})),
        ("trending count", Box::new({ let l = list.clone(); move |s: &mut StoreSnapshot| s.trending.get_mut(&l).unwrap()[0].2 += 1 })),
        ("trending score", Box::new({ let l = list.clone(); move |s: &mut StoreSnapshot| s.trending.get_mut(&l).unwrap()[0].1 *= 1.0 + 1e-6 })),
        ("trending list missing", Box::new({ let l = list.clone(); move |s: &mut StoreSnapshot| { s.trending.remove(&l); }})),
        ("trending list extra", Box::new(|s| { s.trending.insert("category:zz".into(), vec![("p".into(), 1.0, 3)]); })),
        ("store problem", Box::new(|s| s.problems.push("something odd".into()))),
    ];
    for (what, edit) in &must_report {
        let mut s = base.clone();
        edit(&mut s);
        let m = compare(&expected, &s);
        assert!(!m.is_empty(), "case {}: perturbation {what:?} was not reported", case.name);
    }

    let must_pass: Vec<(&str, Edit)> = vec![
        ("spend within 1e-12", feat(spend.clone(), Box::new(|v| *v = json!(v.as_f64().unwrap() * (1.0 + 1e-12) + 1e-12)))),
        ("trend score within 1e-12", Box::new({ let t = trend.clone(); move |s: &mut StoreSnapshot| s.trends.get_mut(&t).unwrap().score *= 1.0 + 1e-12 })),
        ("trending score within 1e-12", Box::new({ let l = list.clone(); move |s: &mut StoreSnapshot| s.trending.get_mut(&l).unwrap()[0].1 *= 1.0 + 1e-12 })),
        ("device map key order", feat(devices.clone(), Box::new(|v| {
            let mut entries: Vec<(String, Value)> = v.as_object().unwrap().clone().into_iter().collect();
            entries.reverse();
            *v = Value::Object(entries.into_iter().collect());
        }))),
    ];
    for (what, edit) in &must_pass {
        let mut s = base.clone();
        edit(&mut s);
        let m = compare(&expected, &s);
        assert!(m.is_empty(), "case {}: harmless change {what:?} was reported: {m:#?}", case.name);
    }

    // The mismatch list is capped.
    let mut s = base.clone();
    for (i, v) in s.users.values_mut().enumerate() {
        for (j, f) in v.as_object_mut().unwrap().values_mut().enumerate() {
            *f = json!(format!("junk-{i}-{j}"));
        }
    }
    for i in 0..50 {
        s.trends.insert(format!("product:zz{i}"), TrendRow { window_ms: 1, count: 1, baseline_count: 1, score: 1.0 });
    }
    let m = compare(&expected, &s);
    assert_eq!(m.len(), MAX_MISMATCHES + 1, "{m:#?}");
    assert!(m.last().unwrap().starts_with("... and "), "{m:#?}");

    // An empty store against an empty expectation, and meta.as_of null.
    let empty = json!({"as_of": null, "users": {}, "trends": {}, "trending": {}, "dead_letters": {}});
    assert!(compare(&empty, &StoreSnapshot::default()).is_empty());
    assert!(!compare(&empty, &StoreSnapshot { as_of: Some(1000), ..Default::default() }).is_empty());
}

#[test]
fn harness_replay_deltas_checks_the_protocol() {
    let rec = |at: u64, id: &str, v: Option<(u64, u64, f64)>, prev: Option<(u64, u64, f64)>| -> String {
        let vals = |v: Option<(u64, u64, f64)>| match v {
            Some((c, b, s)) => json!({"window_ms": 900000, "count": c, "baseline_count": b, "score": s}),
            None => Value::Null,
        };
        let mut m = json!({"entity_type": "product", "entity_id": id, "as_of": at, "prev": vals(prev), "deleted": v.is_none()});
        let body = vals(v);
        for f in ["window_ms", "count", "baseline_count", "score"] {
            m[f] = body.get(f).cloned().unwrap_or(Value::Null);
        }
        m.to_string()
    };
    let good = [
        rec(1000, "p1", Some((1, 1, 1.0)), None),
        rec(1000, "p2", Some((2, 2, 1.5)), None),
        rec(2000, "p1", Some((2, 2, 1.25)), Some((1, 1, 1.0))),
        rec(3000, "p2", None, Some((2, 2, 1.5))),
        rec(4000, "p2", Some((1, 3, 0.5)), None),
    ]
    .join("\n");
    let (state, problems) = replay_delta_lines(&good);
    assert!(problems.is_empty(), "{problems:#?}");
    let want: BTreeMap<String, TrendRow> = [
        ("product:p1".to_string(), TrendRow { window_ms: 900000, count: 2, baseline_count: 2, score: 1.25 }),
        ("product:p2".to_string(), TrendRow { window_ms: 900000, count: 1, baseline_count: 3, score: 0.5 }),
    ]
    .into_iter()
    .collect();
    assert_eq!(state, want);
    assert!(compare_trend_maps("a", &state, "b", &want).is_empty());
    let mut off = want.clone();
    off.get_mut("product:p1").unwrap().count = 3;
    assert!(!compare_trend_maps("a", &state, "b", &off).is_empty());
    off.remove("product:p2");
    assert_eq!(compare_trend_maps("a", &state, "b", &off).len(), 3);

    let bad = [
        ("prev not null for a new record", vec![rec(1000, "p1", Some((1, 1, 1.0)), Some((1, 1, 1.0)))]),
        ("null prev for an existing record", vec![rec(1000, "p1", Some((1, 1, 1.0)), None), rec(2000, "p1", Some((2, 1, 1.5)), None)]),
        ("wrong prev", vec![rec(1000, "p1", Some((1, 1, 1.0)), None), rec(2000, "p1", Some((2, 1, 1.5)), Some((1, 2, 1.0)))]),
        ("deleting an absent record", vec![rec(1000, "p1", None, Some((1, 1, 1.0)))]),
        ("no-op message", vec![rec(1000, "p1", Some((1, 1, 1.0)), None), rec(2000, "p1", Some((1, 1, 1.0)), Some((1, 1, 1.0)))]),
        ("as_of backwards", vec![rec(2000, "p1", Some((1, 1, 1.0)), None), rec(1000, "p2", Some((1, 1, 1.0)), None)]),
        ("two messages at one as_of", vec![rec(1000, "p1", Some((1, 1, 1.0)), None), rec(1000, "p1", Some((2, 1, 1.5)), Some((1, 1, 1.0)))]),
        ("not JSON", vec!["{not json".to_string()]),
        (
            "deleted with values",
            vec![
                rec(1000, "p1", Some((1, 1, 1.0)), None),
                json!({"entity_type": "product", "entity_id": "p1", "as_of": 2000, "window_ms": 900000, "count": 1, "baseline_count": 1,
                       "score": 1.0, "prev": {"window_ms": 900000, "count": 1, "baseline_count": 1, "score": 1.0}, "deleted": true})
                .to_string(),
            ],
        ),
    ];
    for (what, lines) in bad {
        let (_, problems) = replay_delta_lines(&lines.join("\n"));
        assert!(!problems.is_empty(), "violation {what:?} was not reported");
    }

    // The file form.
    let out = TempOut::new("harness-deltas");
    let path = out.path().join(DELTAS_FILE);
    std::fs::write(&path, format!("{good}\n")).unwrap();
    assert_eq!(replay_deltas(&path).unwrap(), want);
    std::fs::write(&path, format!("{}\n", rec(1000, "p1", None, Some((1, 1, 1.0))))).unwrap();
    assert!(replay_deltas(&path).is_err());
}

#[test]
fn harness_dead_letters_and_summary_checks() {
    let out = TempOut::new("harness-dead-letters");
    let path = out.path().join(DEAD_LETTERS_FILE);
    let dl = |reason: &str| json!({"reason": reason, "detail": "d", "source": "s", "raw": "r"}).to_string();
    std::fs::write(&path, [dl("invalid"), dl("invalid"), dl("late"), String::new()].join("\n")).unwrap();
    let counts = dead_letter_counts(&path);
    assert_eq!(counts, [("invalid".to_string(), 2), ("late".to_string(), 1)].into_iter().collect());
    let exp = |i: u64, l: u64, f: u64| json!({"dead_letters": {"invalid": i, "late": l, "future": f}});
    assert!(check_dead_letters(&exp(2, 1, 0), &counts).is_empty());
    assert!(!check_dead_letters(&exp(2, 0, 0), &counts).is_empty());
    assert!(!check_dead_letters(&exp(3, 1, 0), &counts).is_empty());
    assert!(!check_dead_letters(&exp(2, 1, 1), &counts).is_empty());
    let mut odd = counts.clone();
    odd.insert("bogus".into(), 1);
    assert!(!check_dead_letters(&exp(2, 1, 0), &odd).is_empty());
    std::fs::write(&path, format!("{}\n{{\"reason\": \"late\"}}\nnot json\n", dl("invalid"))).unwrap();
    let counts = dead_letter_counts(&path);
    assert!(!check_dead_letters(&json!({"dead_letters": {"invalid": 1, "late": 1}}), &counts).is_empty(), "{counts:?}");

    let summary = json!({"lines_read": 10, "accepted": 5, "invalid": 2, "late": 1, "future": 0, "bot_events": 2});
    assert!(check_summary(&exp(2, 1, 0), &summary).is_empty());
    assert!(!check_summary(&exp(3, 1, 0), &summary).is_empty());
    let mut s = summary.clone();
    s["lines_read"] = json!(11);
    assert!(!check_summary(&exp(2, 1, 0), &s).is_empty());
}

#[test]
fn harness_detects_tampered_pipeline_output() {
    let (case, expected) = rich_case();
    let out = TempOut::new(&format!("harness-tamper-{}", case.name));
    let output = run_case(&case, 1, out.path());
    assert!(output.status.success(), "{}", describe_output(&output, 4000));
    let clean = check_outputs(&expected, &output, out.path());
    // The untouched output must pass: otherwise every finding below would
    // prove nothing about the tampering.
    assert!(clean.is_empty(), "case {} fails before any tampering: {clean:?}", case.name);
    let db = out.path().join(STORE_FILE);
    let exec = |sql: &str| {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(sql).unwrap();
    };
    let findings = |title: &str| -> Vec<String> {
        let s = check_outputs(&expected, &output, out.path());
        s.into_iter().filter(|(t, _)| *t == title).flat_map(|(_, v)| v).collect()
    };
    let store = "store vs expected.json";
    let replay = "trend deltas replayed vs store trends";

    exec("UPDATE trends SET count = count + 1 WHERE rowid = (SELECT MIN(rowid) FROM trends)");
    assert!(!findings(store).is_empty());
    assert!(!findings(replay).is_empty());
    exec("UPDATE trends SET count = count - 1 WHERE rowid = (SELECT MIN(rowid) FROM trends)");
    assert!(check_outputs(&expected, &output, out.path()).is_empty());

    exec("UPDATE trends SET as_of = 1"); // per-row as_of is not compared
    assert!(check_outputs(&expected, &output, out.path()).is_empty());

    let user: String = rusqlite::Connection::open(&db).unwrap().query_row("SELECT MIN(user_id) FROM user_features", [], |r| r.get(0)).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let features: String = conn.query_row("SELECT features FROM user_features WHERE user_id = ?1", [&user], |r| r.get(0)).unwrap();
    let mut f: Value = serde_json::from_str(&features).unwrap();
    let key = f.as_object().unwrap().keys().find(|k| k.starts_with("views_")).unwrap().clone();
    f[&key] = json!(f[&key].as_u64().unwrap() + 1);
    conn.execute("UPDATE user_features SET features = ?1 WHERE user_id = ?2", rusqlite::params![f.to_string(), user]).unwrap();
    let got = findings(store);
    assert!(got.iter().any(|l| l.contains(&key)), "{got:#?}");
    conn.execute("UPDATE user_features SET features = ?1 WHERE user_id = ?2", rusqlite::params![features, user]).unwrap();
    drop(conn);
    assert!(check_outputs(&expected, &output, out.path()).is_empty());

    exec("UPDATE meta SET value = '1' WHERE key = 'as_of'");
    assert!(!findings(store).is_empty());
    exec(&format!("UPDATE meta SET value = '{}' WHERE key = 'as_of'", expected["as_of"].as_u64().unwrap()));

    exec("DELETE FROM trending WHERE rank = 1");
    assert!(!findings(store).is_empty());
}
