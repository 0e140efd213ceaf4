//! Where results go: the online store, trend deltas, dead letters.
//!
//! The store sink runs on worker 0, where the dataflow routes every
//! [`Change`]. It stashes changes by output tick and, once its input frontier
//! has passed a tick (every worker is done with it), hands the tick to the
//! writer thread, which writes the tick's trend deltas, then its rows and the
//! `as_of` marker in one store transaction, tick after tick, while the
//! dataflow computes the next ones. Ticks at or below the store's `as_of` are
//! skipped: a restart never moves a record back in time.

pub mod jsonl;
pub mod redis;
pub mod sqlite;

use crate::metrics::{record_error, FirstError, Metrics};
use anyhow::Result;
use clickflow_dataflows::messages::TrendChange;
use clickflow_dataflows::Change;
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

/// A sink for invalid, late and future lines.
pub trait DeadLetters: Send {
    /// Writes one dead letter.
    fn write(&mut self, reason: &str, detail: &str, source: &str, raw: &[u8]) -> Result<()>;
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

/// An online store.
pub trait Store: Send {
    /// The tick the store is as of.
    fn as_of(&self) -> Option<u64>;
    /// Writes one closed tick's changes, then sets `as_of = at`.
    fn write_tick(&mut self, at: u64, changes: &[Change]) -> Result<()>;
    /// How many trend records the store holds.
    fn trend_records(&mut self) -> Result<u64>;
}

/// The sinks of worker 0.
pub struct SinkParts {
    /// The online store.
    pub store: Box<dyn Store>,
    /// Trend deltas.
    pub deltas: Box<dyn TrendDeltas>,
}

/// One closed output tick on its way to the writer.
pub struct ClosedTick {
    /// The output tick.
    pub at: u64,
    /// Everything that changed at it.
    pub changes: Vec<Change>,
    /// When the dataflow closed it.
    pub closed: Instant,
}

/// Starts the writer thread: ticks arrive in order; each is written (trend
/// deltas, then rows, then `as_of`) before the next. A failed write stops it
/// and records the error; the run then fails.
pub fn spawn_writer(mut parts: SinkParts, metrics: Arc<Metrics>, error: FirstError) -> (SyncSender<ClosedTick>, JoinHandle<Box<dyn Store>>) {
    let (tx, rx) = sync_channel::<ClosedTick>(2);
    let handle = std::thread::Builder::new()
        .name("clickflow:store".into())
        .spawn(move || {
            for tick in rx {
                if parts.store.as_of().is_some_and(|a| a >= tick.at) {
                    continue;
                }
                let mut deltas: Vec<&TrendChange> = tick
                    .changes
                    .iter()
                    .filter_map(|c| match c {
                        Change::Trend(t) => Some(t),
                        _ => None,
                    })
                    .collect();
                deltas.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
                let result = parts.deltas.write(&deltas).and_then(|_| parts.deltas.flush()).and_then(|_| parts.store.write_tick(tick.at, &tick.changes));
                if let Err(e) = result {
                    record_error(&error, e);
                    break;
                }
                metrics.record_tick(tick.at, tick.closed.elapsed());
            }
            parts.store
        })
        .expect("spawning the store writer thread");
    (tx, handle)
}

/// Attaches the store sink; `writer` is `Some` on worker 0 only. Each tick is
/// handed to the writer once the sink's frontier has passed it.
pub fn store_sink(changes: StreamVec<'_, u64, Change>, writer: Option<SyncSender<ClosedTick>>) {
    let mut writer = writer;
    let mut stash: BTreeMap<u64, Vec<Change>> = BTreeMap::new();
    changes.sink(Pipeline, "StoreSink", move |(input, frontier)| {
        input.for_each(|_cap, data| {
            for c in data.drain(..) {
                stash.entry(c.at()).or_default().push(c);
            }
        });
        while let Some(entry) = stash.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            let (at, changes) = entry.remove_entry();
            if let Some(tx) = writer.as_ref() {
                if tx.send(ClosedTick { at, changes, closed: Instant::now() }).is_err() {
                    // The writer stopped on an error; it is recorded for the run.
                    writer = None;
                }
            }
        }
    });
}
