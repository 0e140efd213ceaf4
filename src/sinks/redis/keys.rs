//! The Redis key layout (SPEC section 7), under the configured prefix,
//! written once for the writers and the readers.

use clickflow_dataflows::messages::EntityKind;

/// Key names under `redis.prefix` (default `cf:`).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_owned() }
    }

    /// `cf:user:<user_id>`: hash, one field per non-null feature, plus `as_of`.
    pub fn user(&self, id: &str) -> String {
        format!("{}user:{id}", self.prefix)
    }

    /// `cf:trend:<entity_type>:<entity_id>`: hash of the trend record, plus `as_of`.
    pub fn trend(&self, kind: EntityKind, id: &str) -> String {
        format!("{}trend:{}:{id}", self.prefix, kind.as_str())
    }

    /// `cf:trending:<list>`: sorted set, member = entity id, score = trend score.
    pub fn trending(&self, list: &str) -> String {
        format!("{}trending:{list}", self.prefix)
    }

    /// `cf:meta`: hash with `as_of`.
    pub fn meta(&self) -> String {
        format!("{}meta", self.prefix)
    }

    /// The pattern of every trend key (for SCAN).
    pub fn trend_pattern(&self) -> String {
        format!("{}trend:*", self.prefix)
    }
}
