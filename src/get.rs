//! `clickflow get`: read features, trends and trending lists back from the
//! store the config names: the SQLite file, or Redis (`[store] kind = "redis"`).

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::{json, Value};
use std::path::Path;

fn open(store: &Path) -> Result<Connection> {
    if !store.exists() {
        bail!("no store at {} (run `clickflow run` first, or pass --out DIR)", store.display());
    }
    Connection::open_with_flags(store, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open the store {}", store.display()))
}

fn store_as_of(conn: &Connection) -> Result<Value> {
    Ok(crate::sinks::sqlite::read_as_of(conn)?.map_or(Value::Null, |a| json!(a)))
}

/// One user's feature record (`null` features if the user has none).
pub fn user(store: &Path, user_id: &str) -> Result<Value> {
    let conn = open(store)?;
    let row: Option<(i64, String)> = conn
        .query_row("SELECT as_of, features FROM user_features WHERE user_id = ?1", params![user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let features = match row {
        Some((_, ref f)) => serde_json::from_str(f).context("stored features are not JSON")?,
        None => Value::Null,
    };
    Ok(json!({"user_id": user_id, "store_as_of": store_as_of(&conn)?, "row_as_of": row.map(|r| r.0), "features": features}))
}

/// One trend record.
pub fn trend(store: &Path, entity_type: &str, id: &str) -> Result<Value> {
    let conn = open(store)?;
    let row = conn
        .query_row(
            "SELECT window_ms, count, baseline_count, score, as_of FROM trends WHERE entity_type = ?1 AND entity_id = ?2",
            params![entity_type, id],
            |r| {
                Ok(json!({"window_ms": r.get::<_, i64>(0)?, "count": r.get::<_, i64>(1)?, "baseline_count": r.get::<_, i64>(2)?,
                          "score": r.get::<_, f64>(3)?, "row_as_of": r.get::<_, i64>(4)?}))
            },
        )
        .optional()?;
    Ok(json!({"entity_type": entity_type, "entity_id": id, "store_as_of": store_as_of(&conn)?, "trend": row}))
}

/// A trending list, or the names of all lists when `list` is `None`... and `global` by default.
pub fn trending(store: &Path, list: &str) -> Result<Value> {
    let conn = open(store)?;
    let mut stmt = conn.prepare("SELECT rank, entity_id, score, count FROM trending WHERE list = ?1 ORDER BY rank")?;
    let rows = stmt
        .query_map(params![list], |r| {
            Ok(json!({"rank": r.get::<_, i64>(0)?, "entity_id": r.get::<_, String>(1)?, "score": r.get::<_, f64>(2)?, "count": r.get::<_, i64>(3)?}))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut names = conn.prepare("SELECT DISTINCT list FROM trending ORDER BY list")?;
    let lists = names.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(json!({"list": list, "store_as_of": store_as_of(&conn)?, "entries": rows, "lists": lists}))
}

/// Reads from Redis, in the same JSON shapes as the SQLite readers.
pub mod redis_store {
    use crate::sinks::redis::{read_as_of, RedisConfig};
    use anyhow::{Context, Result};
    use redis::Commands;
    use serde_json::{json, Map, Value};
    use std::collections::BTreeMap;

    fn connect(cfg: &RedisConfig) -> Result<redis::Connection> {
        redis::Client::open(cfg.url.as_str())
            .and_then(|c| c.get_connection())
            .with_context(|| format!("cannot reach Redis at {}", cfg.url))
    }

    fn fields_json(fields: BTreeMap<String, String>) -> (Option<u64>, Value) {
        let mut obj = Map::new();
        let mut row_as_of = None;
        for (k, v) in fields {
            if k == "as_of" {
                row_as_of = v.parse().ok();
            } else {
                obj.insert(k, serde_json::from_str(&v).unwrap_or(Value::String(v)));
            }
        }
        (row_as_of, Value::Object(obj))
    }

    /// One user's feature record (null features are absent in Redis).
    pub fn user(cfg: &RedisConfig, id: &str) -> Result<Value> {
        let mut c = connect(cfg)?;
        let fields: BTreeMap<String, String> = c.hgetall(format!("{}user:{id}", cfg.prefix))?;
        let (row_as_of, features) = if fields.is_empty() { (None, Value::Null) } else { fields_json(fields) };
        Ok(json!({"user_id": id, "store_as_of": read_as_of(&mut c, &cfg.prefix)?, "row_as_of": row_as_of, "features": features}))
    }

    /// One trend record.
    pub fn trend(cfg: &RedisConfig, kind: &str, id: &str) -> Result<Value> {
        let mut c = connect(cfg)?;
        let fields: BTreeMap<String, String> = c.hgetall(format!("{}trend:{kind}:{id}", cfg.prefix))?;
        let trend = if fields.is_empty() { Value::Null } else { fields_json(fields).1 };
        Ok(json!({"entity_type": kind, "entity_id": id, "store_as_of": read_as_of(&mut c, &cfg.prefix)?, "trend": trend}))
    }

    /// A trending list, by score (Redis keeps no counts or tie order).
    pub fn trending(cfg: &RedisConfig, list: &str) -> Result<Value> {
        let mut c = connect(cfg)?;
        let entries: Vec<(String, f64)> = c.zrevrange_withscores(format!("{}trending:{list}", cfg.prefix), 0, -1)?;
        let entries: Vec<Value> = entries.into_iter().enumerate().map(|(i, (id, s))| json!({"rank": i + 1, "entity_id": id, "score": s})).collect();
        Ok(json!({"list": list, "store_as_of": read_as_of(&mut c, &cfg.prefix)?, "entries": entries}))
    }
}
