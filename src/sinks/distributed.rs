//! The distributed store (Redis): a writer per worker for the records that
//! worker owns, and the `as_of` marker, set on worker 0 once every worker of
//! every process has written the tick.
//!
//! * [`rows_sink`], on every worker: stashes the worker's changes by tick
//!   (every worker gets every tick's marker, so it knows each tick even when
//!   it has nothing to write) and, once its frontier passes a tick, hands the
//!   tick to its writer thread, holding a capability for it. The writer
//!   writes the rows ([`Rows`]; ticks the store already holds are carried, see
//!   [`super::carry`]) and answers with a [`Written`]: the identity of the
//!   server that holds them and the tick's trend deltas. Only then is the
//!   capability released, with the `Written` sent to worker 0.
//! * [`marker_sink`], on worker 0: once its frontier passes a tick, every
//!   worker has answered for it. Its thread writes the tick's trend deltas
//!   (in key order), sets `as_of` if every worker wrote on the same server
//!   instance ([`Marker`]: a server that restarted in between gets no marker
//!   for that tick), then commits the offsets the tick reflects.
//!
//! A writer that fails records the run's error and releases its ticks; the
//! marker then finds the tick incomplete and stops, commits nothing more, and
//! the readers stop on the error, so the run ends with it instead of hanging.

use super::carry::Resume;
use super::ticks::{by_closed_tick, trend_deltas, write_deltas, Commits};
use super::{Committer, Marker, Rows, TrendDeltas};
use crate::metrics::{has_error, now_ms, record_error, FirstError, Metrics};
use anyhow::{anyhow, Result};
use clickflow_dataflows::messages::{OffsetReport, TrendChange};
use clickflow_dataflows::Change;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

/// A worker's answer for one tick.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Written {
    /// The tick.
    pub at: u64,
    /// The server instance holding the worker's rows (`None`: the store held the tick already).
    pub server: Option<String>,
    /// The trend deltas of the worker's entities at this tick.
    pub deltas: Vec<TrendChange>,
    /// When the worker's sink saw the tick close (ms since the epoch).
    pub closed_ms: u64,
}


struct RowsTick {
    at: u64,
    changes: Vec<Change>,
    closed_ms: u64,
}

fn spawn_rows_writer(mut rows: Box<dyn Rows>, wake: timely::scheduling::SyncActivator, error: FirstError) -> std::io::Result<(SyncSender<RowsTick>, Receiver<Written>)> {
    let (tx, rx) = sync_channel::<RowsTick>(2);
    let (done_tx, done) = channel::<Written>();
    std::thread::Builder::new().name("clickflow:rows".into()).spawn(move || {
        let mut resume = Resume::new(rows.as_of());
        for tick in rx {
            let (at, closed_ms) = (tick.at, tick.closed_ms);
            let written = resume.changes(at, tick.changes, rows.as_mut()).and_then(|changes| match changes {
                None => Ok(Written { at, server: None, deltas: Vec::new(), closed_ms }),
                Some(changes) => {
                    let deltas = trend_deltas(&changes).cloned().collect();
                    let server = rows.write_rows(at, &changes)?;
                    Ok(Written { at, server: Some(server), deltas, closed_ms })
                }
            });
            match written {
                Ok(w) => {
                    if done_tx.send(w).is_err() {
                        return;
                    }
                    let _ = wake.activate();
                }
                Err(e) => {
                    record_error(&error, e);
                    let _ = wake.activate();
                    return;
                }
            }
        }
    })?;
    Ok((tx, done))
}

/// Every worker's store sink; its output goes to worker 0's [`marker_sink`].
pub fn rows_sink<'s>(changes: StreamVec<'s, u64, Change>, rows: Box<dyn Rows>, error: FirstError) -> StreamVec<'s, u64, Written> {
    let scope = changes.scope();
    changes.unary_frontier(Pipeline, "RowsSink", move |_cap, info| {
        let wake = scope.worker().sync_activator_for(info.address.to_vec());
        let (mut tx, done) = match spawn_rows_writer(rows, wake, error.clone()) {
            Ok((tx, done)) => (Some(tx), Some(done)),
            Err(e) => {
                record_error(&error, anyhow!(e).context("cannot start a store writer thread"));
                (None, None)
            }
        };
        let mut stash: BTreeMap<u64, (Capability<u64>, Vec<Change>)> = BTreeMap::new();
        let mut in_flight: BTreeMap<u64, Capability<u64>> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                for c in data.drain(..) {
                    let at = c.at();
                    stash.entry(at).or_insert_with(|| (cap.delayed(&at, 0), Vec::new())).1.push(c);
                }
            });
            while let Some(entry) = stash.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let (at, (cap, changes)) = entry.remove_entry();
                if tx.as_ref().is_some_and(|t| t.send(RowsTick { at, changes, closed_ms: now_ms() }).is_ok()) {
                    in_flight.insert(at, cap);
                } else {
                    tx = None;
                }
            }
            let mut writer_gone = tx.is_none();
            if let Some(d) = done.as_ref() {
                loop {
                    match d.try_recv() {
                        Ok(w) => {
                            if let Some(cap) = in_flight.remove(&w.at) {
                                output.session(&cap).give(w);
                            }
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            writer_gone = true;
                            break;
                        }
                    }
                }
            }
            if writer_gone {
                // The error is recorded; release the ticks so that the run ends.
                tx = None;
                in_flight.clear();
                stash.clear();
            }
        }
    })
}

/// What worker 0's marker needs.
pub struct MarkerParts {
    /// The `as_of` marker.
    pub marker: Box<dyn Marker>,
    /// Trend deltas.
    pub deltas: Box<dyn TrendDeltas>,
    /// Input offsets, for partitioned sources.
    pub committer: Option<Box<dyn Committer>>,
}

/// The marker thread: it returns the marker when the run is over.
pub type MarkerThread = JoinHandle<Box<dyn Marker>>;

/// One closed tick on its way to the marker thread.
pub struct MarkerTick {
    at: u64,
    written: Vec<Written>,
    offsets: Vec<(i32, i64)>,
}

/// Starts the marker thread (on process 0), for a cluster of `peers`
/// workers; it returns the marker when the run is over.
pub fn spawn_marker(mut parts: MarkerParts, peers: usize, metrics: Arc<Metrics>, error: FirstError) -> std::io::Result<(SyncSender<MarkerTick>, MarkerThread)> {
    let (tx, rx) = sync_channel::<MarkerTick>(2);
    let handle = std::thread::Builder::new().name("clickflow:marker".into()).spawn(move || {
        let mut commits = Commits::default();
        for tick in rx {
            if let Err(e) = marker_tick(&mut parts, tick, peers, &metrics, &mut commits, &error) {
                record_error(&error, e);
                break;
            }
        }
        parts.marker
    })?;
    Ok((tx, handle))
}

/// One tick at the marker: its deltas, `as_of`, then its offsets. A tick no
/// worker answered for carries only offsets (of messages reflected without
/// a row: dead letters, or a tick closed before).
fn marker_tick(parts: &mut MarkerParts, tick: MarkerTick, peers: usize, metrics: &Metrics, commits: &mut Commits, error: &FirstError) -> Result<()> {
    let at = tick.at;
    let mut holds = true;
    if !tick.written.is_empty() {
        if tick.written.len() < peers {
            return Err(anyhow!("only {} of {peers} workers wrote tick {at} (a store writer failed)", tick.written.len()));
        }
        let servers: Vec<&str> = tick.written.iter().filter_map(|w| w.server.as_deref()).collect();
        if !servers.is_empty() {
            write_deltas(parts.deltas.as_mut(), tick.written.iter().flat_map(|w| &w.deltas))?;
            let same = servers.len() == peers && servers.iter().all(|s| *s == servers[0]);
            holds = same && parts.marker.set_as_of(at, servers[0])?;
            if holds {
                let closed = tick.written.iter().map(|w| w.closed_ms).min().unwrap_or(0);
                metrics.record_tick(at, Duration::from_millis(now_ms().saturating_sub(closed)));
            } else {
                eprintln!("clickflow: the store restarted while tick {at} was written; its as_of waits for the next tick");
            }
        }
    }
    // After an error anywhere nothing more is committed: the relaunch reads
    // again. (A failed writer records its error before it lets go of its
    // ticks, so a tick it failed on never commits as an offsets-only one.)
    if let (true, false, Some(committer)) = (holds, has_error(error), parts.committer.as_mut()) {
        commits.commit(committer.as_mut(), &tick.offsets)?;
    }
    Ok(())
}

/// Worker 0's marker sink (`marker` is `Some` there only): once its
/// frontier passes a tick, every worker has answered for it; the tick goes
/// to the marker thread.
pub fn marker_sink<'s>(written: StreamVec<'s, u64, Written>, reports: StreamVec<'s, u64, OffsetReport>, marker: Option<SyncSender<MarkerTick>>) {
    let mut tx = marker;
    by_closed_tick(written, Exchange::new(|_: &Written| 0), reports, "MarkerSink", |w: &Written| w.at, move |at, written, offsets| {
        if tx.as_ref().is_some_and(|t| t.send(MarkerTick { at, written, offsets }).is_err()) {
            // The marker stopped on an error; it is recorded for the run.
            tx = None;
        }
    });
}
