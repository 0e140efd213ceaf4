//! A Redis connection that comes back: every operation is retried, with
//! backoff (100 ms doubling to 5 s) and a log line, while the server is
//! unreachable or says to wait (`LOADING` while a restarted server reads its
//! dump). Unreachable at start is an error: a wrong URL should not hang.

use super::config::RedisConfig;
use super::keys::Keys;
use anyhow::{anyhow, Context, Result};
use redis::Connection;
use std::time::Duration;

/// `cf:meta as_of`, if set; a value that is not a tick is an error.
pub fn read_as_of(conn: &mut Connection, keys: &Keys) -> Result<Option<u64>> {
    let v: Option<String> = redis::cmd("HGET").arg(keys.meta()).arg("as_of").query(conn).context("cannot read the store's as_of from Redis")?;
    v.map(|v| v.parse().map_err(|_| anyhow!("the Redis store is damaged: {} as_of is {v:?}, not a tick", keys.meta()))).transpose()
}

/// The `run_id` line of `INFO server`: it changes whenever the server restarts.
pub fn run_id(info: &str) -> String {
    info.lines().find_map(|l| l.strip_prefix("run_id:")).unwrap_or("").trim().to_owned()
}

/// A connection to one Redis server, re-established on demand.
pub struct Link {
    client: redis::Client,
    conn: Option<Connection>,
    /// The server's URL, for messages.
    pub url: String,
}

impl Link {
    /// Connects; an unreachable server is an error naming the URL.
    pub fn open(config: &RedisConfig) -> Result<Link> {
        let hint = || format!("cannot reach Redis at {} (is it running? `scripts/services.sh start` starts one for tests)", config.url);
        let client = redis::Client::open(config.url.as_str()).with_context(|| format!("config `redis.url`: {:?} is not a Redis URL", config.url))?;
        let conn = client.get_connection_with_timeout(Duration::from_secs(5)).with_context(hint)?;
        Ok(Link { client, conn: Some(conn), url: config.url.clone() })
    }

    /// The connection, for a single call that should fail rather than wait.
    pub fn conn(&mut self) -> Result<&mut Connection> {
        self.conn.as_mut().ok_or_else(|| anyhow!("Redis at {} is not connected", self.url))
    }

    /// Runs `op` until it succeeds; an error the server answers (not a lost
    /// connection, nor one that says to wait) fails at once.
    pub fn retry<T>(&mut self, mut op: impl FnMut(&mut Connection) -> redis::RedisResult<T>) -> Result<T> {
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
