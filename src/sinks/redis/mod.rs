//! The production online store: Redis, with SPEC section 7's key layout
//! under a configurable prefix (default `cf:`):
//!
//! * `cf:user:<user_id>`: hash, one field per scalar feature, arrays and
//!   objects as JSON strings, null features absent, plus `as_of`;
//! * `cf:trend:<entity_type>:<entity_id>`: hash of the trend record, plus `as_of`;
//! * `cf:trending:<list>`: sorted set, member = entity id, score = trend score;
//! * `cf:meta`: hash with `as_of`.
//!
//! Every worker writes its own records ([`RedisRows`]: the users, trend
//! entities and trending lists it owns), one `MULTI`/`EXEC` per tick; worker
//! 0 then sets `cf:meta as_of` ([`RedisMarker`]) once every worker has
//! written the tick ([`crate::sinks::distributed`]). A user hash a worker
//! wrote before gets only its changed fields (`HSET`, and `HDEL` of features
//! that became null), diffed against the worker's mirror of what it wrote; a
//! user hash it has not written yet is deleted and written whole, as is any
//! trend hash (five fields) and trending list.
//!
//! **Redis restarting.** Each tick's `MULTI` also reads the server's
//! `run_id`, which changes when Redis restarts. A worker that finds a new
//! `run_id` (the server may have lost its data) first rewrites everything in
//! its mirror, then reports the tick as written on that server; worker 0
//! sets `as_of` only on the server every worker reported, so a reader never
//! sees an `as_of` whose records are missing. Unreachable: writers block,
//! log, and retry with backoff (100 ms doubling to 5 s). Unreachable at
//! start is an error: a wrong URL should not hang.

pub mod config;
pub mod fields;

use super::distributed::{Marker, Rows};
use super::TrendLookup;
use anyhow::{Context, Result};
use clickflow_dataflows::messages::{EntityKind, TrendValues};
use clickflow_dataflows::Change;
pub use config::RedisConfig;
pub use fields::user_fields;
use fields::object_fields;
use redis::{Connection, Pipeline};
use std::collections::HashMap;
use std::time::Duration;

/// `cf:meta as_of`, if set.
pub fn read_as_of(conn: &mut Connection, prefix: &str) -> redis::RedisResult<Option<u64>> {
    let v: Option<String> = redis::cmd("HGET").arg(format!("{prefix}meta")).arg("as_of").query(conn)?;
    Ok(v.and_then(|v| v.parse().ok()))
}

/// The `run_id` line of `INFO server`: it changes whenever the server restarts.
fn run_id(info: &str) -> String {
    info.lines().find_map(|l| l.strip_prefix("run_id:")).unwrap_or("").trim().to_owned()
}

/// A connection that comes back: every operation is retried, with backoff
/// and a log line, while the server is unreachable.
struct Link {
    client: redis::Client,
    conn: Option<Connection>,
    url: String,
}

impl Link {
    fn open(config: &RedisConfig) -> Result<(Link, Option<u64>)> {
        let hint = || format!("cannot reach Redis at {} (is it running? `scripts/services.sh start` starts one for tests)", config.url);
        let client = redis::Client::open(config.url.as_str()).with_context(|| format!("config `redis.url`: {:?} is not a Redis URL", config.url))?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(5)).with_context(hint)?;
        let as_of = read_as_of(&mut conn, &config.prefix).with_context(hint)?;
        Ok((Link { client, conn: Some(conn), url: config.url.clone() }, as_of))
    }

    /// Runs `op` until it succeeds; an error the server answers (not a lost
    /// connection, nor one that says to wait, like `LOADING` while a
    /// restarted server reads its dump) fails at once.
    fn retry<T>(&mut self, mut op: impl FnMut(&mut Connection) -> redis::RedisResult<T>) -> Result<T> {
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.conn.is_none() {
                match self.client.get_connection_with_timeout(Duration::from_secs(5)) {
                    Ok(c) => {
                        eprintln!("clickflow: reconnected to Redis at {}", self.url);
                        self.conn = Some(c);
                    }
                    Err(e) => {
                        eprintln!("clickflow: Redis at {} unreachable ({e}); retrying in {} ms", self.url, backoff.as_millis());
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            let Some(conn) = self.conn.as_mut() else { continue };
            match op(conn) {
                Ok(v) => return Ok(v),
                Err(e) if matches!(e.retry_method(), redis::RetryMethod::WaitAndRetry) => {
                    eprintln!("clickflow: Redis at {} is busy ({e}); retrying in {} ms", self.url, backoff.as_millis());
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() => {
                    eprintln!("clickflow: Redis at {} unreachable ({e}); retrying in {} ms", self.url, backoff.as_millis());
                    self.conn = None;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e).with_context(|| format!("Redis at {} rejected a command", self.url)),
            }
        }
    }
}

/// One worker's records in Redis.
pub struct RedisRows {
    link: Link,
    prefix: String,
    as_of: Option<u64>,
    /// The `run_id` of the server that holds what this worker wrote.
    server: Option<String>,
    /// Everything this worker wrote, to restore a server that lost its data.
    users: HashMap<String, String>,
    trends: HashMap<(String, String), TrendValues>,
    lists: HashMap<String, Vec<(String, f64)>>,
}

impl RedisRows {
    /// Connects; an unreachable server is an error naming the URL.
    pub fn open(config: &RedisConfig) -> Result<RedisRows> {
        let (link, as_of) = Link::open(config)?;
        Ok(RedisRows {
            link,
            prefix: config.prefix.clone(),
            as_of,
            server: None,
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
    /// worker): records of one run list the same features in the same order.
    fn update_user(&self, pipe: &mut Pipeline, id: &str, before: &str, features: &str, at: u64) -> Result<()> {
        let (Some(old), Some(new)) = (object_fields(before), object_fields(features)) else {
            return self.put_user(pipe, id, features, at);
        };
        if old.len() != new.len() || old.iter().zip(&new).any(|(a, b)| a.0 != b.0) {
            return self.put_user(pipe, id, features, at);
        }
        let key = self.user_key(id);
        let mut set: Vec<(&str, String)> = vec![("as_of", at.to_string())];
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
        let fields = [
            ("window_ms", v.window_ms.to_string()),
            ("count", v.count.to_string()),
            ("baseline_count", v.baseline_count.to_string()),
            ("score", serde_json::Value::from(v.score).to_string()),
            ("as_of", at.to_string()),
        ];
        pipe.hset_multiple(self.trend_key(kind, id), &fields).ignore();
    }

    fn put_list(&self, pipe: &mut Pipeline, list: &str, entries: &[(String, f64)]) {
        let key = self.list_key(list);
        pipe.del(&key).ignore();
        for (id, score) in entries {
            pipe.zadd(&key, id, *score).ignore();
        }
    }

    /// One `MULTI` reading the server's identity, then this tick's writes; updates the mirror.
    fn tick_pipeline(&mut self, at: u64, changes: &[Change]) -> Result<Pipeline> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("INFO").arg("server");
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
        Ok(pipe)
    }

    /// One `MULTI` rewriting the whole mirror (rows as of `at`), reading the server's identity.
    fn restore_pipeline(&self, at: u64) -> Result<Pipeline> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("INFO").arg("server");
        for (id, f) in &self.users {
            self.put_user(&mut pipe, id, f, at)?;
        }
        for ((kind, id), v) in &self.trends {
            self.put_trend(&mut pipe, kind, id, v, at);
        }
        for (list, entries) in &self.lists {
            self.put_list(&mut pipe, list, entries);
        }
        Ok(pipe)
    }
}

impl TrendLookup for RedisRows {
    fn trends_of(&mut self, keys: &[(EntityKind, &str)]) -> Result<Vec<Option<TrendValues>>> {
        let mut pipe = redis::pipe();
        for (kind, id) in keys {
            pipe.hgetall(self.trend_key(kind.as_str(), id));
        }
        let hashes: Vec<HashMap<String, String>> = self.link.retry(|conn| pipe.query(conn))?;
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
}

impl Rows for RedisRows {
    fn as_of(&self) -> Option<u64> {
        self.as_of
    }

    fn write_rows(&mut self, at: u64, changes: &[Change]) -> Result<String> {
        let pipe = self.tick_pipeline(at, changes)?;
        let (info,): (String,) = self.link.retry(|conn| pipe.query(conn))?;
        let mut server = run_id(&info);
        while self.server.as_ref().is_some_and(|s| *s != server) {
            // A new server instance: it may have lost what this worker wrote.
            eprintln!(
                "clickflow: Redis at {} restarted (run_id {server}); rewriting {} users, {} trends, {} lists",
                self.link.url,
                self.users.len(),
                self.trends.len(),
                self.lists.len()
            );
            let restore = self.restore_pipeline(at)?;
            let (info,): (String,) = self.link.retry(|conn| restore.query(conn))?;
            self.server = Some(server.clone());
            server = run_id(&info);
        }
        self.server = Some(server.clone());
        Ok(server)
    }
}

/// `cf:meta as_of`, set by worker 0.
pub struct RedisMarker {
    link: Link,
    prefix: String,
    as_of: Option<u64>,
}

impl RedisMarker {
    /// Connects; an unreachable server is an error naming the URL.
    pub fn open(config: &RedisConfig) -> Result<RedisMarker> {
        let (link, as_of) = Link::open(config)?;
        Ok(RedisMarker { link, prefix: config.prefix.clone(), as_of })
    }
}

impl Marker for RedisMarker {
    fn as_of(&self) -> Option<u64> {
        self.as_of
    }

    fn set_as_of(&mut self, at: u64, server: &str) -> Result<bool> {
        let key = format!("{}meta", self.prefix);
        // The check and the write run on one connection: a restart in between
        // drops it, and the retry finds the new server.
        let set = self.link.retry(|conn| {
            let info: String = redis::cmd("INFO").arg("server").query(conn)?;
            if run_id(&info) != server {
                return Ok(false);
            }
            redis::cmd("HSET").arg(&key).arg("as_of").arg(at.to_string()).query::<()>(conn)?;
            Ok(true)
        })?;
        if set {
            self.as_of = Some(at);
        }
        Ok(set)
    }

    fn trend_records(&mut self) -> Result<u64> {
        let pattern = format!("{}trend:*", self.prefix);
        let keys: Vec<String> = self.link.retry(|conn| redis::cmd("KEYS").arg(&pattern).query(conn))?;
        Ok(keys.len() as u64)
    }
}
