//! The records that flow between the stages of the dataflow.
//!
//! Every record carries the tick it belongs to (`at`). Records of an output
//! tick travel at that timely time, and a stage processes the tick once its
//! input frontier has passed it (SPEC section 7: per closed tick); trend
//! contributions travel earlier, as soon as their events are sealed.

use crate::event::Event;
use serde::{Deserialize, Serialize};

/// What the reader feeds into the dataflow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Ingest {
    /// A valid, non-late event.
    Event(Event),
    /// Output tick `at` is closed once the frontier passes it: every event with
    /// `ts < at` has been sent. One copy is addressed to each worker.
    Tick {
        /// The output tick, a tick boundary.
        at: u64,
        /// The worker this copy is for.
        worker: u32,
    },
}

/// A partitioned reader's commit position at a closed tick: tick `at`
/// reflects every message of `partition` below `offset`. Sent to worker 0,
/// which commits it once the store holds `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetReport {
    /// The output tick.
    pub at: u64,
    /// The partition.
    pub partition: i32,
    /// The first offset not (necessarily) reflected.
    pub offset: i64,
}

/// The two kinds of trend entity (SPEC section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntityKind {
    /// A non-empty `product_id`.
    Product,
    /// A non-empty `category`.
    Category,
}

impl EntityKind {
    /// The `entity_type` string of the SPEC.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Product => "product",
            EntityKind::Category => "category",
        }
    }
}

/// One accepted event entering (+1) or leaving (-1, its user became a bot)
/// the trend counts of one entity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contribution {
    /// The tick the event enters at (a retraction: the tick after the flag
    /// time); it counts from the first output tick at or after it. The
    /// contribution travels at a timely time at or below it.
    pub at: u64,
    /// Product or category.
    pub kind: EntityKind,
    /// The entity id.
    pub id: String,
    /// The event's ts.
    pub ts: u64,
    /// +1 or -1.
    pub diff: i8,
    /// For products: the event's category, which decides the product's category list.
    pub category: Option<String>,
}

/// A user's feature record as of `at`, or its deletion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureChange {
    /// The output tick.
    pub at: u64,
    /// The user.
    pub user_id: String,
    /// The SPEC section 5 JSON object, or `None` to delete the row.
    pub features: Option<String>,
}

/// The values of a trend record (SPEC section 6).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrendValues {
    /// `w*` in ms.
    pub window_ms: u64,
    /// Events of the entity in `w*`.
    pub count: u64,
    /// Events of the entity in the baseline.
    pub baseline_count: u64,
    /// The double nearest `N / D`.
    pub score: f64,
}

/// A change of one trend record between consecutive output ticks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrendChange {
    /// The output tick.
    pub at: u64,
    /// Product or category.
    pub kind: EntityKind,
    /// The entity id.
    pub id: String,
    /// The record before (`None`: new).
    pub prev: Option<TrendValues>,
    /// The record now (`None`: deleted).
    pub new: Option<TrendValues>,
}

/// One entry of a trending list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    /// The entity id.
    pub id: String,
    /// The stored score.
    pub score: f64,
    /// The count in `w*`.
    pub count: u64,
}

/// The new contents of one trending list (empty: the list has no rows).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrendingChange {
    /// The output tick.
    pub at: u64,
    /// `global`, `categories` or `category:<c>`.
    pub list: String,
    /// In rank order.
    pub entries: Vec<Ranked>,
}

/// Everything the store sinks receive, routed to one worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Change {
    /// A user feature row.
    User(FeatureChange),
    /// A trend row (and a trend delta).
    Trend(TrendChange),
    /// A trending list.
    Trending(TrendingChange),
    /// Output tick `at` is complete: write it, then set `as_of`.
    Tick(u64),
}

impl Change {
    /// The output tick the change belongs to.
    pub fn at(&self) -> u64 {
        match self {
            Change::User(c) => c.at,
            Change::Trend(c) => c.at,
            Change::Trending(c) => c.at,
            Change::Tick(at) => *at,
        }
    }
}

/// A stable hash for routing (FxHash of the bytes; identical in every process).
pub fn route_hash(s: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(s.as_bytes());
    // Mix the high bits down: the exchange takes the low bits.
    let x = h.finish();
    x ^ (x >> 29) ^ (x >> 47)
}
