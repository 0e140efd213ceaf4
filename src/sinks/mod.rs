//! Where results go: the online store, trend deltas, dead letters.
//!
//! Two ways to write the store. SQLite (one file, one writer) is written by
//! worker 0 alone, each tick in one transaction, as below. Redis is written
//! from every worker, with the `as_of` marker set by worker 0 once all have
//! written a tick ([`distributed`]). Dead letters are written by every worker
//! that reads input.
//!
//! The SQLite store sink runs on worker 0, where the dataflow routes every
//! [`Change`]. It stashes changes by output tick and, once its input frontier
//! has passed a tick (every worker is done with it), hands the tick to the
//! writer thread, which writes the tick's trend deltas, then its rows and the
//! `as_of` marker in one store transaction, tick after tick, while the
//! dataflow computes the next ones. Ticks at or below the store's `as_of` are
//! skipped: a restart never moves a record back in time.

pub mod carry;
pub mod distributed;
pub mod jsonl;
pub mod redis;
pub mod sqlite;

use crate::metrics::{has_error, record_error, FirstError, Metrics};
use anyhow::Result;
use carry::Resume;
use clickflow_dataflows::messages::{EntityKind, TrendChange, TrendValues};
use clickflow_dataflows::Change;
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use clickflow_dataflows::messages::OffsetReport;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::{Operator, OutputBuilderSession};
use timely::dataflow::StreamVec;

/// A sink for invalid, late and future lines; each worker with input has one.
pub trait DeadLetters: Send {
    /// Writes one dead letter.
    fn write(&mut self, reason: &str, detail: &str, source: &str, raw: &[u8]) -> Result<()>;
    /// Makes everything written durable.
    fn flush(&mut self) -> Result<()>;
}

/// One dead-letter sink shared by the workers of a process.
#[derive(Clone)]
pub struct SharedDeadLetters(Arc<Mutex<Box<dyn DeadLetters>>>);

impl SharedDeadLetters {
    /// Shares `sink`.
    pub fn new(sink: Box<dyn DeadLetters>) -> Self {
        SharedDeadLetters(Arc::new(Mutex::new(sink)))
    }
}

impl DeadLetters for SharedDeadLetters {
    fn write(&mut self, reason: &str, detail: &str, source: &str, raw: &[u8]) -> Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).write(reason, detail, source, raw)
    }
    fn flush(&mut self) -> Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
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

/// An online store written by worker 0 alone (SQLite: one file, one
/// writer), each tick in one transaction.
pub trait Store: TrendLookup + Send {
    /// The tick the store is as of.
    fn as_of(&self) -> Option<u64>;
    /// Writes one closed tick's changes, then sets `as_of = at`.
    fn write_tick(&mut self, at: u64, changes: &[Change]) -> Result<()>;
    /// How many trend records the store holds.
    fn trend_records(&mut self) -> Result<u64>;
}

/// Commits input offsets once the store holds the ticks they fed.
pub trait Committer: Send {
    /// Commits, per partition, the offset below which everything is reflected.
    fn commit(&mut self, offsets: &[(i32, i64)]) -> Result<()>;
}

/// The sinks of worker 0.
pub struct SinkParts {
    /// The online store.
    pub store: Box<dyn Store>,
    /// Trend deltas.
    pub deltas: Box<dyn TrendDeltas>,
    /// Input offsets, for partitioned sources.
    pub committer: Option<Box<dyn Committer>>,
}

/// One closed output tick on its way to the writer.
pub struct ClosedTick {
    /// The output tick.
    pub at: u64,
    /// Everything that changed at it.
    pub changes: Vec<Change>,
    /// Whether `at` is an output tick to write (else only offsets to commit,
    /// once the ticks before are in the store).
    pub is_tick: bool,
    /// Per partition, the offset below which the store as of `at` reflects every message.
    pub offsets: Vec<(i32, i64)>,
    /// When the dataflow closed it.
    pub closed: Instant,
}

/// The offsets committed so far: a tick's offsets are committed only for
/// the partitions whose offset moved.
#[derive(Default)]
pub struct Commits {
    committed: BTreeMap<i32, i64>,
}

impl Commits {
    /// Commits the partitions of `offsets` that moved.
    pub fn commit(&mut self, committer: &mut dyn Committer, offsets: &[(i32, i64)]) -> Result<()> {
        let moved: Vec<(i32, i64)> = offsets.iter().copied().filter(|(p, o)| self.committed.get(p).is_none_or(|c| o > c)).collect();
        if !moved.is_empty() {
            committer.commit(&moved)?;
            self.committed.extend(moved);
        }
        Ok(())
    }
}

/// The store writer thread: it returns the store when the run is over.
pub type StoreThread = JoinHandle<Box<dyn Store>>;

/// Starts the writer thread: ticks arrive in order; each is written (trend
/// deltas, then rows, then `as_of`) before the next, and then the offsets it
/// reflects are committed. Ticks the store already holds are not written;
/// their changes go with the first tick that is ([`carry`]). A failed write
/// stops it and records the error; the run then fails.
pub fn spawn_writer(mut parts: SinkParts, metrics: Arc<Metrics>, error: FirstError) -> std::io::Result<(SyncSender<ClosedTick>, StoreThread)> {
    let (tx, rx) = sync_channel::<ClosedTick>(2);
    let handle = std::thread::Builder::new().name("clickflow:store".into()).spawn(move || {
        let mut commits = Commits::default();
        let mut resume = Resume::new(parts.store.as_of());
        for mut tick in rx {
            let offsets = std::mem::take(&mut tick.offsets);
            if let Err(e) = write_closed_tick(&mut parts, tick, &mut resume, &metrics).and_then(|_| match parts.committer.as_mut() {
                // After an error anywhere nothing more is committed: the relaunch reads again.
                Some(c) if !has_error(&error) => commits.commit(c.as_mut(), &offsets),
                _ => Ok(()),
            }) {
                record_error(&error, e);
                break;
            }
        }
        parts.store
    })?;
    Ok((tx, handle))
}

/// Writes one tick to the store (or carries it, if the store holds it already).
fn write_closed_tick(parts: &mut SinkParts, tick: ClosedTick, resume: &mut Resume, metrics: &Metrics) -> Result<()> {
    if !tick.is_tick {
        return Ok(());
    }
    let Some(changes) = resume.changes(tick.at, tick.changes, parts.store.as_mut())? else {
        return Ok(());
    };
    write_deltas(parts.deltas.as_mut(), trend_deltas(&changes))?;
    parts.store.write_tick(tick.at, &changes)?;
    metrics.record_tick(tick.at, tick.closed.elapsed());
    Ok(())
}

/// The trend deltas among a tick's changes.
pub fn trend_deltas(changes: &[Change]) -> impl Iterator<Item = &TrendChange> {
    changes.iter().filter_map(|c| match c {
        Change::Trend(t) => Some(t),
        _ => None,
    })
}

/// Writes one tick's trend deltas in key order (SPEC section 6) and makes them durable.
pub fn write_deltas<'a>(sink: &mut dyn TrendDeltas, deltas: impl IntoIterator<Item = &'a TrendChange>) -> Result<()> {
    let mut deltas: Vec<&TrendChange> = deltas.into_iter().collect();
    deltas.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
    sink.write(&deltas)?;
    sink.flush()
}

/// A sink of `items` (each of the tick `tick_of` says) and offset reports:
/// calls `closed(at, items, offsets)` for each tick, in tick order, once
/// both inputs' frontiers have passed it. The store sink and the marker sink.
pub fn by_closed_tick<'s, A, P>(
    items: StreamVec<'s, u64, A>,
    pact: P,
    reports: StreamVec<'s, u64, OffsetReport>,
    name: &str,
    tick_of: impl Fn(&A) -> u64 + 'static,
    mut closed: impl FnMut(u64, Vec<A>, Vec<(i32, i64)>) + 'static,
) where
    A: Clone + 'static,
    P: ParallelizationContract<u64, Vec<A>>,
{
    type Tick<A> = (Vec<A>, Vec<(i32, i64)>);
    let mut stash: BTreeMap<u64, Tick<A>> = BTreeMap::new();
    items.binary_frontier(reports, pact, Exchange::new(|_: &OffsetReport| 0), name, |_cap, _info| {
        move |(items, frontier1), (reports, frontier2), _output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<()>>>| {
            items.for_each(|_cap, data| {
                for item in data.drain(..) {
                    stash.entry(tick_of(&item)).or_default().0.push(item);
                }
            });
            reports.for_each(|_cap, data| {
                for r in data.drain(..) {
                    stash.entry(r.at).or_default().1.push((r.partition, r.offset));
                }
            });
            while let Some(entry) = stash.first_entry() {
                if frontier1.less_equal(entry.key()) || frontier2.less_equal(entry.key()) {
                    break;
                }
                let (at, (items, offsets)) = entry.remove_entry();
                closed(at, items, offsets);
            }
        }
    });
}

/// Attaches the store sink; `writer` is `Some` on worker 0 only. Each tick is
/// handed to the writer, with the offsets it reflects, once the sink's
/// frontier has passed it.
pub fn store_sink<'s>(changes: StreamVec<'s, u64, Change>, reports: StreamVec<'s, u64, OffsetReport>, writer: Option<SyncSender<ClosedTick>>) {
    let mut writer = writer;
    by_closed_tick(changes, Pipeline, reports, "StoreSink", Change::at, move |at, changes, offsets| {
        let is_tick = changes.iter().any(|c| matches!(c, Change::Tick(_)));
        if writer.as_ref().is_some_and(|tx| tx.send(ClosedTick { at, changes, is_tick, offsets, closed: Instant::now() }).is_err()) {
            // The writer stopped on an error; it is recorded for the run.
            writer = None;
        }
    });
}
