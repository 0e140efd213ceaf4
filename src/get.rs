//! `clickflow get`: read a user's features, a trend record or a trending
//! list back from the store the config names (the SQLite file, or Redis with
//! `[store] kind = "redis"`) and print it as JSON. Every store answers in
//! the same shapes ([`ReadStore`]).

use crate::config::{Config, StoreKind};
use crate::sinks::redis::read::RedisReader;
use crate::sinks::sqlite::SqliteReader;
use crate::sinks::ReadStore;
use anyhow::Result;
use clickflow_dataflows::messages::EntityKind;
use serde_json::{json, Value};
use std::path::Path;

/// What to read.
pub enum What<'a> {
    /// A user's feature record.
    User(&'a str),
    /// A trending list.
    Trending(&'a str),
    /// A trend record.
    Trend(EntityKind, &'a str),
}

/// Opens the configured store for reading: Redis, or `DIR/features.db`.
pub fn open_store(cfg: &Config, sqlite: &Path) -> Result<Box<dyn ReadStore>> {
    Ok(match cfg.store.kind {
        StoreKind::Redis => Box::new(RedisReader::open(&cfg.redis, cfg.trends.baseline.ms)?),
        StoreKind::Sqlite => Box::new(SqliteReader::open(sqlite)?),
    })
}

/// Reads `what` as the JSON that `clickflow get` prints (`null` features or
/// trend, or no entries, when there is no such record).
pub fn get(store: &mut dyn ReadStore, what: What<'_>) -> Result<Value> {
    let store_as_of = store.as_of()?;
    match what {
        What::User(id) => {
            let u = store.user(id)?;
            let (row_as_of, features) = u.map_or((Value::Null, Value::Null), |u| (json!(u.as_of), Value::Object(u.features)));
            Ok(json!({"user_id": id, "store_as_of": store_as_of, "row_as_of": row_as_of, "features": features}))
        }
        What::Trend(kind, id) => {
            let trend = store.trend(kind, id)?.map_or(Value::Null, |t| {
                let v = t.values;
                json!({"window_ms": v.window_ms, "count": v.count, "baseline_count": v.baseline_count, "score": v.score, "row_as_of": t.as_of})
            });
            Ok(json!({"entity_type": kind.as_str(), "entity_id": id, "store_as_of": store_as_of, "trend": trend}))
        }
        What::Trending(list) => {
            let entries: Vec<Value> = store.trending(list)?.iter().enumerate().map(|(i, e)| json!({"rank": i + 1, "entity_id": e.id, "score": e.score, "count": e.count})).collect();
            let lists = store.lists()?;
            Ok(json!({"list": list, "store_as_of": store_as_of, "entries": entries, "lists": lists}))
        }
    }
}
