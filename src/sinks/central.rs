//! The central store: one writer for the whole cluster (SQLite: one file,
//! one writer), on global worker 0, where the dataflow routes every change.
//!
//! [`store_sink`] stashes changes by output tick and, once its frontier has
//! passed a tick (every worker is done with it), hands the tick to the
//! writer thread ([`spawn_writer`]), which writes the tick's trend deltas,
//! then its rows and the `as_of` marker in one store transaction, tick after
//! tick, while the dataflow computes the next ones, and then commits the
//! offsets the tick reflects. Ticks at or below the store's `as_of` are
//! skipped, their changes carried into the first tick written
//! ([`super::carry`]): a restart never moves a record back in time.

use super::carry::Resume;
use super::ticks::{by_closed_tick, trend_deltas, write_deltas, Commits};
use super::{Committer, Store, TrendDeltas};
use crate::metrics::{has_error, record_error, FirstError, Metrics};
use anyhow::Result;
use clickflow_dataflows::messages::OffsetReport;
use clickflow_dataflows::Change;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::StreamVec;

/// What the central writer writes to.
pub struct CentralParts {
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

/// The writer thread: it returns the store when the run is over.
pub type StoreThread = JoinHandle<Box<dyn Store>>;

/// Starts the writer thread: ticks arrive in order; each is written (trend
/// deltas, then rows, then `as_of`) before the next, and then the offsets it
/// reflects are committed. A failed write stops it and records the error;
/// the run then fails.
pub fn spawn_writer(mut parts: CentralParts, metrics: Arc<Metrics>, error: FirstError) -> std::io::Result<(SyncSender<ClosedTick>, StoreThread)> {
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
fn write_closed_tick(parts: &mut CentralParts, tick: ClosedTick, resume: &mut Resume, metrics: &Metrics) -> Result<()> {
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
