//! The incremental dataflow against a from-scratch recomputation.
//!
//! Seeded random clickstreams (bursts, user-agent and daily-volume bots, near
//! misses, out-of-order and late events, session gaps around the threshold,
//! quiet stretches longer than the windows, invalid lines) run through the
//! real dataflow with 1, 2 and 3 workers in random batches. After every
//! output tick the store that the emitted changes build up must equal the
//! oracle's snapshot computed from scratch as of that tick, and replaying the
//! trend deltas must give the trend table.

mod oracle;

use clickflow_dataflows::clock::{Admit, Readers};
use clickflow_dataflows::event::{decode_line, is_blank, UaPatterns};
use clickflow_dataflows::messages::TrendValues;
use clickflow_dataflows::params::{Params, Window};
use clickflow_dataflows::{build, Change, Counters, Ingest, Routing};
use clickflow_testkit::{compare_snapshots, StoreSnapshot, TrendRow};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::core::Inspect;
use timely::dataflow::InputHandleVec;

const MIN: u64 = 60_000;
const T0: u64 = 1_709_251_200_000 - 3 * MIN; // three minutes before a UTC midnight

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let x = self.0;
        (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd) >> 16
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Small windows and thresholds, so that a few thousand events exercise every edge.
fn params(rng: &mut Rng) -> Params {
    let tick_ms = [1000, 7000, 60_000][rng.below(3) as usize];
    let long_baseline = rng.chance(50);
    Params {
        tick_ms,
        allowed_lateness_ms: [0, 5000, 30_000][rng.below(3) as usize],
        burst_events: 6,
        burst_span_ms: 4000,
        daily_max_events: 40,
        session_gap_ms: 5 * MIN,
        windows: vec![
            Window { name: "20m".into(), ms: 20 * MIN },
            Window { name: "1h".into(), ms: 60 * MIN },
            Window { name: "3h".into(), ms: 180 * MIN },
        ],
        trend_widths_ms: vec![5 * MIN, 10 * MIN, 20 * MIN],
        trend_min_events: 15,
        baseline_ms: if long_baseline { 240 * MIN } else { 60 * MIN },
        trending_k: 3,
        trending_min_count: 2,
        ..Params::default()
    }
}

/// A random clickstream as JSON lines, roughly in time order.
fn stream(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    let users = 12 + rng.below(20);
    let mut t = T0;
    let mut lines = Vec::with_capacity(n);
    let devices = ["mobile", "Desktop", "tablet", ""];
    let uas = ["Mozilla/5.0", "Mozilla/5.0 (compatible; Googlebot/2.1)", "python-request", "curl/8.0"];
    let mut i = 0;
    while lines.len() < n {
        i += 1;
        t += match rng.below(100) {
            0 => 2 * 60 * MIN + rng.below(4 * 60 * MIN), // a quiet stretch past windows
            1..=5 => 5 * MIN + rng.below(2) * 1000 - 1000 + rng.below(2), // around the session gap
            6..=40 => rng.below(300),                                // bursts
            _ => rng.below(40_000),
        };
        let mut ts = t;
        if rng.chance(8) {
            ts = ts.saturating_sub(rng.below(40_000)); // out of order, sometimes late
        }
        let user = if rng.chance(15) { 0 } else { 1 + rng.below(users) };
        let kind = ["view", "view", "view", "cart", "purchase"][rng.below(5) as usize];
        let mut line = format!("{{\"ts\": {ts}, \"user_id\": \"u{user}\", \"type\": \"{kind}\"");
        if rng.chance(85) {
            line.push_str(&format!(", \"product_id\": \"p{}\"", rng.below(9)));
        }
        if rng.chance(80) {
            line.push_str(&format!(", \"category\": \"c{}\"", rng.below(4)));
        }
        if rng.chance(80) {
            line.push_str(&format!(", \"device\": \"{}\"", devices[rng.below(4) as usize]));
        }
        if kind == "purchase" && rng.chance(80) {
            if rng.chance(5) {
                // Prices far from the cents range: spend must stay exact
                // (SPEC section 8) past 2^63 and up to 1e300.
                let huge = ["1e300", "5e18", "9.3e18", "1.5e-7", "123456789012.345"];
                line.push_str(&format!(", \"price\": {}", huge[rng.below(5) as usize]));
            } else {
                line.push_str(&format!(", \"price\": {}.{:02}", rng.below(200), rng.below(100)));
            }
        }
        if rng.chance(3) {
            line.push_str(&format!(", \"user_agent\": \"{}\"", uas[rng.below(4) as usize]));
        }
        line.push('}');
        if rng.chance(2) {
            line = line[..line.len() / 2].to_string(); // invalid
        }
        if i % 97 == 0 {
            lines.push(b"   ".to_vec());
        }
        lines.push(line.into_bytes());
    }
    lines
}

/// Runs the dataflow; returns every change, in arrival order, grouped by tick.
fn run_dataflow(lines: Vec<Vec<u8>>, params: Params, workers: usize, batch: usize, routing: Routing) -> BTreeMap<u64, Vec<Change>> {
    let captured: Arc<Mutex<Vec<Change>>> = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::new(lines);
    let sink = captured.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let mut input = InputHandleVec::<u64, Ingest>::new();
        let sink = sink.clone();
        let params = params.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let changes = build(input.to_stream(scope), &params, Arc::new(Counters::default()), routing);
            changes.inspect(move |c| sink.lock().unwrap().push(c.clone()));
        });
        if worker.index() != 0 {
            return;
        }
        let peers = worker.peers() as u32;
        let patterns = UaPatterns::new(&params.user_agent_patterns);
        let mut clock = Readers::new(&params, 1);
        for (i, line) in lines.iter().enumerate() {
            if !is_blank(line) {
                if let Ok(e) = decode_line(line, &patterns) {
                    if clock.admit(0, e.ts) == Admit::OnTime {
                        input.send(Ingest::Event(e));
                    }
                }
            }
            let end = i + 1 == lines.len();
            if end || (i + 1) % batch == 0 {
                let closed = if end {
                    clock.finish(0);
                    clock.close_end()
                } else {
                    clock.close()
                };
                if let Some(at) = closed {
                    for w in 0..peers {
                        input.send(Ingest::Tick { at, worker: w });
                    }
                }
                input.advance_to(clock.frontier().unwrap_or(u64::MAX).max(*input.time()));
                worker.step();
            }
        }
    })
    .expect("timely runs");
    let mut by_tick: BTreeMap<u64, Vec<Change>> = BTreeMap::new();
    for c in Arc::try_unwrap(captured).ok().unwrap().into_inner().unwrap() {
        by_tick.entry(c.at()).or_default().push(c);
    }
    by_tick
}

fn row(v: &TrendValues) -> TrendRow {
    TrendRow { window_ms: v.window_ms, count: v.count, baseline_count: v.baseline_count, score: v.score }
}

/// Applies one tick's changes to the store (its tick marker sets `as_of`);
/// checks each delta's `prev` against it.
fn apply(store: &mut StoreSnapshot, changes: &[Change], errors: &mut Vec<String>) {
    for c in changes {
        match c {
            Change::User(u) => match &u.features {
                Some(f) => {
                    store.users.insert(u.user_id.clone(), serde_json::from_str(f).expect("features are JSON"));
                }
                None => {
                    if store.users.remove(&u.user_id).is_none() {
                        errors.push(format!("deleted user {} had no row", u.user_id));
                    }
                }
            },
            Change::Trend(t) => {
                let key = format!("{}:{}", t.kind.as_str(), t.id);
                let prev = store.trends.get(&key).copied();
                if prev != t.prev.as_ref().map(row) {
                    errors.push(format!("delta for {key} has prev {:?}, store had {prev:?}", t.prev));
                }
                match &t.new {
                    Some(v) => store.trends.insert(key, row(v)),
                    None => store.trends.remove(&key),
                };
            }
            Change::Trending(l) => {
                if l.entries.is_empty() {
                    store.trending.remove(&l.list);
                } else {
                    store.trending.insert(l.list.clone(), l.entries.iter().map(|e| (e.id.clone(), e.score, e.count)).collect());
                }
            }
            Change::Tick(at) => store.as_of = Some(*at),
        }
    }
}

fn check_seed(seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let params = params(&mut rng);
    let n = 1500 + rng.below(1500) as usize;
    let lines = stream(&mut rng, n);
    let workers = 1 + (seed % 3) as usize;
    let batch = 20 + rng.below(200) as usize;
    let admitted = oracle::admit(&lines, &params);
    // Changes all on worker 0 (the SQLite sink), or each where it was made (Redis).
    let routing = if seed.is_multiple_of(2) { Routing::Central } else { Routing::Distributed };
    let by_tick = run_dataflow(lines, params.clone(), workers, batch, routing);
    // A store holds no bots' flag times (`bots: None`): they are not compared.
    let mut store = StoreSnapshot::default();
    let mut errors = Vec::new();
    let ticks: Vec<u64> = by_tick.keys().copied().collect();
    assert!(ticks.len() > 3, "seed {seed}: only {} ticks", ticks.len());
    for at in &ticks {
        apply(&mut store, &by_tick[at], &mut errors);
        let want = oracle::snapshot_as_of(&admitted.events, &params, *at);
        let problems = compare_snapshots(&want, &store);
        if !problems.is_empty() {
            errors.push(format!("seed {seed} ({workers} workers, {routing:?}, tick {} ms, batch {batch}) as of {at}:", params.tick_ms));
            errors.extend(problems.into_iter().take(12).map(|p| format!("    {p}")));
            break;
        }
        if !by_tick[at].iter().any(|c| matches!(c, Change::Tick(_))) {
            errors.push(format!("seed {seed}: tick {at} has changes but no tick marker"));
        }
    }
    assert_eq!(ticks.last().copied(), admitted.a_end, "seed {seed}: the last tick is A_end");
    errors
}

#[test]
fn incremental_store_equals_recomputation_at_every_tick() {
    let mut errors = Vec::new();
    for seed in 1..=24 {
        errors.extend(check_seed(seed));
    }
    assert!(errors.is_empty(), "{} problems:\n{}", errors.len(), errors.join("\n"));
}
