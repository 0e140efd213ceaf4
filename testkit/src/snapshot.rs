//! The store as a value: [`StoreSnapshot`], the form every store (SQLite,
//! Redis, a test's in-memory replay of the dataflow's changes) and the
//! oracle map what they hold to, and [`snapshot_from_expected`], the store a
//! conformance case's `expected.json` describes.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// One trend record (SPEC section 6; the per-row `as_of` is left out: it is
/// not compared).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendRow {
    /// The adaptive short window `w*`, in ms.
    pub window_ms: u64,
    /// Events of the entity in `w*`.
    pub count: u64,
    /// Events of the entity in the baseline window.
    pub baseline_count: u64,
    /// `(count + 1) / (baseline_count * w* / baseline + 1)`, the double nearest `N / D`.
    pub score: f64,
}

impl fmt::Display for TrendRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{window_ms {}, count {}, baseline_count {}, score {:?}}}", self.window_ms, self.count, self.baseline_count, self.score)
    }
}

/// What a store holds as of one tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreSnapshot {
    /// `meta.as_of` (`None`: no as_of, an empty store).
    pub as_of: Option<u64>,
    /// user_id -> the feature object of SPEC section 5.
    pub users: BTreeMap<String, Value>,
    /// `"<entity_type>:<entity_id>"` -> trend record.
    pub trends: BTreeMap<String, TrendRow>,
    /// list name -> entries in rank order: (entity_id, score, count).
    pub trending: BTreeMap<String, Vec<(String, f64, u64)>>,
    /// Flag times of the users flagged before `as_of`, where they are known
    /// (`expected.json`, the oracle); `None` for a store, which does not
    /// hold them. Compared only when both sides know them.
    pub bots: Option<BTreeMap<String, u64>>,
    /// Things found while reading a store that cannot be represented above
    /// (a features column that is not a JSON object, rank gaps, ...); the
    /// comparison reports them.
    pub problems: Vec<String>,
}

/// The store `expected.json` describes, with its `bots` (absent: none);
/// its `dead_letters` are not part of a store. Panics on a value of the
/// wrong type, naming it.
pub fn snapshot_from_expected(expected: &Value) -> StoreSnapshot {
    let mut snap = StoreSnapshot {
        as_of: match &expected["as_of"] {
            Value::Null => None,
            v => Some(v.as_u64().expect("expected.json: as_of is neither null nor an integer")),
        },
        bots: Some(BTreeMap::new()),
        ..StoreSnapshot::default()
    };
    if let Some(users) = expected["users"].as_object() {
        snap.users = users.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    if let Some(trends) = expected["trends"].as_object() {
        for (k, v) in trends {
            snap.trends.insert(k.clone(), expected_trend(k, v));
        }
    }
    if let Some(lists) = expected["trending"].as_object() {
        for (list, entries) in lists {
            snap.trending.insert(list.clone(), expected_entries(list, entries));
        }
    }
    if let Some(bots) = expected["bots"].as_object() {
        let flags = bots
            .iter()
            .map(|(user, flag)| (user.clone(), flag.as_u64().unwrap_or_else(|| panic!("expected.json: bots.{user} is not an integer flag time"))))
            .collect();
        snap.bots = Some(flags);
    }
    snap
}

fn expected_trend(key: &str, v: &Value) -> TrendRow {
    let int = |f: &str| v[f].as_u64().unwrap_or_else(|| panic!("expected.json: trends.{key}.{f} is not an integer"));
    TrendRow {
        window_ms: int("window_ms"),
        count: int("count"),
        baseline_count: int("baseline_count"),
        score: v["score"].as_f64().unwrap_or_else(|| panic!("expected.json: trends.{key}.score is not a number")),
    }
}

fn expected_entries(list: &str, entries: &Value) -> Vec<(String, f64, u64)> {
    fn bad<T>(list: &str) -> T {
        panic!("expected.json: trending.{list} is not a list of [id, score, count]")
    }
    entries
        .as_array()
        .unwrap_or_else(|| bad(list))
        .iter()
        .map(|e| match e.as_array().map(Vec::as_slice) {
            Some([id, score, count]) => (
                id.as_str().unwrap_or_else(|| bad(list)).to_string(),
                score.as_f64().unwrap_or_else(|| bad(list)),
                count.as_u64().unwrap_or_else(|| bad(list)),
            ),
            _ => bad(list),
        })
        .collect()
}
