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

mod state;

use super::decode::{ChunkSource, Decoder};
use crate::metrics::{has_error, now_ms, record_error, FirstError, Metrics};
use crate::sinks::DeadLetters;
use clickflow_dataflows::clock::ActiveLow;
use clickflow_dataflows::event::UaPatterns;
use state::{Reading, Tally};
use clickflow_dataflows::messages::OffsetReport;
use clickflow_dataflows::{Ingest, Params};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
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
    /// Whether it has a backlog to replay in event time before the
    /// wall-clock floor applies to it (SPEC section 2): a partition that
    /// held messages at start. Its chunks say when it has caught up.
    pub backlog: bool,
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

    /// Marks reader `r` as too far ahead (or not).
    pub fn set(&self, r: usize, ahead: bool) {
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

/// How often a live reader wakes up without data (wall clock, idleness, shutdown).
const LIVE_WAKE: Duration = Duration::from_millis(50);

/// What the other workers' readers said, kept by the gossip sink for the reader.
#[derive(Default)]
struct Heard {
    /// Per worker, its active readers' low.
    lows: Vec<ActiveLow>,
    /// One of them is stopping.
    stop: bool,
}

impl Heard {
    /// The combined low of every other worker's active readers.
    fn others(&self, me: u32) -> ActiveLow {
        self.lows.iter().enumerate().filter(|(w, _)| *w as u32 != me).fold(ActiveLow::NoneActive, |a, (_, l)| a.min(*l))
    }
}

/// The reader operator: the dataflow's input, and the offset reports for worker 0.
pub fn reader<'s>(scope: Scope<'s, u64>, params: &Params, parts: ReaderParts) -> (StreamVec<'s, u64, Ingest>, StreamVec<'s, u64, OffsetReport>) {
    let peers = scope.peers() as u32;
    let me = scope.index() as u32;
    let patterns = UaPatterns::new(&params.user_agent_patterns);
    let ReaderParts { input, mut dead_letters, batch_lines, decoders, pace, metrics, error } = parts;

    let mut builder = OperatorBuilder::new("Reader".to_owned(), scope);
    let info = builder.operator_info();
    let (ingest_out, ingest) = builder.new_output::<Vec<Ingest>>();
    let (report_out, reports) = builder.new_output::<Vec<OffsetReport>>();
    let (gossip_out, gossip) = builder.new_output::<Vec<Gossip>>();
    let (mut ingest_out, mut report_out, mut gossip_out) = (OutputBuilder::from(ingest_out), OutputBuilder::from(report_out), OutputBuilder::from(gossip_out));

    let heard = Rc::new(RefCell::new(Heard { lows: vec![ActiveLow::NoneActive; peers as usize], stop: false }));
    listen(gossip, heard.clone(), scope.activator_for(info.address.clone()));
    let activator = scope.activator_for(info.address.clone());

    let wake = scope.worker().sync_activator_for(info.address.to_vec());
    let params = params.clone();
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
        let mut state = Reading::new(&params, pace, batch_lines, infos);
        let mut caps = decoder.is_some().then_some(caps);
        move |_frontiers| {
            let Some(c) = caps.as_mut() else { return };
            let Some(dec) = decoder.as_mut() else { return };
            let now = now_ms();
            let others = heard.borrow().others(me);
            state.follow(now, others);

            let mut ingest_session = ingest_out.activate();
            let mut session = ingest_session.session(&c[0]);
            let (drained, failed) = admit_decoded(&mut state, dec, now, &mut |e| session.give(Ingest::Event(e)), dead_letters.as_deref_mut(), &metrics, &error);
            if let Some(align) = alignment.as_ref() {
                state.align(align, others);
            }
            state.settle(drained && dec.exhausted());
            // An error anywhere in this process (a store writer's too) ends the run.
            let stopping = failed || state.pace().stop.load(Ordering::Relaxed) || heard.borrow().stop || has_error(&error);
            if stopping {
                // The source's feeder thread watches this flag too: it must end.
                state.pace().stop.store(true, Ordering::Relaxed);
            }
            let batch_full = state.batch_full();
            let closed = state.close_tick(stopping, drained);
            if let Some(at) = closed {
                for worker in 0..peers {
                    session.give(Ingest::Tick { at, worker });
                }
            }
            match state.report_offsets(closed, dead_letters.as_deref_mut()) {
                Ok(reports) if !reports.is_empty() => report_out.activate().session(&c[1]).give_iterator(reports.into_iter()),
                Ok(_) => {}
                Err(e) => record_error(&error, e),
            }
            drop(session);
            drop(ingest_session);
            if let Some(low) = state.gossip(stopping) {
                let mut gossip_session = gossip_out.activate();
                let mut g = gossip_session.session(&c[2]);
                for to in (0..peers).filter(|w| *w != me) {
                    g.give(Gossip { to, from: me, low, stopping });
                }
            }
            match state.frontier() {
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
                    if state.pace().live {
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

/// Admits decoded chunks, in order, until the batch is full or no decoded
/// chunk is ready (`drained`), or an error stops the reading (`failed`; the
/// error is recorded). Counts and progress go to `metrics`.
fn admit_decoded(
    state: &mut Reading,
    dec: &mut Decoder,
    now: u64,
    send: &mut impl FnMut(clickflow_dataflows::event::Event),
    mut dead: Option<&mut (dyn DeadLetters + 'static)>,
    metrics: &Metrics,
    error: &FirstError,
) -> (bool, bool) {
    let mut tally = Tally::default();
    let (mut drained, mut failed) = (false, false);
    while !state.batch_full() && !failed {
        let Some(chunk) = dec.try_next() else {
            drained = true;
            break;
        };
        match chunk.progress {
            Some((done, total)) => {
                metrics.progress_done.store(done, Ordering::Relaxed);
                metrics.progress_total.store(total, Ordering::Relaxed);
            }
            None => {
                metrics.progress_done.fetch_add(chunk.spans.len() as u64, Ordering::Relaxed);
            }
        }
        if let Err(e) = state.admit_chunk(chunk, now, send, dead.as_deref_mut(), &mut tally) {
            record_error(error, e);
            failed = true;
        }
    }
    metrics.lines_read.fetch_add(tally.read, Ordering::Relaxed);
    metrics.invalid.fetch_add(tally.invalid, Ordering::Relaxed);
    metrics.late.fetch_add(tally.late, Ordering::Relaxed);
    metrics.future.fetch_add(tally.future, Ordering::Relaxed);
    (drained, failed)
}

/// The gossip sink: keeps what the other workers' readers say for this
/// worker's reader, and wakes it on news (a reader held back for alignment
/// or idleness may be released by it, which no chunk of its own would do).
fn listen(gossip: StreamVec<'_, u64, Gossip>, heard: Rc<RefCell<Heard>>, wake_reader: timely::scheduling::Activator) {
    gossip.sink(Exchange::new(|g: &Gossip| u64::from(g.to)), "ReaderGossip", move |(input, _frontier)| {
        let mut news = false;
        input.for_each(|_cap, data| {
            let mut heard = heard.borrow_mut();
            for g in data.drain(..) {
                news |= heard.lows[g.from as usize] != g.low || g.stopping;
                heard.lows[g.from as usize] = g.low;
                heard.stop |= g.stopping;
            }
        });
        if news {
            wake_reader.activate();
        }
    });
}
