//! `clickflow get`: read features, trends and trending lists back from the store.

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
