//! The production online store: Redis, with SPEC section 7's key layout
//! ([`keys`]) under a configurable prefix (default `cf:`):
//!
//! * `cf:user:<user_id>`: hash, one field per scalar feature, arrays and
//!   objects as JSON strings, null features absent, plus `as_of`;
//! * `cf:trend:<entity_type>:<entity_id>`: hash of the trend record, plus `as_of`;
//! * `cf:trending:<list>`: sorted set, member = entity id, score = trend score;
//! * `cf:meta`: hash with `as_of`.
//!
//! It is a distributed store ([`crate::sinks::distributed`]): every worker
//! writes its own records ([`rows`]), worker 0 then sets `cf:meta as_of`
//! ([`marker`]) once every worker has written the tick. [`read`] reads it
//! back; [`link`] is the connection that retries while Redis is away.

pub mod config;
pub mod fields;
pub mod keys;
pub mod link;
pub mod marker;
pub mod read;
pub mod rows;
pub use config::RedisConfig;
