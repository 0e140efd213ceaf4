//! `[redis]`: where the production online store lives.

use serde::Deserialize;

/// `[redis]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// The server, e.g. `redis://127.0.0.1:6379/`.
    pub url: String,
    /// Prefix of every key clickflow writes.
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig { url: "redis://127.0.0.1:6379/".into(), prefix: "cf:".into() }
    }
}

impl RedisConfig {
    /// Checks values serde cannot; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        if !(self.url.starts_with("redis://") || self.url.starts_with("rediss://") || self.url.starts_with("unix://")) {
            return Err(format!("`redis.url` {:?} must start with redis://, rediss:// or unix://", self.url));
        }
        Ok(())
    }
}
