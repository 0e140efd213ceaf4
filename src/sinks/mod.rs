//! Where results go: the online store, trend deltas, dead letters. This
//! file holds the sink traits only.
//!
//! The store is written one of two ways, named the same everywhere
//! ([`clickflow_dataflows::Routing`], the run's sinks, the files here):
//!
//! * **central** ([`central`]): one writer for the whole cluster, on global
//!   worker 0, where the dataflow routes every change (SQLite: one file, one
//!   writer), each tick in one transaction;
//! * **distributed** ([`distributed`]): a writer per worker for the records
//!   that worker owns, and the `as_of` marker set on worker 0 once every
//!   worker has written the tick (Redis).
//!
//! Both hand closed ticks to writer threads through [`ticks`]; ticks a store
//! already holds are carried into the first tick written ([`carry`]). Dead
//! letters are written by every worker that reads input; their JSON shape,
//! and that of trend deltas, is in [`records`], shared by the JSON Lines and
//! the Kafka sinks. Each store's reads (`clickflow get`) live beside its
//! writes: [`sqlite`], [`redis`].

pub mod carry;
pub mod central;
pub mod distributed;
pub mod jsonl;
pub mod records;
pub mod redis;
pub mod settings;
pub mod shared;
pub mod sqlite;
pub mod ticks;

use anyhow::Result;
use clickflow_dataflows::messages::{EntityKind, Ranked, TrendChange, TrendValues};
use clickflow_dataflows::Change;
use records::Reason;

/// A sink for invalid, late and future lines; each worker with input has one.
pub trait DeadLetters: Send {
    /// Writes one dead letter: why, the detail, where the line came from, its bytes.
    fn write(&mut self, reason: Reason, detail: &str, source: &str, raw: &[u8]) -> Result<()>;
    /// Makes everything written durable.
    fn flush(&mut self) -> Result<()>;
}

/// A sink for trend deltas.
pub trait TrendDeltas: Send {
    /// Writes one tick's deltas, in order.
    fn write(&mut self, changes: &[&TrendChange]) -> Result<()>;
    /// Makes everything written durable.
    fn flush(&mut self) -> Result<()>;
}

/// Reads stored trend records (the `prev` of the first deltas after a resume).
pub trait TrendLookup {
    /// The stored values of these trend records (`None`: no record).
    fn trends_of(&mut self, keys: &[(EntityKind, &str)]) -> Result<Vec<Option<TrendValues>>>;
}

/// The central store: written by worker 0 alone, each tick in one transaction.
pub trait Store: TrendLookup + Send {
    /// The tick the store is as of.
    fn as_of(&self) -> Option<u64>;
    /// Writes one closed tick's changes, then sets `as_of = at`.
    fn write_tick(&mut self, at: u64, changes: &[Change]) -> Result<()>;
    /// How many trend records the store holds.
    fn trend_records(&mut self) -> Result<u64>;
}

/// One worker's part of a distributed store.
pub trait Rows: TrendLookup + Send {
    /// The store's `as_of` when it was opened (ticks at or below are held).
    fn as_of(&self) -> Option<u64>;
    /// Writes this worker's changes of tick `at`; returns the identity of
    /// the server instance that now holds everything this worker wrote.
    fn write_rows(&mut self, at: u64, changes: &[Change]) -> Result<String>;
}

/// A distributed store's `as_of` marker, set by worker 0.
pub trait Marker: Send {
    /// The store's `as_of`.
    fn as_of(&self) -> Option<u64>;
    /// Sets `as_of = at` if the server is still the instance `server`;
    /// false (nothing set) if it is not.
    fn set_as_of(&mut self, at: u64, server: &str) -> Result<bool>;
    /// How many trend records the store holds.
    fn trend_records(&mut self) -> Result<u64>;
}

/// Commits input offsets once the store holds the ticks they fed.
pub trait Committer: Send {
    /// Commits, per partition, the offset below which everything is reflected.
    fn commit(&mut self, offsets: &[(i32, i64)]) -> Result<()>;
}

/// A user's stored feature record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUser {
    /// The tick of the row's last write.
    pub as_of: u64,
    /// The SPEC section 5 record, typed as in the SPEC.
    pub features: serde_json::Map<String, serde_json::Value>,
}

/// A stored trend record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredTrend {
    /// The tick of the row's last write.
    pub as_of: u64,
    /// Its values.
    pub values: TrendValues,
}

/// Reads a store (`clickflow get`); every store answers in the same types.
pub trait ReadStore {
    /// The store's `as_of` (`None`: nothing written yet).
    fn as_of(&mut self) -> Result<Option<u64>>;
    /// A user's record, if it has one.
    fn user(&mut self, id: &str) -> Result<Option<StoredUser>>;
    /// A trend record, if there is one.
    fn trend(&mut self, kind: EntityKind, id: &str) -> Result<Option<StoredTrend>>;
    /// A trending list in rank order (empty: no such list).
    fn trending(&mut self, list: &str) -> Result<Vec<Ranked>>;
    /// The names of the trending lists, sorted.
    fn lists(&mut self) -> Result<Vec<String>>;
}
