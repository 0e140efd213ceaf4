//! SPEC section 8: how a store is compared with what it must hold.
//! Integers exact; `spend_*`, `score` and `cart_session_gap_ms` within
//! `1e-9 * max(|a|, |b|, 1)` ([`close`]); everything else exact (objects as
//! maps, an integer never equal to a float). Per-row `as_of` is not
//! compared; `meta.as_of` is.
//!
//! Mismatches come as a list of readable lines: first one summary line per
//! part that differs (how many users are missing, unexpected or different,
//! the same for trends, which trending lists differ, ...), then the
//! details, one line per feature, trend field or rank. [`compare`] cuts the
//! list to [`MAX_MISMATCHES`]; the other comparisons leave cutting to the
//! caller ([`cap`], [`cap_at`]).

use crate::snapshot::{snapshot_from_expected, StoreSnapshot, TrendRow};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Mismatch lists are cut to this many lines (plus one "... and N more" line).
pub const MAX_MISMATCHES: usize = 30;

/// `|a - b| <= 1e-9 * max(|a|, |b|, 1)` (NaN never matches).
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Features compared with [`close`]; every other feature is exact.
pub fn is_tolerant_feature(name: &str) -> bool {
    name.starts_with("spend_") || name == "cart_session_gap_ms"
}

/// Cuts a mismatch list to [`MAX_MISMATCHES`] lines plus "... and N more".
pub fn cap(v: Vec<String>) -> Vec<String> {
    cap_at(v, MAX_MISMATCHES)
}

/// Cuts a mismatch list to `max` lines plus "... and N more".
pub fn cap_at(mut v: Vec<String>, max: usize) -> Vec<String> {
    if v.len() > max {
        let more = v.len() - max;
        v.truncate(max);
        v.push(format!("... and {more} more"));
    }
    v
}

/// `s` cut to at most `max` bytes (at a character boundary), "..." marking a cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// A JSON value for a message: "(absent)", or its text clipped to 200 bytes.
pub fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".to_string(),
        Some(v) => clip(&v.to_string(), 200),
    }
}

/// Exact JSON equality where integers compare as integers, a float is never
/// equal to an integer, and objects compare as maps.
fn exact_eq(a: &Value, b: &Value) -> bool {
    let int = |n: &serde_json::Number| n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (int(x), int(y)) {
            (Some(i), Some(j)) => i == j,
            (None, None) => x.as_f64() == y.as_f64(),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| exact_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| exact_eq(v, w))),
        _ => a == b,
    }
}

/// Compares one feature value; pushes mismatches prefixed by `at`.
fn compare_feature(at: &str, name: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    if is_tolerant_feature(name) {
        let ok = match (want, got) {
            (Value::Null, Value::Null) => true,
            (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => close(a, b),
                _ => false,
            },
            _ => false,
        };
        if !ok {
            out.push(format!("{at}: expected {}, got {}", show(Some(want)), show(Some(got))));
        }
        return;
    }
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            // device -> count maps: report per key.
            let keys: BTreeSet<&String> = w.keys().chain(g.keys()).collect();
            for k in keys {
                match (w.get(k), g.get(k)) {
                    (Some(a), Some(b)) if exact_eq(a, b) => {}
                    (a, b) => out.push(format!("{at}.{k}: expected {}, got {}", show(a), show(b))),
                }
            }
        }
        _ => {
            if !exact_eq(want, got) {
                let note = match (want, got) {
                    (Value::Number(a), Value::Number(b)) if a.is_f64() != b.is_f64() => " (integer vs float)",
                    _ => "",
                };
                out.push(format!("{at}: expected {}, got {}{note}", show(Some(want)), show(Some(got))));
            }
        }
    }
}

/// Mismatches of one user's feature object (uncapped); a record that is not
/// a JSON object is always one.
pub fn compare_user(user: &str, want: &Value, got: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(w), Some(g)) = (want.as_object(), got.as_object()) else {
        out.push(format!("user {user:?}: expected {}, got {}", show(Some(want)), show(Some(got))));
        return out;
    };
    let names: BTreeSet<&String> = w.keys().chain(g.keys()).collect();
    for name in names {
        let at = format!("user {user:?}: {name}");
        match (w.get(name), g.get(name)) {
            (Some(a), Some(b)) => compare_feature(&at, name, a, b, &mut out),
            (Some(a), None) => out.push(format!("{at}: missing (expected {})", show(Some(a)))),
            (None, Some(b)) => out.push(format!("{at}: unexpected feature (got {})", show(Some(b)))),
            (None, None) => unreachable!("a name comes from one of the two"),
        }
    }
    out
}

fn trend_diff(key: &str, want: &TrendRow, got: &TrendRow, out: &mut Vec<String>) {
    let mut parts = Vec::new();
    for (f, a, b) in [("window_ms", want.window_ms, got.window_ms), ("count", want.count, got.count), ("baseline_count", want.baseline_count, got.baseline_count)] {
        if a != b {
            parts.push(format!("{f} expected {a}, got {b}"));
        }
    }
    if !close(want.score, got.score) {
        parts.push(format!("score expected {:?}, got {:?}", want.score, got.score));
    }
    if !parts.is_empty() {
        out.push(format!("trend {key}: {}", parts.join("; ")));
    }
}

/// Mismatches between two trend maps (integers exact, score with
/// [`close`]), uncapped: a summary line, then one line per key;
/// `want_label` / `got_label` name the sides in messages.
pub fn compare_trend_maps(want_label: &str, want: &BTreeMap<String, TrendRow>, got_label: &str, got: &BTreeMap<String, TrendRow>) -> Vec<String> {
    let mut out = Vec::new();
    let (mut missing, mut extra, mut differ) = (0, 0, 0);
    let keys: BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    for key in keys {
        match (want.get(key), got.get(key)) {
            (Some(a), Some(b)) => {
                let before = out.len();
                trend_diff(key, a, b, &mut out);
                differ += usize::from(out.len() > before);
            }
            (Some(a), None) => {
                missing += 1;
                out.push(format!("trend {key}: in {want_label} {a} but not in {got_label}"));
            }
            (None, Some(b)) => {
                extra += 1;
                out.push(format!("trend {key}: in {got_label} {b} but not in {want_label}"));
            }
            (None, None) => unreachable!("a key comes from one of the two"),
        }
    }
    if missing + extra + differ == 0 {
        return out;
    }
    let mut head = vec![format!(
        "trends: {missing} only in {want_label}, {extra} only in {got_label}, {differ} differ ({} in {want_label}, {} in {got_label}); \
         `score` differences below are {want_label} vs {got_label}",
        want.len(),
        got.len()
    )];
    head.extend(out);
    head
}

fn fmt_entry(e: &(String, f64, u64)) -> String {
    format!("[{:?}, {:?}, {}]", e.0, e.1, e.2)
}

/// Compares the store the SPEC requires (`expected`, an `expected.json`
/// value) with `got`: [`compare_snapshots`] of [`snapshot_from_expected`],
/// cut to [`MAX_MISMATCHES`] (empty = pass).
pub fn compare(expected: &Value, got: &StoreSnapshot) -> Vec<String> {
    cap(compare_uncapped(expected, got))
}

/// [`compare`] without the cut.
pub fn compare_uncapped(expected: &Value, got: &StoreSnapshot) -> Vec<String> {
    compare_snapshots(&snapshot_from_expected(expected), got)
}

/// Every mismatch between the store `want` and the store `got` (uncapped;
/// empty = pass): `as_of`, `got`'s reading problems, users, trends,
/// trending lists, and the bots' flag times when both sides know them.
pub fn compare_snapshots(want: &StoreSnapshot, got: &StoreSnapshot) -> Vec<String> {
    let mut head = Vec::new();
    let mut details = Vec::new();

    if want.as_of != got.as_of {
        let f = |v: Option<u64>| v.map_or("none (no meta.as_of row)".to_string(), |v| v.to_string());
        head.push(format!("meta.as_of: expected {}, got {}", f(want.as_of), f(got.as_of)));
    }
    head.extend(got.problems.iter().map(|p| format!("store problem: {p}")));
    compare_users(want, got, &mut head, &mut details);
    let mut trends = compare_trend_maps("expected", &want.trends, "store", &got.trends);
    if !trends.is_empty() {
        head.push(trends.remove(0));
        details.extend(trends);
    }
    compare_trending(want, got, &mut head, &mut details);
    if let (Some(w), Some(g)) = (&want.bots, &got.bots) {
        let users: BTreeSet<&String> = w.keys().chain(g.keys()).collect();
        let before = details.len();
        for user in users {
            let (a, b) = (w.get(user), g.get(user));
            if a != b {
                let f = |t: Option<&u64>| t.map_or("not flagged".to_string(), |t| format!("flagged at {t}"));
                details.push(format!("bot {user:?}: expected {}, got {}", f(a), f(b)));
            }
        }
        if details.len() > before {
            head.push(format!("bots: {} users flagged differently ({} expected, {} got)", details.len() - before, w.len(), g.len()));
        }
    }
    head.extend(details);
    head
}

fn compare_users(want: &StoreSnapshot, got: &StoreSnapshot, head: &mut Vec<String>, details: &mut Vec<String>) {
    let (mut missing, mut extra, mut differ) = (Vec::new(), Vec::new(), 0usize);
    let mut diffs = Vec::new();
    let keys: BTreeSet<&String> = want.users.keys().chain(got.users.keys()).collect();
    for user in keys {
        match (want.users.get(user), got.users.get(user)) {
            (Some(a), Some(b)) => {
                let d = compare_user(user, a, b);
                differ += usize::from(!d.is_empty());
                diffs.extend(d);
            }
            (Some(_), None) => missing.push(user.as_str()),
            (None, Some(_)) => extra.push(user.as_str()),
            (None, None) => unreachable!("a user comes from one of the two"),
        }
    }
    if missing.is_empty() && extra.is_empty() && differ == 0 {
        return;
    }
    head.push(format!(
        "users: {} missing, {} unexpected, {differ} with different features ({} expected, {} in store)",
        missing.len(),
        extra.len(),
        want.users.len(),
        got.users.len()
    ));
    let list = |v: &[&str]| {
        let shown: Vec<String> = v.iter().take(10).map(|u| format!("{u:?}")).collect();
        format!("{}{}", shown.join(", "), if v.len() > 10 { format!(", ... ({} in all)", v.len()) } else { String::new() })
    };
    if !missing.is_empty() {
        details.push(format!("missing users: {}", list(&missing)));
    }
    if !extra.is_empty() {
        details.push(format!("unexpected users: {}", list(&extra)));
    }
    details.extend(diffs);
}

fn compare_trending(want: &StoreSnapshot, got: &StoreSnapshot, head: &mut Vec<String>, details: &mut Vec<String>) {
    let mut summary = Vec::new();
    let names: BTreeSet<&String> = want.trending.keys().chain(got.trending.keys()).collect();
    for list in names {
        match (want.trending.get(list), got.trending.get(list)) {
            (Some(a), Some(b)) => {
                let mut bad = false;
                if a.len() != b.len() {
                    bad = true;
                    details.push(format!("trending {list}: expected {} entries, got {}", a.len(), b.len()));
                }
                for i in 0..a.len().max(b.len()) {
                    match (a.get(i), b.get(i)) {
                        (Some(x), Some(y)) if x.0 == y.0 && x.2 == y.2 && close(x.1, y.1) => {}
                        (x, y) => {
                            bad = true;
                            let f = |e: Option<&(String, f64, u64)>| e.map_or("(none)".to_string(), fmt_entry);
                            details.push(format!("trending {list} rank {}: expected {}, got {}", i + 1, f(x), f(y)));
                        }
                    }
                }
                if bad {
                    summary.push(format!("{list:?} differs"));
                }
            }
            (Some(a), None) => {
                summary.push(format!("{list:?} missing"));
                details.push(format!("trending {list}: missing list (expected {})", a.iter().map(fmt_entry).collect::<Vec<_>>().join(", ")));
            }
            (None, Some(b)) => {
                summary.push(format!("{list:?} unexpected"));
                details.push(format!("trending {list}: unexpected list ({})", b.iter().map(fmt_entry).collect::<Vec<_>>().join(", ")));
            }
            (None, None) => unreachable!("a list comes from one of the two"),
        }
    }
    if !summary.is_empty() {
        head.push(format!("trending lists: {}", cap_at(summary, 8).join(", ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_bots(bots: Option<&[(&str, u64)]>) -> StoreSnapshot {
        StoreSnapshot { bots: bots.map(|b| b.iter().map(|(u, t)| (u.to_string(), *t)).collect()), ..StoreSnapshot::default() }
    }

    #[test]
    fn bots_are_compared_only_when_both_sides_know_them() {
        let flagged = with_bots(Some(&[("b1", 1000)]));
        assert!(compare_snapshots(&flagged, &flagged).is_empty());
        assert!(compare_snapshots(&flagged, &with_bots(None)).is_empty(), "a store holds no flag times");
        let m = compare_snapshots(&flagged, &with_bots(Some(&[("b1", 2000), ("b2", 5)])));
        assert_eq!(m.len(), 3, "{m:#?}");
        assert!(m[0].starts_with("bots: 2 users flagged differently"), "{m:#?}");
        assert_eq!(m[1], "bot \"b1\": expected flagged at 1000, got flagged at 2000");
        assert_eq!(m[2], "bot \"b2\": expected not flagged, got flagged at 5");
    }

    #[test]
    fn summaries_come_before_details() {
        let mut want = StoreSnapshot { as_of: Some(2000), ..StoreSnapshot::default() };
        want.users.insert("u1".into(), serde_json::json!({"views_1d": 1}));
        want.trends.insert("product:p1".into(), TrendRow { window_ms: 1, count: 1, baseline_count: 1, score: 1.0 });
        let mut got = want.clone();
        got.users.insert("u1".into(), serde_json::json!({"views_1d": 1.0}));
        got.trends.get_mut("product:p1").expect("the trend").count = 2;
        let m = compare_snapshots(&want, &got);
        assert!(m[0].starts_with("users: 0 missing, 0 unexpected, 1 with different features"), "{m:#?}");
        assert!(m[1].starts_with("trends: 0 only in expected, 0 only in store, 1 differ"), "{m:#?}");
        assert_eq!(m[2], "user \"u1\": views_1d: expected 1, got 1.0 (integer vs float)");
        assert_eq!(m[3], "trend product:p1: count expected 1, got 2");
    }
}
