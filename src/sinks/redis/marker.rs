//! The distributed Redis store's `as_of` marker (`cf:meta as_of`), set by
//! worker 0 once every worker wrote the tick on the same server instance.

use super::config::RedisConfig;
use super::keys::Keys;
use super::link::{read_as_of, run_id, Link};
use crate::sinks::Marker;
use anyhow::Result;

/// `cf:meta as_of`, set by worker 0.
pub struct RedisMarker {
    link: Link,
    keys: Keys,
    as_of: Option<u64>,
}

impl RedisMarker {
    /// Connects; an unreachable server is an error naming the URL.
    pub fn open(config: &RedisConfig) -> Result<RedisMarker> {
        let mut link = Link::open(config)?;
        let keys = Keys::new(&config.prefix);
        let as_of = read_as_of(link.conn()?, &keys)?;
        Ok(RedisMarker { link, keys, as_of })
    }

    /// Checks the store's settings fingerprint (`<prefix>meta settings`)
    /// against this run's, and records this run's in a store without one
    /// ([`crate::sinks::settings`]).
    pub fn check_settings(&mut self, now: &clickflow_dataflows::params::Settings) -> anyhow::Result<()> {
        use anyhow::Context;
        let key = self.keys.meta();
        let url = self.link.url.clone();
        let conn = self.link.conn()?;
        let stored: Option<String> = redis::cmd("HGET").arg(&key).arg("settings").query(conn).with_context(|| format!("cannot read {key} settings from {url}"))?;
        if let Some(json) = crate::sinks::settings::check(stored.as_deref(), now, &format!("{url} (prefix {:?})", key.trim_end_matches("meta")))? {
            redis::cmd("HSET").arg(&key).arg("settings").arg(json).query::<()>(conn).with_context(|| format!("cannot record the settings in {key} on {url}"))?;
        }
        Ok(())
    }
}

impl Marker for RedisMarker {
    fn as_of(&self) -> Option<u64> {
        self.as_of
    }

    fn set_as_of(&mut self, at: u64, server: &str) -> Result<bool> {
        let key = self.keys.meta();
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
        let pattern = self.keys.trend_pattern();
        let keys: Vec<String> = self.link.retry(|conn| redis::cmd("KEYS").arg(&pattern).query(conn))?;
        Ok(keys.len() as u64)
    }
}
