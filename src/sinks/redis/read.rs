//! Reading the Redis store back (`clickflow get`) in the same types as the
//! SQLite store: hash fields typed again (numbers as numbers, arrays and
//! objects as JSON, absent null features as null), trending lists in SPEC
//! section 6 order with their counts. A stored value that does not parse is
//! an error naming the key, never taken as absent.

use super::config::RedisConfig;
use super::keys::Keys;
use super::link::{read_as_of, Link};
use crate::sinks::{ReadStore, StoredTrend, StoredUser};
use anyhow::{anyhow, Context, Result};
use clickflow_dataflows::messages::{EntityKind, Ranked, TrendValues};
use clickflow_dataflows::trends::score_parts;
use clickflow_dataflows::user_features::NULLABLE_FEATURES;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::HashMap;

/// A stored trend hash (empty: no record); a missing or bad field is an error naming `key`.
pub fn parse_trend(h: &HashMap<String, String>, key: &str) -> Result<Option<StoredTrend>> {
    if h.is_empty() {
        return Ok(None);
    }
    let field = |name: &str| h.get(name).ok_or_else(|| anyhow!("the Redis store is damaged: {key} has no `{name}`"));
    let int = |name: &str| -> Result<u64> { field(name)?.parse().map_err(|_| anyhow!("the Redis store is damaged: {key} `{name}` is {:?}, not an integer", h[name])) };
    let score: f64 = field("score")?.parse().map_err(|_| anyhow!("the Redis store is damaged: {key} `score` is {:?}, not a number", h["score"]))?;
    let values = TrendValues { window_ms: int("window_ms")?, count: int("count")?, baseline_count: int("baseline_count")?, score };
    Ok(Some(StoredTrend { as_of: int("as_of")?, values }))
}

/// A user hash as the SPEC section 5 record: every field parsed back from
/// its JSON text, and the null features Redis leaves out put back as null.
fn parse_user(h: HashMap<String, String>, key: &str) -> Result<Option<StoredUser>> {
    if h.is_empty() {
        return Ok(None);
    }
    let mut as_of = None;
    let mut features = Map::new();
    for (k, v) in h {
        if k == "as_of" {
            as_of = Some(v.parse().map_err(|_| anyhow!("the Redis store is damaged: {key} `as_of` is {v:?}, not a tick"))?);
            continue;
        }
        let value: Value = serde_json::from_str(&v).map_err(|_| anyhow!("the Redis store is damaged: {key} `{k}` is {v:?}, not JSON"))?;
        features.insert(k, value);
    }
    for name in NULLABLE_FEATURES {
        features.entry(name).or_insert(Value::Null);
    }
    let as_of = as_of.ok_or_else(|| anyhow!("the Redis store is damaged: {key} has no `as_of`"))?;
    Ok(Some(StoredUser { as_of, features }))
}

/// Reads the Redis store.
pub struct RedisReader {
    link: Link,
    keys: Keys,
    /// `trends.baseline` in ms: the scores' exact fractions need it.
    baseline_ms: u64,
}

impl RedisReader {
    /// Connects; an unreachable server is an error naming the URL.
    /// `baseline_ms` is `trends.baseline`, for ranking by exact scores.
    pub fn open(config: &RedisConfig, baseline_ms: u64) -> Result<RedisReader> {
        Ok(RedisReader { link: Link::open(config)?, keys: Keys::new(&config.prefix), baseline_ms })
    }

    fn hgetall(&mut self, key: &str) -> Result<HashMap<String, String>> {
        let url = self.link.url.clone();
        redis::cmd("HGETALL").arg(key).query(self.link.conn()?).with_context(|| format!("cannot read {key} from Redis at {url}"))
    }
}

/// SPEC section 6 order: the larger exact score `N / D` (the stored double
/// when a trend record is missing), then the larger count, then the smaller
/// id in byte order.
fn rank(a: &(Ranked, Option<(u128, u128)>), b: &(Ranked, Option<(u128, u128)>)) -> Ordering {
    let by_score = match (a.1, b.1) {
        (Some((na, da)), Some((nb, db))) => (nb * da).cmp(&(na * db)),
        _ => b.0.score.total_cmp(&a.0.score),
    };
    by_score.then(b.0.count.cmp(&a.0.count)).then_with(|| a.0.id.as_bytes().cmp(b.0.id.as_bytes()))
}

impl ReadStore for RedisReader {
    fn as_of(&mut self) -> Result<Option<u64>> {
        read_as_of(self.link.conn()?, &self.keys)
    }

    fn user(&mut self, id: &str) -> Result<Option<StoredUser>> {
        let key = self.keys.user(id);
        let h = self.hgetall(&key)?;
        parse_user(h, &key)
    }

    fn trend(&mut self, kind: EntityKind, id: &str) -> Result<Option<StoredTrend>> {
        let key = self.keys.trend(kind, id);
        let h = self.hgetall(&key)?;
        parse_trend(&h, &key)
    }

    fn trending(&mut self, list: &str) -> Result<Vec<Ranked>> {
        let key = self.keys.trending(list);
        let url = self.link.url.clone();
        let members: Vec<(String, f64)> = redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).arg("WITHSCORES").query(self.link.conn()?).with_context(|| format!("cannot read {key} from Redis at {url}"))?;
        let kind = if list == "categories" { EntityKind::Category } else { EntityKind::Product };
        let mut entries = Vec::with_capacity(members.len());
        for (id, score) in members {
            let trend = self.trend(kind, &id)?;
            let exact = trend.map(|t| score_parts(t.values.count, t.values.baseline_count, t.values.window_ms, self.baseline_ms));
            let count = trend.map_or(0, |t| t.values.count);
            entries.push((Ranked { id, score, count }, exact));
        }
        entries.sort_by(rank);
        Ok(entries.into_iter().map(|(r, _)| r).collect())
    }

    fn lists(&mut self) -> Result<Vec<String>> {
        let prefix = self.keys.trending("");
        let url = self.link.url.clone();
        let mut names: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(format!("{prefix}*")).arg("COUNT").arg(1000).query(self.link.conn()?).with_context(|| format!("cannot list the trending lists on Redis at {url}"))?;
            names.extend(keys.into_iter().filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned)));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}
