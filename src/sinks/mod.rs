//! Where results go: the online store, trend deltas, dead letters.
//!
//! The store sink runs on worker 0, where the dataflow routes every
//! [`Change`]. It stashes changes by output tick and, once its input frontier
//! has passed a tick (every worker is done with it), writes that tick's trend
//! deltas, then the tick's rows and the `as_of` marker in one store
//! transaction. Ticks at or below the store's `as_of` are skipped: a restart
//! never moves a record back in time.

pub mod jsonl;
pub mod sqlite;

use crate::metrics::Metrics;
use anyhow::Result;
use clickflow_dataflows::messages::TrendChange;
use clickflow_dataflows::Change;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
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
}

/// The sinks of worker 0.
pub struct SinkParts {
    /// The online store.
    pub store: Box<dyn Store>,
    /// Trend deltas.
    pub deltas: Box<dyn TrendDeltas>,
}

/// Attaches the store sink; `parts` is `Some` on worker 0 only.
pub fn store_sink(changes: StreamVec<'_, u64, Change>, parts: Option<SinkParts>, metrics: Arc<Metrics>, error: Arc<Mutex<Option<anyhow::Error>>>) {
    let mut parts = parts;
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
            let Some(p) = parts.as_mut() else { continue };
            if p.store.as_of().is_some_and(|a| a >= at) {
                continue;
            }
            let started = Instant::now();
            let mut deltas: Vec<&TrendChange> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::Trend(t) => Some(t),
                    _ => None,
                })
                .collect();
            deltas.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
            let result = p.deltas.write(&deltas).and_then(|_| p.deltas.flush()).and_then(|_| p.store.write_tick(at, &changes));
            match result {
                Ok(()) => {
                    metrics.record_tick(at, started.elapsed());
                    let users = changes.iter().filter(|c| matches!(c, Change::User(_))).count();
                    metrics.rows_written.fetch_add((users + deltas.len()) as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    parts = None;
                }
            }
        }
    });
}
