//! One worker's records in Redis ([`RedisRows`]): the users, trend entities
//! and trending lists it owns, one `MULTI`/`EXEC` per tick. A user hash the
//! worker wrote before gets only its changed fields (`HSET`, and `HDEL` of
//! features that became null), diffed against the worker's mirror of what
//! it wrote; a user hash it has not written yet is deleted and written
//! whole, as is any trend hash (five fields) and trending list.
//!
//! **Redis restarting.** Each tick's `MULTI` also reads the server's
//! `run_id`, which changes when Redis restarts. A worker that finds a new
//! `run_id` (the server may have lost its data) first rewrites everything in
//! its mirror, then reports the tick as written on that server; worker 0
//! sets `as_of` only on the server every worker reported
//! ([`super::marker`]), so a reader never sees an `as_of` whose records are
//! missing.

use super::config::RedisConfig;
use super::fields::{object_fields, user_fields};
use super::keys::Keys;
use super::link::{read_as_of, run_id, Link};
use super::read::parse_trend;
use crate::sinks::{Rows, TrendLookup};
use anyhow::{Context, Result};
use clickflow_dataflows::messages::{EntityKind, TrendValues};
use clickflow_dataflows::Change;
use redis::Pipeline;
use std::collections::HashMap;

/// One worker's records in Redis.
pub struct RedisRows {
    link: Link,
    keys: Keys,
    as_of: Option<u64>,
    /// The `run_id` of the server that holds what this worker wrote.
    server: Option<String>,
    /// Everything this worker wrote, to restore a server that lost its data.
    users: HashMap<String, String>,
    trends: HashMap<(EntityKind, String), TrendValues>,
    lists: HashMap<String, Vec<(String, f64)>>,
}

impl RedisRows {
    /// Connects; an unreachable server is an error naming the URL.
    pub fn open(config: &RedisConfig) -> Result<RedisRows> {
        let mut link = Link::open(config)?;
        let keys = Keys::new(&config.prefix);
        let as_of = read_as_of(link.conn()?, &keys)?;
        Ok(RedisRows {
            link,
            keys,
            as_of,
            server: None,
            users: HashMap::new(),
            trends: HashMap::new(),
            lists: HashMap::new(),
        })
    }

    fn put_user(&self, pipe: &mut Pipeline, id: &str, features: &str, at: u64) -> Result<()> {
        let key = self.keys.user(id);
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
        let key = self.keys.user(id);
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

    fn put_trend(&self, pipe: &mut Pipeline, kind: EntityKind, id: &str, v: &TrendValues, at: u64) {
        // Every field is always present: HSET overwrites them all.
        let fields = [
            ("window_ms", v.window_ms.to_string()),
            ("count", v.count.to_string()),
            ("baseline_count", v.baseline_count.to_string()),
            ("score", serde_json::Value::from(v.score).to_string()),
            ("as_of", at.to_string()),
        ];
        pipe.hset_multiple(self.keys.trend(kind, id), &fields).ignore();
    }

    fn put_list(&self, pipe: &mut Pipeline, list: &str, entries: &[(String, f64)]) {
        let key = self.keys.trending(list);
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
                        pipe.del(self.keys.user(&u.user_id)).ignore();
                        self.users.remove(&u.user_id);
                    }
                },
                Change::Trend(t) => {
                    let key = (t.kind, t.id.clone());
                    match &t.new {
                        Some(v) => {
                            self.put_trend(&mut pipe, t.kind, &t.id, v, at);
                            self.trends.insert(key, *v);
                        }
                        None => {
                            pipe.del(self.keys.trend(t.kind, &t.id)).ignore();
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
            self.put_trend(&mut pipe, *kind, id, v, at);
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
            pipe.hgetall(self.keys.trend(*kind, id));
        }
        let hashes: Vec<HashMap<String, String>> = self.link.retry(|conn| pipe.query(conn))?;
        keys.iter().zip(&hashes).map(|((kind, id), h)| Ok(parse_trend(h, &self.keys.trend(*kind, id))?.map(|t| t.values))).collect()
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

