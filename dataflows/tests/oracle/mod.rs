//! A deliberately naive reference implementation ("oracle") of SPEC sections
//! 1-6, written straight from the SPEC text.
//!
//! Everything is recomputed from the raw list of admitted events for one
//! tick `at`: no incremental state, no interning, no cleverness. The only
//! things taken from the crate are the event decoder (SPEC section 1) and
//! the parameters; none of the crate's clock, bots, sessions, windows,
//! trends, trending or user-feature code is used.
//!
//! Integration tests include it with `mod oracle;`; it produces the
//! `StoreSnapshot` of `clickflow-testkit`, which also compares snapshots
//! (SPEC section 8).

#![allow(dead_code)]

use clickflow_dataflows::event::{decode_line, is_blank, Event, EventKind, UaPatterns};
use clickflow_dataflows::params::{Params, DAY_MS};
use clickflow_testkit::{StoreSnapshot, TrendRow};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

const HOUR_MS: u64 = 3_600_000;

// ---------------------------------------------------------------------------
// SPEC sections 1-2: admission by one reader.
// ---------------------------------------------------------------------------

/// What one reader lets through (SPEC sections 1-2).
#[derive(Debug, Clone)]
pub struct Admitted {
    /// Valid, non-late events, in read order (bots' events included).
    pub events: Vec<Event>,
    /// Lines that are not valid events (blank lines are not counted).
    pub invalid: u64,
    /// Valid events below the reader's watermark when read.
    pub late: u64,
    /// The first tick boundary strictly greater than the largest `ts` of
    /// `events`; `None` when there is no such event.
    pub a_end: Option<u64>,
}

/// The first tick boundary strictly greater than `ts`.
pub fn tick_after(ts: u64, params: &Params) -> u64 {
    (ts / params.tick_ms + 1) * params.tick_ms
}

/// SPEC sections 1-2 for ONE reader reading `lines` in order.
pub fn admit(lines: &[Vec<u8>], params: &Params) -> Admitted {
    let patterns = UaPatterns::new(&params.user_agent_patterns);
    let mut events = Vec::new();
    let mut invalid = 0;
    let mut late = 0;
    // Largest ts of the valid events read so far (late ones excluded: they
    // never raise it, since they are below it by definition).
    let mut max_ts: Option<u64> = None;
    for line in lines {
        if is_blank(line) {
            continue;
        }
        let event = match decode_line(line, &patterns) {
            Ok(event) => event,
            Err(_) => {
                invalid += 1;
                continue;
            }
        };
        // late iff ts < max - allowed_lateness (computed without underflow).
        let is_late = match max_ts {
            Some(max) => (event.ts as u128) + (params.allowed_lateness_ms as u128) < max as u128,
            None => false,
        };
        if is_late {
            late += 1;
            continue;
        }
        max_ts = Some(max_ts.map_or(event.ts, |m| m.max(event.ts)));
        events.push(event);
    }
    let a_end = events.iter().map(|e| e.ts).max().map(|m| tick_after(m, params));
    Admitted { events, invalid, late, a_end }
}

// ---------------------------------------------------------------------------
// The store as of one tick, as a clickflow-testkit StoreSnapshot.
// ---------------------------------------------------------------------------

/// SPEC section 3: the flag time of one user, from all of its valid,
/// non-late events (any order); `None` if no rule ever fires.
pub fn bot_flag_time(events: &[&Event], params: &Params) -> Option<u64> {
    let mut ts: Vec<u64> = events.iter().map(|e| e.ts).collect();
    ts.sort_unstable();

    // Rule 1: user agent -- the ts of the earliest matching event.
    let by_agent = events.iter().filter(|e| e.ua_bot).map(|e| e.ts).min();

    // Rule 2: burst -- the smallest t with `burst_events` events in
    // (t - span, t]. The count only goes up at an event's ts, so the
    // smallest such t is an event's ts; try them in ascending order.
    let mut by_burst = None;
    for &t in &ts {
        let upto_t = ts.partition_point(|&x| x <= t);
        let upto_start = ts.partition_point(|&x| (x as u128) + (params.burst_span_ms as u128) <= t as u128);
        if (upto_t - upto_start) as u64 >= params.burst_events as u64 {
            by_burst = Some(t);
            break;
        }
    }

    // Rule 3: daily volume -- the ts of the n-th event (ts order) of a UTC
    // day, on the earliest day that has n events.
    let mut days: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &t in &ts {
        days.entry(t / DAY_MS).or_default().push(t);
    }
    let n = params.daily_max_events as usize;
    let by_day = days.values().find(|d| d.len() >= n).map(|d| d[n - 1]);

    [by_agent, by_burst, by_day].into_iter().flatten().min()
}

/// One session (SPEC section 4).
#[derive(Debug, Clone)]
struct Session {
    start: u64,
    end: u64,
    device: String,
    has_cart: bool,
    has_purchase: bool,
}

/// SPEC section 4: cuts a user's horizon events into sessions.
fn cut_sessions(horizon: &[&Event], params: &Params) -> Vec<Session> {
    // ts order; equal ts ordered by device so that a session's first event
    // carries the lexicographically smallest device of its earliest ts.
    let mut sorted: Vec<&Event> = horizon.to_vec();
    sorted.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.device.cmp(&b.device)));
    let mut sessions: Vec<Session> = Vec::new();
    let mut prev_ts: Option<u64> = None;
    for e in sorted {
        let new_session = match prev_ts {
            None => true,
            Some(p) => e.ts - p > params.session_gap_ms,
        };
        if new_session {
            sessions.push(Session {
                start: e.ts,
                end: e.ts,
                device: e.device.clone(),
                has_cart: false,
                has_purchase: false,
            });
        }
        let s = sessions.last_mut().expect("a session was just started");
        s.end = e.ts;
        s.has_cart |= e.kind == EventKind::Cart;
        s.has_purchase |= e.kind == EventKind::Purchase;
        prev_ts = Some(e.ts);
    }
    sessions
}

/// Whether `t` lies in the window of width `w` as of `at`: `at - w <= t < at`.
fn in_window(t: u64, w: u64, at: u64) -> bool {
    t < at && (t as u128) + (w as u128) >= at as u128
}

fn device_object(counts: BTreeMap<String, u64>) -> Value {
    let mut m = Map::new();
    for (device, n) in counts {
        if n > 0 {
            m.insert(device, Value::from(n));
        }
    }
    Value::Object(m)
}

/// SPEC section 5: the feature record of one user as of `at`, from its
/// accepted events in the horizon (non-empty).
fn user_record(horizon: &[&Event], params: &Params, at: u64) -> Value {
    let sessions = cut_sessions(horizon, params);
    let mut rec = Map::new();
    for window in &params.windows {
        let w = window.ms;
        let sfx = &window.name;
        let evs: Vec<&Event> = horizon.iter().copied().filter(|e| in_window(e.ts, w, at)).collect();
        let views = evs.iter().filter(|e| e.kind == EventKind::View).count() as u64;
        let carts = evs.iter().filter(|e| e.kind == EventKind::Cart).count() as u64;
        let purchases = evs.iter().filter(|e| e.kind == EventKind::Purchase).count() as u64;
        let spend: f64 = evs.iter().filter(|e| e.kind == EventKind::Purchase).map(|e| e.price).sum();
        let products: BTreeSet<&str> = evs
            .iter()
            .filter_map(|e| e.product_id.as_deref())
            .filter(|p| !p.is_empty())
            .collect();
        let mut hist = vec![0u64; 24];
        for e in &evs {
            hist[((e.ts / HOUR_MS) % 24) as usize] += 1;
        }
        let ss: Vec<&Session> = sessions.iter().filter(|s| in_window(s.start, w, at)).collect();
        let mut browse = BTreeMap::new();
        let mut bought = BTreeMap::new();
        for s in &ss {
            let target = if s.has_purchase { &mut bought } else { &mut browse };
            *target.entry(s.device.clone()).or_insert(0u64) += 1;
        }
        rec.insert(format!("views_{sfx}"), Value::from(views));
        rec.insert(format!("carts_{sfx}"), Value::from(carts));
        rec.insert(format!("purchases_{sfx}"), Value::from(purchases));
        rec.insert(format!("spend_{sfx}"), Value::from(spend));
        rec.insert(format!("distinct_products_{sfx}"), Value::from(products.len() as u64));
        rec.insert(format!("hour_hist_{sfx}"), Value::from(hist));
        rec.insert(format!("sessions_{sfx}"), Value::from(ss.len() as u64));
        rec.insert(
            format!("cart_sessions_{sfx}"),
            Value::from(ss.iter().filter(|s| s.has_cart).count() as u64),
        );
        rec.insert(
            format!("purchase_sessions_{sfx}"),
            Value::from(ss.iter().filter(|s| s.has_purchase).count() as u64),
        );
        rec.insert(
            format!("session_ms_{sfx}"),
            Value::from(ss.iter().map(|s| s.end - s.start).sum::<u64>()),
        );
        rec.insert(format!("browse_devices_{sfx}"), device_object(browse));
        rec.insert(format!("purchase_devices_{sfx}"), device_object(bought));
    }
    let last_event = horizon.iter().map(|e| e.ts).max().expect("non-empty horizon");
    rec.insert("last_event_ts".into(), Value::from(last_event));
    let cart_starts: Vec<u64> = sessions.iter().filter(|s| s.has_cart).map(|s| s.start).collect();
    rec.insert(
        "last_cart_session_ts".into(),
        cart_starts.iter().max().map_or(Value::Null, |&t| Value::from(t)),
    );
    rec.insert(
        "last_purchase_ts".into(),
        horizon
            .iter()
            .filter(|e| e.kind == EventKind::Purchase)
            .map(|e| e.ts)
            .max()
            .map_or(Value::Null, Value::from),
    );
    let gap = if cart_starts.len() < 2 {
        Value::Null
    } else {
        let first = *cart_starts.iter().min().expect("n >= 2");
        let last = *cart_starts.iter().max().expect("n >= 2");
        Value::from((last - first) as f64 / (cart_starts.len() - 1) as f64)
    };
    rec.insert("cart_session_gap_ms".into(), gap);
    Value::Object(rec)
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        let r = a % b;
        a = b;
        b = r;
    }
    a
}

/// SPEC section 6: the exact score `N / D`, reduced, and the double nearest
/// to it (both reduced terms are far below 2^53 for any realistic count, so
/// one correctly rounded division of exact doubles gives the nearest double).
pub fn score_fraction(count: u64, baseline_count: u64, w_ms: u64, baseline_ms: u64) -> (u128, u128, f64) {
    let n = (count as u128 + 1) * baseline_ms as u128;
    let d = baseline_count as u128 * w_ms as u128 + baseline_ms as u128;
    let g = gcd(n, d);
    let (n, d) = (n / g, d / g);
    (n, d, n as f64 / d as f64)
}

/// A candidate for a trending list.
struct Candidate {
    id: String,
    n: u128,
    d: u128,
    score: f64,
    count: u64,
}

/// Ranks candidates: larger exact score first, then larger count, then the
/// smaller id in byte order; keeps the top k.
fn top_k(mut cands: Vec<Candidate>, k: usize) -> Vec<(String, f64, u64)> {
    cands.sort_by(|a, b| {
        // a before b when a's fraction is larger: compare b.n/b.d with a.n/a.d.
        let by_score = (b.n * a.d).cmp(&(a.n * b.d));
        by_score
            .then_with(|| b.count.cmp(&a.count))
            .then_with(|| a.id.as_bytes().cmp(b.id.as_bytes()))
    });
    cands.into_iter().take(k).map(|c| (c.id, c.score, c.count)).collect()
}

/// SPEC sections 3-6: the whole store as of tick `at` (with the flag times
/// of the users flagged before it), from the admitted (valid, non-late)
/// events of every user, bots' events included, in any order.
pub fn snapshot_as_of(events: &[Event], params: &Params, at: u64) -> StoreSnapshot {
    // Group by user; a bot is flagged from ALL of its events (it may look
    // further back than the horizon); flag times >= at do not count yet.
    let mut by_user: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_user.entry(e.user_id.as_str()).or_default().push(e);
    }
    let mut bots = BTreeMap::new();
    for (user, evs) in &by_user {
        if let Some(flag) = bot_flag_time(evs, params) {
            if flag < at {
                bots.insert(user.to_string(), flag);
            }
        }
    }

    // Accepted events as of at: non-bot users, ts < at.
    let accepted: BTreeMap<&str, Vec<&Event>> = by_user
        .iter()
        .filter(|(u, _)| !bots.contains_key(**u))
        .map(|(u, evs)| (*u, evs.iter().copied().filter(|e| e.ts < at).collect::<Vec<_>>()))
        .collect();

    // Section 5: user features over the horizon.
    let horizon = params.horizon_ms();
    let mut users = BTreeMap::new();
    for (user, evs) in &accepted {
        let in_horizon: Vec<&Event> = evs.iter().copied().filter(|e| in_window(e.ts, horizon, at)).collect();
        if !in_horizon.is_empty() {
            users.insert(user.to_string(), user_record(&in_horizon, params, at));
        }
    }

    // Section 6: trends.
    let all_accepted: Vec<&Event> = accepted.values().flatten().copied().collect();
    let widths = &params.trend_widths_ms;
    let w_star = widths
        .iter()
        .copied()
        .find(|&w| all_accepted.iter().filter(|e| in_window(e.ts, w, at)).count() as u64 >= params.trend_min_events)
        .unwrap_or(*widths.last().expect("at least one trend width"));
    let b = params.baseline_ms;

    // (entity type, entity id) -> (count in w*, count in baseline)
    let mut counts: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for e in all_accepted.iter().filter(|e| in_window(e.ts, b, at)) {
        let in_short = in_window(e.ts, w_star, at);
        let entities = [
            ("product", e.product_id.as_deref()),
            ("category", e.category.as_deref()),
        ];
        for (kind, id) in entities {
            let Some(id) = id.filter(|id| !id.is_empty()) else { continue };
            let c = counts.entry((kind, id)).or_insert((0, 0));
            c.1 += 1;
            if in_short {
                c.0 += 1;
            }
        }
    }
    let mut trends = BTreeMap::new();
    let mut products: Vec<Candidate> = Vec::new();
    let mut categories: Vec<Candidate> = Vec::new();
    for (&(kind, id), &(count, baseline_count)) in &counts {
        if baseline_count == 0 {
            continue;
        }
        let (n, d, score) = score_fraction(count, baseline_count, w_star, b);
        trends.insert(format!("{kind}:{id}"), TrendRow { window_ms: w_star, count, baseline_count, score });
        if count >= params.trending_min_count {
            let cand = Candidate { id: id.to_string(), n, d, score, count };
            if kind == "product" {
                products.push(cand);
            } else {
                categories.push(cand);
            }
        }
    }

    // A product's category: the non-empty category of its latest accepted
    // event in the baseline window that has one (ties: smallest category).
    let mut product_category: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
    for e in all_accepted.iter().filter(|e| in_window(e.ts, b, at)) {
        let (Some(p), Some(c)) = (e.product_id.as_deref(), e.category.as_deref()) else { continue };
        if p.is_empty() || c.is_empty() {
            continue;
        }
        let better = match product_category.get(p) {
            None => true,
            Some(&(ts, cat)) => e.ts > ts || (e.ts == ts && c < cat),
        };
        if better {
            product_category.insert(p, (e.ts, c));
        }
    }

    let k = params.trending_k;
    let mut trending = BTreeMap::new();
    let mut per_category: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for c in &products {
        if let Some(&(_, cat)) = product_category.get(c.id.as_str()) {
            per_category.entry(cat.to_string()).or_default().push(Candidate {
                id: c.id.clone(),
                n: c.n,
                d: c.d,
                score: c.score,
                count: c.count,
            });
        }
    }
    let mut put = |name: String, list: Vec<(String, f64, u64)>| {
        if !list.is_empty() {
            trending.insert(name, list);
        }
    };
    put("global".into(), top_k(products, k));
    put("categories".into(), top_k(categories, k));
    for (cat, cands) in per_category {
        put(format!("category:{cat}"), top_k(cands, k));
    }

    StoreSnapshot { as_of: Some(at), users, trends, trending, bots: Some(bots), problems: Vec::new() }
}

/// The store once the pipeline is as of `A_end`: [`snapshot_as_of`] it, or
/// an empty store without `as_of` (and no bots) when no event was admitted.
pub fn store_at_end(admitted: &Admitted, params: &Params) -> StoreSnapshot {
    match admitted.a_end {
        Some(at) => snapshot_as_of(&admitted.events, params, at),
        None => StoreSnapshot { bots: Some(BTreeMap::new()), ..StoreSnapshot::default() },
    }
}
