//! The production online store: Redis, with SPEC section 7's key layout
//! under a configurable prefix (default `cf:`):
//!
//! * `cf:user:<user_id>`: hash, one field per scalar feature, arrays and
//!   objects as JSON strings, null features absent, plus `as_of`;
//! * `cf:trend:<entity_type>:<entity_id>`: hash of the trend record, plus `as_of`;
//! * `cf:trending:<list>`: sorted set, member = entity id, score = trend score;
//! * `cf:meta`: hash with `as_of`.
//!
//! Each closed tick is one `MULTI`/`EXEC` pipeline: the changed keys, then
//! `cf:meta as_of`, so a reader sees a tick entirely or not at all. A user
//! hash this process wrote before gets only its changed fields (`HSET`, and
//! `HDEL` of features that became null), diffed against the mirror below; a
//! user hash it has not written yet is deleted and written whole, as is any
//! trend hash (five fields) and trending list. Ticks at or below the stored `as_of` are
//! skipped. If Redis goes away mid-run the writer blocks, logs, and retries
//! with backoff (100 ms doubling to 5 s); after reconnecting, if the store's
//! `as_of` is gone or behind (a Redis without persistence restarted), it
//! first rewrites every row from its mirror of what it wrote, so nothing is
//! lost. A tick whose `EXEC` committed but whose reply was lost is simply
//! sent again (it rewrites the same keys). The mirror already holds the tick
//! being retried, so a restore may briefly show rows newer than `as_of`:
//! allowed, a reader of `as_of = A` sees records as of `A` or later. Redis
//! unreachable at start is an error: a wrong URL should not hang.

pub mod config;

use super::Store;
use anyhow::{Context, Result};
use clickflow_dataflows::messages::{EntityKind, TrendValues};
use clickflow_dataflows::Change;
pub use config::RedisConfig;
use redis::{Connection, Pipeline};
use std::collections::HashMap;
use std::time::Duration;

/// An open Redis store.
pub struct RedisStore {
    client: redis::Client,
    conn: Option<Connection>,
    url: String,
    prefix: String,
    as_of: Option<u64>,
    /// Everything written, to restore a store that lost its data.
    users: HashMap<String, String>,
    trends: HashMap<(String, String), TrendValues>,
    lists: HashMap<String, Vec<(String, f64)>>,
}

fn connect(client: &redis::Client) -> redis::RedisResult<Connection> {
    client.get_connection_with_timeout(Duration::from_secs(5))
}

/// `cf:meta as_of`, if set.
pub fn read_as_of(conn: &mut Connection, prefix: &str) -> redis::RedisResult<Option<u64>> {
    let v: Option<String> = redis::cmd("HGET").arg(format!("{prefix}meta")).arg("as_of").query(conn)?;
    Ok(v.and_then(|v| v.parse().ok()))
}

/// Skips the JSON string starting at `b[i] == b'"'`; the index after it.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Skips the JSON value starting at `b[i]`; the index after it.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'[' | b'{' => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let start = i;
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

/// The top-level `(key, raw JSON value)` pairs of a JSON object, without
/// building a tree (feature records are flat objects the user stage wrote).
fn object_fields(s: &str) -> Option<Vec<(&str, &str)>> {
    let b = s.as_bytes();
    let ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut i = ws(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(i + 1);
    let mut out = Vec::with_capacity(64);
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let end = skip_string(b, i)?;
        let key = &s[i + 1..end - 1];
        if key.contains('\\') {
            return None;
        }
        i = ws(end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(i + 1);
        let value_end = skip_value(b, i)?;
        out.push((key, &s[i..value_end]));
        i = ws(value_end);
        match b.get(i) {
            Some(b',') => i = ws(i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

/// The hash fields of a user's feature record: every non-null feature, as
/// its JSON text (numbers, and arrays and objects as JSON strings), plus
/// `as_of`.
pub fn user_fields(features: &str, at: u64) -> Result<Vec<(String, String)>> {
    let pairs = object_fields(features).context("a feature record is not a JSON object")?;
    let mut fields = Vec::with_capacity(pairs.len() + 1);
    fields.push(("as_of".to_string(), at.to_string()));
    for (k, v) in pairs {
        match v {
            "null" => {}
            v if v.starts_with('"') => fields.push((k.to_owned(), serde_json::from_str::<String>(v).context("a feature record has a bad string")?)),
            v => fields.push((k.to_owned(), v.to_owned())),
        }
    }
    Ok(fields)
}

impl RedisStore {
    /// Connects; an unreachable server is an error naming the URL.
    pub fn open(config: &RedisConfig) -> Result<RedisStore> {
        let hint = || format!("cannot reach Redis at {} (is it running? `scripts/services.sh start` starts one for tests)", config.url);
        let client = redis::Client::open(config.url.as_str()).with_context(|| format!("config `redis.url`: {:?} is not a Redis URL", config.url))?;
        let mut conn = connect(&client).with_context(hint)?;
        let as_of = read_as_of(&mut conn, &config.prefix).with_context(hint)?;
        Ok(RedisStore {
            client,
            conn: Some(conn),
            url: config.url.clone(),
            prefix: config.prefix.clone(),
            as_of,
            users: HashMap::new(),
            trends: HashMap::new(),
            lists: HashMap::new(),
        })
    }

    fn user_key(&self, id: &str) -> String {
        format!("{}user:{id}", self.prefix)
    }

    fn trend_key(&self, kind: &str, id: &str) -> String {
        format!("{}trend:{kind}:{id}", self.prefix)
    }

    fn list_key(&self, list: &str) -> String {
        format!("{}trending:{list}", self.prefix)
    }

    fn put_user(&self, pipe: &mut Pipeline, id: &str, features: &str, at: u64) -> Result<()> {
        let key = self.user_key(id);
        pipe.del(&key).ignore();
        pipe.hset_multiple(&key, &user_fields(features, at)?).ignore();
        Ok(())
    }

    /// Writes only what changed from the record `before` (as written by this
    /// process): records of one run list the same features in the same order.
    fn update_user(&self, pipe: &mut Pipeline, id: &str, before: &str, features: &str, at: u64) -> Result<()> {
        let (Some(old), Some(new)) = (object_fields(before), object_fields(features)) else {
            return self.put_user(pipe, id, features, at);
        };
        if old.len() != new.len() || old.iter().zip(&new).any(|(a, b)| a.0 != b.0) {
            return self.put_user(pipe, id, features, at);
        }
        let key = self.user_key(id);
        let at = at.to_string();
        let mut set: Vec<(&str, String)> = vec![("as_of", at)];
        let mut gone: Vec<&str> = Vec::new();
        for ((k, was), (_, now)) in old.iter().zip(&new) {
            if was == now {
                continue;
            }
            match *now {
                "null" => gone.push(k),
                v if v.starts_with('"') => set.push((k, serde_json::from_str::<String>(v).context("a feature record has a bad string")?)),
                v => set.push((k, v.to_owned())),
            }
        }
        pipe.hset_multiple(&key, &set).ignore();
        if !gone.is_empty() {
            pipe.hdel(&key, gone).ignore();
        }
        Ok(())
    }

    fn put_trend(&self, pipe: &mut Pipeline, kind: &str, id: &str, v: &TrendValues, at: u64) {
        // Every field is always present: HSET overwrites them all.
        let key = self.trend_key(kind, id);
        let fields = [
            ("window_ms", v.window_ms.to_string()),
            ("count", v.count.to_string()),
            ("baseline_count", v.baseline_count.to_string()),
            ("score", serde_json::Value::from(v.score).to_string()),
            ("as_of", at.to_string()),
        ];
        pipe.hset_multiple(&key, &fields).ignore();
    }

    fn put_list(&self, pipe: &mut Pipeline, list: &str, entries: &[(String, f64)]) {
        let key = self.list_key(list);
        pipe.del(&key).ignore();
        for (id, score) in entries {
            pipe.zadd(&key, id, *score).ignore();
        }
    }

    /// The pipeline of one tick, updating the mirror.
    fn tick_pipeline(&mut self, at: u64, changes: &[Change]) -> Result<Pipeline> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for change in changes {
            match change {
                Change::User(u) => match &u.features {
                    Some(f) => {
                        match self.users.get(&u.user_id) {
                            Some(before) => self.update_user(&mut pipe, &u.user_id, before, f, at)?,
                            None => self.put_user(&mut pipe, &u.user_id, f, at)?,
                        }
                        self.users.insert(u.user_id.clone(), f.clone());
                    }
                    None => {
                        pipe.del(self.user_key(&u.user_id)).ignore();
                        self.users.remove(&u.user_id);
                    }
                },
                Change::Trend(t) => {
                    let key = (t.kind.as_str().to_string(), t.id.clone());
                    match &t.new {
                        Some(v) => {
                            self.put_trend(&mut pipe, t.kind.as_str(), &t.id, v, at);
                            self.trends.insert(key, *v);
                        }
                        None => {
                            pipe.del(self.trend_key(t.kind.as_str(), &t.id)).ignore();
                            self.trends.remove(&key);
                        }
                    }
                }
                Change::Trending(l) => {
                    let entries: Vec<(String, f64)> = l.entries.iter().map(|e| (e.id.clone(), e.score)).collect();
                    self.put_list(&mut pipe, &l.list, &entries);
                    if entries.is_empty() {
                        self.lists.remove(&l.list);
                    } else {
                        self.lists.insert(l.list.clone(), entries);
                    }
                }
                Change::Tick(_) => {}
            }
        }
        pipe.hset(format!("{}meta", self.prefix), "as_of", at.to_string()).ignore();
        Ok(pipe)
    }

    /// The pipeline that rewrites the whole mirror, as of `at`.
    fn restore_pipeline(&self, at: u64) -> Result<Pipeline> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (id, f) in &self.users {
            self.put_user(&mut pipe, id, f, at)?;
        }
        for ((kind, id), v) in &self.trends {
            self.put_trend(&mut pipe, kind, id, v, at);
        }
        for (list, entries) in &self.lists {
            self.put_list(&mut pipe, list, entries);
        }
        pipe.hset(format!("{}meta", self.prefix), "as_of", at.to_string()).ignore();
        Ok(pipe)
    }

    /// Runs `pipe`, reconnecting with backoff until it succeeds.
    fn run_with_retry(&mut self, pipe: &Pipeline, written_as_of: Option<u64>) -> Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt: redis::RedisResult<()> = match self.conn.as_mut() {
                Some(conn) => pipe.query(conn),
                None => Err(redis::RedisError::from(std::io::Error::other("not connected"))),
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() || self.conn.is_none() => {
                    eprintln!("clickflow: Redis at {} unreachable ({e}); retrying in {} ms", self.url, backoff.as_millis());
                    self.conn = None;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    if let Ok(mut conn) = connect(&self.client) {
                        eprintln!("clickflow: reconnected to Redis at {}", self.url);
                        // A server without persistence may have restarted empty: restore first.
                        let stored = read_as_of(&mut conn, &self.prefix).ok().flatten();
                        self.conn = Some(conn);
                        if let Some(written) = written_as_of {
                            if stored.is_none_or(|s| s < written) {
                                eprintln!("clickflow: Redis lost its data (as_of {stored:?}, wrote {written}); restoring {} users, {} trends, {} lists", self.users.len(), self.trends.len(), self.lists.len());
                                let restore = self.restore_pipeline(written)?;
                                if let Some(conn) = self.conn.as_mut() {
                                    if restore.query::<()>(conn).is_err() {
                                        self.conn = None;
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("Redis at {} rejected a write", self.url)),
            }
        }
    }
}

impl Store for RedisStore {
    fn as_of(&self) -> Option<u64> {
        self.as_of
    }

    fn trend_records(&mut self) -> Result<u64> {
        let conn = self.conn.as_mut().context("not connected to Redis")?;
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}trend:*", self.prefix)).query(conn).context("cannot count trends in Redis")?;
        Ok(keys.len() as u64)
    }

    fn trends_of(&mut self, keys: &[(EntityKind, &str)]) -> Result<Vec<Option<TrendValues>>> {
        let mut pipe = redis::pipe();
        for (kind, id) in keys {
            pipe.hgetall(self.trend_key(kind.as_str(), id));
        }
        let conn = self.conn.as_mut().context("not connected to Redis")?;
        let hashes: Vec<HashMap<String, String>> = pipe.query(conn).with_context(|| format!("cannot read trends from Redis at {}", self.url))?;
        Ok(hashes
            .into_iter()
            .map(|h| {
                Some(TrendValues {
                    window_ms: h.get("window_ms")?.parse().ok()?,
                    count: h.get("count")?.parse().ok()?,
                    baseline_count: h.get("baseline_count")?.parse().ok()?,
                    score: h.get("score")?.parse().ok()?,
                })
            })
            .collect())
    }

    fn write_tick(&mut self, at: u64, changes: &[Change]) -> Result<()> {
        let written = self.as_of;
        let pipe = self.tick_pipeline(at, changes)?;
        self.run_with_retry(&pipe, written)?;
        self.as_of = Some(at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_fields_flatten_the_record() {
        let f = user_fields(r#"{"views_1d":3, "spend_1d": 10.5,"hour_hist_1d":[1,2],"browse_devices_1d":{"m":1,"a\"}]{":2},"last_purchase_ts":null}"#, 7).unwrap();
        let map: HashMap<String, String> = f.into_iter().collect();
        assert_eq!(map["views_1d"], "3");
        assert_eq!(map["spend_1d"], "10.5");
        assert_eq!(map["hour_hist_1d"], "[1,2]");
        assert_eq!(map["browse_devices_1d"], r#"{"m":1,"a\"}]{":2}"#, "brackets and quotes inside device names");
        assert_eq!(map["as_of"], "7");
        assert!(!map.contains_key("last_purchase_ts"), "null features are absent");
        assert_eq!(map.len(), 5);
        assert!(user_fields("[1]", 7).is_err());
        assert!(user_fields(r#"{"a":1"#, 7).is_err(), "truncated");
    }
}
