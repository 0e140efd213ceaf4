//! The embedded online store: one SQLite file with SPEC section 7's tables,
//! its writes (the central store's writer) and its reads (`clickflow get`).
//!
//! Each closed tick is one transaction: every changed row, then
//! `meta.as_of`. Readers in another connection see a tick entirely or not at
//! all. A tick at or below the stored `as_of` is not written again, so a
//! re-run over input the store already reflects changes nothing. A stored
//! value that does not parse (an `as_of` that is not a number, features that
//! are not a JSON object) is an error naming the file, never taken as absent.

use super::{ReadStore, Store, StoredTrend, StoredUser, TrendLookup};
use anyhow::{anyhow, bail, Context, Result};
use clickflow_dataflows::messages::{EntityKind, Ranked, TrendValues};
use clickflow_dataflows::Change;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};

/// The schema, exactly as the SPEC gives it.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS user_features(user_id TEXT PRIMARY KEY, as_of INTEGER NOT NULL, features TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trends(entity_type TEXT NOT NULL, entity_id TEXT NOT NULL, as_of INTEGER NOT NULL,
       window_ms INTEGER NOT NULL, count INTEGER NOT NULL, baseline_count INTEGER NOT NULL,
       score REAL NOT NULL, PRIMARY KEY (entity_type, entity_id));
CREATE TABLE IF NOT EXISTS trending(list TEXT NOT NULL, rank INTEGER NOT NULL, entity_id TEXT NOT NULL,
         score REAL NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (list, rank));
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// An open SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    conn: Connection,
    as_of: Option<u64>,
}

impl SqliteStore {
    /// Opens or creates the store file.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let hint = || format!("cannot open the SQLite store {} (is the directory writable?)", path.display());
        let conn = Connection::open(path).with_context(hint)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=16384;").with_context(hint)?;
        conn.execute_batch(SCHEMA).with_context(hint)?;
        let as_of = read_as_of(&conn, path)?;
        Ok(SqliteStore { path: path.to_owned(), conn, as_of })
    }

    /// Checks the store's settings fingerprint against this run's, and
    /// records this run's in a store without one ([`super::settings`]).
    pub fn check_settings(&mut self, now: &clickflow_dataflows::params::Settings) -> Result<()> {
        let ctx = || format!("cannot read meta.settings from {}", self.path.display());
        let stored: Option<String> = self.conn.query_row("SELECT value FROM meta WHERE key = 'settings'", [], |r| r.get(0)).optional().with_context(ctx)?;
        if let Some(json) = super::settings::check(stored.as_deref(), now, &self.path.display().to_string())? {
            self.conn
                .execute("INSERT INTO meta(key, value) VALUES ('settings', ?1)", params![json])
                .with_context(|| format!("cannot record the settings in {}", self.path.display()))?;
        }
        Ok(())
    }
}

/// The store's `meta.as_of`, if set.
pub fn read_as_of(conn: &Connection, path: &Path) -> Result<Option<u64>> {
    let v: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'as_of'", [], |r| r.get(0))
        .optional()
        .with_context(|| format!("cannot read meta.as_of from {}", path.display()))?;
    v.map(|v| v.parse().map_err(|_| anyhow!("the store {} is damaged: meta.as_of is {v:?}, not a tick", path.display()))).transpose()
}

/// One trend record, with the tick of its last write.
fn read_trend(conn: &Connection, path: &Path, kind: EntityKind, id: &str) -> Result<Option<StoredTrend>> {
    let ctx = || format!("cannot read trend {}:{id} from {}", kind.as_str(), path.display());
    let mut stmt = conn.prepare_cached("SELECT window_ms, count, baseline_count, score, as_of FROM trends WHERE entity_type = ?1 AND entity_id = ?2").with_context(ctx)?;
    let row = stmt
        .query_row(params![kind.as_str(), id], |r| {
            let values = TrendValues { window_ms: r.get::<_, i64>(0)? as u64, count: r.get::<_, i64>(1)? as u64, baseline_count: r.get::<_, i64>(2)? as u64, score: r.get(3)? };
            Ok(StoredTrend { as_of: r.get::<_, i64>(4)? as u64, values })
        })
        .optional()
        .with_context(ctx)?;
    Ok(row)
}

impl TrendLookup for SqliteStore {
    fn trends_of(&mut self, keys: &[(EntityKind, &str)]) -> Result<Vec<Option<TrendValues>>> {
        keys.iter().map(|&(kind, id)| Ok(read_trend(&self.conn, &self.path, kind, id)?.map(|t| t.values))).collect()
    }
}

impl Store for SqliteStore {
    fn as_of(&self) -> Option<u64> {
        self.as_of
    }

    fn trend_records(&mut self) -> Result<u64> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM trends", [], |r| r.get(0)).with_context(|| format!("cannot count trends in {}", self.path.display()))?;
        Ok(n as u64)
    }

    fn write_tick(&mut self, at: u64, changes: &[Change]) -> Result<()> {
        let path = self.path.clone();
        let ctx = || format!("cannot write tick {at} to {}", path.display());
        let tx = self.conn.transaction().with_context(ctx)?;
        {
            let mut upsert_user = tx.prepare_cached(
                "INSERT INTO user_features(user_id, as_of, features) VALUES (?1, ?2, ?3)
                 ON CONFLICT(user_id) DO UPDATE SET as_of = excluded.as_of, features = excluded.features",
            )?;
            let mut delete_user = tx.prepare_cached("DELETE FROM user_features WHERE user_id = ?1")?;
            let mut upsert_trend = tx.prepare_cached(
                "INSERT INTO trends(entity_type, entity_id, as_of, window_ms, count, baseline_count, score)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(entity_type, entity_id) DO UPDATE SET as_of = excluded.as_of, window_ms = excluded.window_ms,
                   count = excluded.count, baseline_count = excluded.baseline_count, score = excluded.score",
            )?;
            let mut delete_trend = tx.prepare_cached("DELETE FROM trends WHERE entity_type = ?1 AND entity_id = ?2")?;
            let mut clear_list = tx.prepare_cached("DELETE FROM trending WHERE list = ?1")?;
            let mut insert_rank =
                tx.prepare_cached("INSERT INTO trending(list, rank, entity_id, score, count) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for change in changes {
                match change {
                    Change::User(u) => match &u.features {
                        Some(f) => upsert_user.execute(params![u.user_id, at as i64, f]),
                        None => delete_user.execute(params![u.user_id]),
                    },
                    Change::Trend(t) => match &t.new {
                        Some(v) => upsert_trend.execute(params![
                            t.kind.as_str(),
                            t.id,
                            at as i64,
                            v.window_ms as i64,
                            v.count as i64,
                            v.baseline_count as i64,
                            v.score
                        ]),
                        None => delete_trend.execute(params![t.kind.as_str(), t.id]),
                    },
                    Change::Trending(l) => {
                        clear_list.execute(params![l.list]).with_context(ctx)?;
                        for (rank, e) in l.entries.iter().enumerate() {
                            insert_rank.execute(params![l.list, rank as i64 + 1, e.id, e.score, e.count as i64]).with_context(ctx)?;
                        }
                        Ok(0)
                    }
                    Change::Tick(_) => Ok(0),
                }
                .with_context(ctx)?;
            }
            tx.execute(
                "INSERT INTO meta(key, value) VALUES ('as_of', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![at.to_string()],
            )
            .with_context(ctx)?;
        }
        tx.commit().with_context(ctx)?;
        self.as_of = Some(at);
        Ok(())
    }
}

/// A read-only view of a SQLite store (`clickflow get`).
pub struct SqliteReader {
    path: PathBuf,
    conn: Connection,
}

impl SqliteReader {
    /// Opens `path` read-only; a missing file says how to make one.
    pub fn open(path: &Path) -> Result<SqliteReader> {
        if !path.exists() {
            bail!("no store at {} (run `clickflow run` first, or pass --out DIR)", path.display());
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).with_context(|| format!("cannot open the store {}", path.display()))?;
        Ok(SqliteReader { path: path.to_owned(), conn })
    }
}

impl ReadStore for SqliteReader {
    fn as_of(&mut self) -> Result<Option<u64>> {
        read_as_of(&self.conn, &self.path)
    }

    fn user(&mut self, id: &str) -> Result<Option<StoredUser>> {
        let ctx = || format!("cannot read user {id:?} from {}", self.path.display());
        let row: Option<(i64, String)> = self
            .conn
            .prepare_cached("SELECT as_of, features FROM user_features WHERE user_id = ?1")
            .and_then(|mut s| s.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .with_context(ctx)?;
        row.map(|(as_of, text)| match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(features)) => Ok(StoredUser { as_of: as_of as u64, features }),
            _ => Err(anyhow!("the store {} is damaged: the features of user {id:?} are not a JSON object", self.path.display())),
        })
        .transpose()
    }

    fn trend(&mut self, kind: EntityKind, id: &str) -> Result<Option<StoredTrend>> {
        read_trend(&self.conn, &self.path, kind, id)
    }

    fn trending(&mut self, list: &str) -> Result<Vec<Ranked>> {
        let ctx = || format!("cannot read trending list {list:?} from {}", self.path.display());
        let mut stmt = self.conn.prepare_cached("SELECT entity_id, score, count FROM trending WHERE list = ?1 ORDER BY rank").with_context(ctx)?;
        let rows = stmt.query_map(params![list], |r| Ok(Ranked { id: r.get(0)?, score: r.get(1)?, count: r.get::<_, i64>(2)? as u64 })).with_context(ctx)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().with_context(ctx)
    }

    fn lists(&mut self) -> Result<Vec<String>> {
        let ctx = || format!("cannot list the trending lists of {}", self.path.display());
        let mut stmt = self.conn.prepare_cached("SELECT DISTINCT list FROM trending ORDER BY list").with_context(ctx)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).with_context(ctx)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().with_context(ctx)
    }
}
