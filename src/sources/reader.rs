//! The reader operator: one per worker, over that worker's readers (none, a
//! file, or some Kafka partitions). It takes decoded chunks in read order,
//! applies each reader's watermark ([`clickflow_dataflows::clock`]),
//! dead-letters invalid, late and future lines, and sends the rest.
//!
//! **Ticks.** A replay closes the newest tick the low watermark has passed
//! after every `batch_lines` lines, and `A_end` once every reader is done; a
//! live run also closes whenever it has drained its input, so each tick is
//! written as soon as the watermark passes it. A closed tick goes to every
//! worker as an [`Ingest::Tick`] marker; the stages close the union of all
//! readers' ticks, in order, once the frontier has passed them.
//!
//! **Capabilities.** Events and markers are sent at [`Readers::frontier`],
//! which never exceeds a tick still to close or a later event's `ts`.
//!
//! **Offsets.** For partitioned readers, each closed tick also sends an
//! [`OffsetReport`] per partition to worker 0: the offset below which the
//! tick reflects every message ([`SafeOffsets`]), committed once the store
//! holds the tick. Dead letters are flushed before the report goes out.
//!
//! **Alignment.** With several readers, one more than `input.max_drift` ahead
//! of the lowest active reader anywhere is marked in [`Alignment`], and its
//! source stops reading it until the others catch up, so the events waiting
//! for the clock stay bounded.
//!
//! **Stopping.** A reader that stops early (a signal, or an error) tells the
//! others through the same broadcast, and they stop as well: Ctrl-C on one
//! process of a live cluster ends the whole cluster as of its last tick.
//!
//! **Idleness and the wall clock** (live runs). A reader with no data for
//! `idle_timeout` stops holding the clock back and follows the active
//! readers, on this worker and (through a broadcast of each worker's
//! [`ActiveLow`]) on the others. In wall-clock mode every watermark is at
//! least `now - allowed_lateness`, and events beyond `now + max_future` are
//! dead-lettered as `future`.

use super::decode::{ChunkSource, Decoded, Decoder};
use super::offsets::SafeOffsets;
use crate::metrics::{has_error, now_ms, record_error, FirstError, Metrics};
use crate::sinks::DeadLetters;
use clickflow_dataflows::clock::{ActiveLow, Admit, ReaderState, Readers};
use clickflow_dataflows::event::UaPatterns;
use clickflow_dataflows::messages::OffsetReport;
use clickflow_dataflows::{Ingest, Params};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder};
use timely::dataflow::{Scope, StreamVec};

/// One reader of a worker.
#[derive(Debug, Clone)]
pub struct ReaderInfo {
    /// For dead letters' `source`: the file, or `topic:partition`.
    pub name: String,
    /// The Kafka partition, for offset reports.
    pub partition: Option<i32>,
}

/// What one worker reads.
pub struct WorkerInput {
    /// Its chunks, cut on a feeder thread.
    pub source: Box<dyn ChunkSource>,
    /// Its readers; chunks name them by index.
    pub readers: Vec<ReaderInfo>,
    /// For a source that can hold back a reader: which ones are too far ahead.
    pub alignment: Option<Arc<Alignment>>,
}

/// Which of a worker's readers are too far ahead in event time to be read
/// now: set by the reader operator, read by the source's feeder thread.
#[derive(Debug)]
pub struct Alignment {
    ahead: Vec<AtomicBool>,
}

impl Alignment {
    /// `n` readers, none ahead.
    pub fn new(n: usize) -> Self {
        Alignment { ahead: (0..n).map(|_| AtomicBool::new(false)).collect() }
    }

    /// Whether reader `r` should wait for the others.
    pub fn is_ahead(&self, r: usize) -> bool {
        self.ahead.get(r).is_some_and(|a| a.load(Ordering::Relaxed))
    }

    fn set(&self, r: usize, ahead: bool) {
        if let Some(a) = self.ahead.get(r) {
            a.store(ahead, Ordering::Relaxed);
        }
    }
}

/// How the reader paces ticks.
#[derive(Debug, Clone)]
pub struct Pace {
    /// A live source: close a tick whenever the input is drained, and mark
    /// readers idle after `idle_timeout_ms` without data.
    pub live: bool,
    /// Wall-clock mode: `Some(max_future_ms)`.
    pub wall: Option<u64>,
    /// See `clock.idle_timeout`.
    pub idle_timeout_ms: u64,
    /// Set on shutdown: stop reading; the output stays as of the last closed tick.
    pub stop: Arc<AtomicBool>,
    /// See `input.max_drift`.
    pub max_drift_ms: u64,
}

impl Pace {
    /// A replay: ticks per batch, then `A_end`.
    pub fn replay(max_drift_ms: u64) -> Self {
        Pace { live: false, wall: None, idle_timeout_ms: 0, stop: Arc::new(AtomicBool::new(false)), max_drift_ms }
    }
}

/// What the reader needs besides its input.
pub struct ReaderParts {
    /// This worker's input, if it reads any.
    pub input: Option<WorkerInput>,
    /// Where invalid, late and future lines go (every worker with input has one).
    pub dead_letters: Option<Box<dyn DeadLetters>>,
    /// Lines per replay batch: each batch may close an output tick.
    pub batch_lines: usize,
    /// Decoder threads.
    pub decoders: usize,
    /// Ticks, idleness, wall clock, shutdown.
    pub pace: Pace,
    /// Run-wide counters.
    pub metrics: Arc<Metrics>,
    /// The first fatal error of the run.
    pub error: FirstError,
}

/// What a worker's reader tells every other worker's.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Gossip {
    to: u32,
    from: u32,
    /// Its active readers' low watermark, for idle readers elsewhere to follow.
    low: ActiveLow,
    /// It stops (Ctrl-C, SIGTERM or an error): the others stop too.
    stopping: bool,
}

/// `low` rounded down to its tick: the granularity of the gossip, and so of
/// alignment (comparing one worker's exact watermark with another's rounded
/// one could hold both back for good when `max_drift` is below a tick).
fn at_tick(low: ActiveLow, tick: u64) -> ActiveLow {
    match low {
        ActiveLow::Low(Some(wm)) => ActiveLow::Low(Some(wm / tick * tick)),
        other => other,
    }
}

/// How often a live reader wakes up without data (wall clock, idleness, shutdown).
const LIVE_WAKE: Duration = Duration::from_millis(50);

/// The reader operator: the dataflow's input, and the offset reports for worker 0.
pub fn reader<'s>(scope: Scope<'s, u64>, params: &Params, parts: ReaderParts) -> (StreamVec<'s, u64, Ingest>, StreamVec<'s, u64, OffsetReport>) {
    let peers = scope.peers() as u32;
    let me = scope.index() as u32;
    let patterns = UaPatterns::new(&params.user_agent_patterns);
    let params = params.clone();
    let tick = params.tick_ms;
    let lateness = params.allowed_lateness_ms;
    let ReaderParts { input, mut dead_letters, batch_lines, decoders, pace, metrics, error } = parts;

    let mut builder = OperatorBuilder::new("Reader".to_owned(), scope);
    let info = builder.operator_info();
    let (ingest_out, ingest) = builder.new_output::<Vec<Ingest>>();
    let (report_out, reports) = builder.new_output::<Vec<OffsetReport>>();
    let (gossip_out, gossip) = builder.new_output::<Vec<Gossip>>();
    let (mut ingest_out, mut report_out, mut gossip_out) = (OutputBuilder::from(ingest_out), OutputBuilder::from(report_out), OutputBuilder::from(gossip_out));

    // What the other workers' active readers have passed, for idle readers
    // here; and whether one of them is stopping (a live cluster stops whole).
    let others: Rc<RefCell<Vec<ActiveLow>>> = Rc::new(RefCell::new(vec![ActiveLow::NoneActive; peers as usize]));
    let stop_heard = Rc::new(std::cell::Cell::new(false));
    let (heard, heard_stop) = (others.clone(), stop_heard.clone());
    let activator = scope.activator_for(info.address.clone());
    // News from elsewhere may release a reader held back for alignment or
    // idleness, which no chunk of its own would wake: wake it.
    let wake_reader = activator.clone();
    gossip.sink(Exchange::new(|g: &Gossip| u64::from(g.to)), "ReaderGossip", move |(input, _frontier)| {
        let mut news = false;
        input.for_each(|_cap, data| {
            let mut heard = heard.borrow_mut();
            for g in data.drain(..) {
                news |= heard[g.from as usize] != g.low || g.stopping;
                heard[g.from as usize] = g.low;
                if g.stopping {
                    heard_stop.set(true);
                }
            }
        });
        if news {
            wake_reader.activate();
        }
    });

    let wake = scope.worker().sync_activator_for(info.address.to_vec());
    builder.build(move |caps| {
        let (infos, mut decoder, alignment) = match input {
            Some(WorkerInput { source, readers, alignment }) => match Decoder::start(source, patterns, decoders, wake) {
                Ok(d) => (readers, Some(d), alignment),
                Err(e) => {
                    record_error(&error, anyhow::Error::new(e).context("cannot start the decoder threads"));
                    (Vec::new(), None, None)
                }
            },
            None => (Vec::new(), None, None),
        };
        let mut readers = Readers::new(&params, infos.len());
        let mut safe: Vec<Option<SafeOffsets>> = infos.iter().map(|i| i.partition.map(|_| SafeOffsets::new(tick))).collect();
        let started = Instant::now();
        let mut last_data: Vec<Instant> = vec![started; infos.len()];
        let mut caps = decoder.is_some().then_some(caps);
        let mut since_close = 0usize;
        let mut unflushed = false;
        let mut told = ActiveLow::NoneActive;
        let mut told_once = false;
        move |_frontiers| {
            let Some(c) = caps.as_mut() else { return };
            let Some(dec) = decoder.as_mut() else { return };
            let now = now_ms();
            if let Some(_max_future) = pace.wall {
                readers.raise_floor(now.saturating_sub(lateness));
            }
            // Idle readers follow the lowest active reader anywhere.
            let heard = others.borrow().iter().enumerate().filter(|(w, _)| *w as u32 != me).fold(ActiveLow::NoneActive, |a, (_, l)| a.min(*l));
            readers.hear(heard);

            let mut ingest_session = ingest_out.activate();
            let mut session = ingest_session.session(&c[0]);
            let (mut read, mut invalid, mut late, mut future) = (0u64, 0u64, 0u64, 0u64);
            let mut drained = false;
            let mut failed = false;
            while since_close < batch_lines && !failed {
                let Some(mut chunk) = dec.try_next() else {
                    drained = true;
                    break;
                };
                let r = chunk.reader;
                since_close += chunk.spans.len();
                if !chunk.spans.is_empty() {
                    last_data[r] = Instant::now();
                    if readers.state(r) == ReaderState::Idle {
                        readers.set_idle(r, false);
                    }
                }
                let name = &infos[r].name;
                for (i, decoded) in std::mem::take(&mut chunk.decoded).into_iter().enumerate() {
                    let offset = chunk.offsets.get(i).copied();
                    let verdict = match decoded {
                        Decoded::Blank => {
                            if let (Some(o), Some(s)) = (offset, safe[r].as_mut()) {
                                s.read(o, None);
                            }
                            continue;
                        }
                        Decoded::Invalid(detail) => Err(("invalid", detail)),
                        Decoded::Event(event) => match pace.wall {
                            Some(max_future) if event.ts > now.saturating_add(max_future) => Err((
                                "future",
                                format!("ts {} is more than {max_future} ms (clock.max_future) after the wall clock {now}", event.ts),
                            )),
                            _ => match readers.admit(r, event.ts) {
                                Admit::OnTime => Ok(event),
                                Admit::Late => {
                                    let clock = readers.clock(r);
                                    Err((
                                        "late",
                                        format!(
                                            "ts {} is below the watermark {} (largest ts read {} minus the allowed lateness{})",
                                            event.ts,
                                            clock.watermark().unwrap_or(0),
                                            clock.max_ts().unwrap_or(0),
                                            if pace.wall.is_some() || pace.live { ", or the clock it follows" } else { "" }
                                        ),
                                    ))
                                }
                            },
                        },
                    };
                    read += 1;
                    match verdict {
                        Ok(event) => {
                            if let (Some(o), Some(s)) = (offset, safe[r].as_mut()) {
                                s.read(o, Some(event.ts));
                            }
                            session.give(Ingest::Event(event));
                        }
                        Err((reason, detail)) => {
                            match reason {
                                "late" => late += 1,
                                "future" => future += 1,
                                _ => invalid += 1,
                            }
                            if let Some(dl) = dead_letters.as_mut() {
                                unflushed = true;
                                if let Err(e) = dl.write(reason, &detail, &chunk.position(name, i), chunk.line(i)) {
                                    record_error(&error, e);
                                    failed = true;
                                    break;
                                }
                            }
                            // Reflected once its dead letter is written.
                            if let (Some(o), Some(s)) = (offset, safe[r].as_mut()) {
                                s.read(o, None);
                            }
                        }
                    }
                }
                match chunk.progress {
                    Some((done, total)) => {
                        metrics.progress_done.store(done, Ordering::Relaxed);
                        metrics.progress_total.store(total, Ordering::Relaxed);
                    }
                    None => {
                        metrics.progress_done.fetch_add(chunk.spans.len() as u64, Ordering::Relaxed);
                    }
                }
                if let Some(e) = chunk.error.take() {
                    // Not the end of the input: stop, without closing `A_end`.
                    record_error(&error, e);
                    failed = true;
                }
                if chunk.last {
                    readers.finish(r);
                }
            }
            metrics.lines_read.fetch_add(read, Ordering::Relaxed);
            metrics.invalid.fetch_add(invalid, Ordering::Relaxed);
            metrics.late.fetch_add(late, Ordering::Relaxed);
            metrics.future.fetch_add(future, Ordering::Relaxed);
            if let Some(align) = alignment.as_ref() {
                let low = at_tick(readers.active_low(), tick).min(heard);
                for r in 0..readers.len() {
                    let wm = readers.clock(r).watermark();
                    let ahead = match low {
                        ActiveLow::Low(Some(low)) => wm.is_some_and(|w| w / tick * tick > low.saturating_add(pace.max_drift_ms)),
                        // Someone has read nothing yet: those who have wait for it.
                        ActiveLow::Low(None) => wm.is_some() && readers.state(r) == ReaderState::Active,
                        ActiveLow::NoneActive => false,
                    };
                    align.set(r, ahead);
                }
            }
            if drained && !readers.done() && dec.exhausted() {
                // The source ended without a last chunk for some reader (it gave up).
                (0..readers.len()).for_each(|r| readers.finish(r));
            }
            if pace.live {
                let timeout = Duration::from_millis(pace.idle_timeout_ms);
                for (r, t) in last_data.iter().enumerate() {
                    if readers.state(r) == ReaderState::Active && t.elapsed() >= timeout {
                        readers.set_idle(r, true);
                    }
                }
            }
            // An error anywhere in this process (a store writer's too) ends the run.
            let stopping = failed || pace.stop.load(Ordering::Relaxed) || stop_heard.get() || has_error(&error);
            let batch_full = since_close >= batch_lines;
            let closed = if stopping {
                // The source's feeder thread watches this flag too: it must end.
                pace.stop.store(true, Ordering::Relaxed);
                let at = readers.close();
                readers.stop();
                at
            } else if readers.done() {
                readers.close_end()
            } else if batch_full || (pace.live && drained) {
                readers.close()
            } else {
                None
            };
            if batch_full {
                since_close = 0;
            }
            if let Some(at) = closed {
                for worker in 0..peers {
                    session.give(Ingest::Tick { at, worker });
                }
            }
            // Offset reports: at each tick this worker closes, and once more when
            // its readers end without one (offsets that fed no tick, e.g. only
            // dead letters, are reflected once the store holds the last tick).
            let report_at = closed.or(readers.done().then(|| readers.closed()));
            if let Some(at) = report_at {
                let mut report_session = report_out.activate();
                let mut reports = report_session.session(&c[1]);
                for (info, s) in infos.iter().zip(safe.iter_mut()) {
                    if let (Some(partition), Some(s)) = (info.partition, s.as_mut()) {
                        if let Some(offset) = s.at_close(at) {
                            if unflushed {
                                // Dead letters of the offsets reported must be durable first.
                                if let Some(Err(e)) = dead_letters.as_mut().map(|d| d.flush()) {
                                    record_error(&error, e);
                                    break;
                                }
                                unflushed = false;
                            }
                            reports.give(OffsetReport { at, partition, offset });
                        }
                    }
                }
            }
            drop(session);
            drop(ingest_session);
            // At tick granularity, which is all that following and alignment
            // need: in wall-clock mode the exact value moves on every wake-up,
            // and each change would wake every other reader in turn.
            let active = at_tick(readers.active_low(), tick);
            if !told_once || active != told || stopping {
                told_once = true;
                told = active;
                let mut gossip_session = gossip_out.activate();
                let mut g = gossip_session.session(&c[2]);
                for to in (0..peers).filter(|w| *w != me) {
                    g.give(Gossip { to, from: me, low: active, stopping });
                }
            }
            match readers.frontier() {
                Some(f) => {
                    for cap in c.iter_mut() {
                        if *cap.time() < f {
                            cap.downgrade(&f);
                        }
                    }
                    if batch_full {
                        // More may be decoded already; decoders only wake us for new chunks.
                        activator.activate();
                    }
                    if pace.live {
                        activator.activate_after(LIVE_WAKE);
                    }
                }
                None => {
                    if let Some(Err(e)) = dead_letters.as_mut().map(|d| d.flush()) {
                        record_error(&error, e);
                    }
                    caps = None;
                    decoder = None;
                }
            }
        }
    });
    (ingest, reports)
}

