//! `clickflow run`: one process of a cluster (often the only one), its
//! timely workers; a file, the generator or a Kafka topic into the online
//! store, trend deltas and dead letters.
//!
//! Everything that can fail on the environment (the input file, the Kafka
//! topic, the output directory, the store, the output topics) is opened
//! before the workers start, so those errors are one clear line and a
//! non-zero exit. Each local worker then gets its [`WorkerParts`]: its input
//! (a file or the generator on global worker 0, or its Kafka partitions),
//! its dead-letter sink, and its side of the store: the central writer's
//! queue on worker 0 (SQLite), or its own rows writer and, on worker 0, the
//! marker's queue (Redis). The writer threads start here, before the
//! workers, and are joined after them. After the run, every process's
//! counts are summed on process 0 for the summary.

use crate::cluster::{exit_when_a_peer_is_lost, watch_join, Cluster};
use crate::config::{ClockMode, Config, InputKind, StoreKind, StreamSink};
use crate::kafka::connector::Kafka;
use crate::kafka::consumer::{KafkaChunks, OffsetCommitter};
use crate::kafka::producer::{KafkaDeadLetters, KafkaDeltas};
use crate::metrics::{record_error, FirstError, Metrics, ProcessStats, Progress, Summary};
use crate::sinks::central::{spawn_writer, store_sink, CentralParts, ClosedTick, StoreThread};
use crate::sinks::distributed::{marker_sink, rows_sink, spawn_marker, MarkerParts, MarkerThread, MarkerTick};
use crate::sinks::jsonl::JsonlFile;
use crate::sinks::redis::marker::RedisMarker;
use crate::sinks::redis::rows::RedisRows;
use crate::sinks::shared::SharedDeadLetters;
use crate::sinks::sqlite::SqliteStore;
use crate::sinks::{Committer, DeadLetters, Rows, TrendDeltas};
use crate::sources::file::FileSource;
use crate::sources::{reader, Alignment, GeneratorSource, LineChunks, LineSource, Pace, ReaderInfo, ReaderParts, WorkerInput};
use crate::workload::Generator;
use anyhow::{anyhow, bail, Context, Result};
use clickflow_dataflows::params::Settings;
use clickflow_dataflows::{build, Counters, Params, Routing};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::InputHandleVec;

/// Where a run reads from and writes to.
#[derive(Debug, Clone)]
pub struct RunTarget {
    /// A file (`--input` or `input.path`), if the input is a file.
    pub input: Option<PathBuf>,
    /// The output directory.
    pub out: PathBuf,
    /// The cluster and this process's place in it.
    pub cluster: Cluster,
    /// Show progress on a terminal.
    pub progress: bool,
    /// Kafka: read each partition to its high-water mark at start, then end as of `A_end`.
    pub until_end: bool,
}

/// File names inside the output directory.
pub const STORE_FILE: &str = "features.db";
/// Trend deltas in the output directory.
pub const DELTAS_FILE: &str = "trend-deltas.jsonl";
/// Dead letters in the output directory (process 0's; process `p` writes `dead-letters.p<p>.jsonl`).
pub const DEAD_LETTERS_FILE: &str = "dead-letters.jsonl";

/// What the run reads.
pub fn input_kind(config: &Config, target: &RunTarget) -> InputKind {
    match (&target.input, config.input.kind) {
        (Some(_), _) => InputKind::File,
        (None, Some(kind)) => kind,
        (None, None) => InputKind::Generator,
    }
}

/// Whether the run talks to Kafka at all (input or a stream sink).
fn uses_kafka(config: &Config, kind: InputKind) -> bool {
    kind == InputKind::Kafka || config.output.trend_deltas == StreamSink::Kafka || config.output.dead_letters == StreamSink::Kafka
}

fn line_source(config: &Config, kind: InputKind, input: Option<&Path>) -> Result<Box<dyn LineSource>> {
    Ok(match (kind, input) {
        (InputKind::File, Some(path)) => Box::new(FileSource::open(path)?),
        (InputKind::File, None) => bail!("config `input.kind`: \"file\" needs `input.path` or --input FILE"),
        _ => {
            let generator = Generator::new(config.generator.clone()).map_err(|e| anyhow!("config `generator`: {e}"))?;
            Box::new(GeneratorSource::new(generator))
        }
    })
}

/// Each local worker's input: the file or generator on global worker 0, or its Kafka partitions.
fn worker_inputs(config: &Config, target: &RunTarget, kind: InputKind, kafka: Option<&Kafka>, metrics: &Metrics, stop: &Arc<AtomicBool>) -> Result<Vec<Option<WorkerInput>>> {
    let cluster = &target.cluster;
    let mut inputs: Vec<Option<WorkerInput>> = (0..cluster.workers).map(|_| None).collect();
    let Some(kafka) = kafka.filter(|_| kind == InputKind::Kafka) else {
        // One reader (SPEC section 2): only process 0 needs the file.
        if cluster.process == 0 {
            let source = line_source(config, kind, target.input.as_deref())?;
            let readers = vec![ReaderInfo { name: source.name(), partition: None, backlog: false }];
            inputs[0] = Some(WorkerInput { source: Box::new(LineChunks::new(source)), readers, alignment: None });
        }
        return Ok(inputs);
    };
    let k = kafka.config();
    for (input, parts) in inputs.iter_mut().zip(kafka.worker_partitions(cluster, target.until_end)?) {
        if parts.is_empty() {
            continue;
        }
        // What a replay reads, or what a live run catches up on (its backlog).
        let total: i64 = parts.iter().map(|p| (p.end.unwrap_or(p.high) - p.start).max(0)).sum();
        metrics.progress_total.fetch_add(total as u64, Ordering::Relaxed);
        let readers = parts.iter().map(|p| ReaderInfo { name: format!("{}:{}", k.topic, p.partition), partition: Some(p.partition), backlog: !p.empty_at_start() }).collect();
        let alignment = Arc::new(Alignment::new(parts.len()));
        let source = KafkaChunks::new(k, &parts, stop.clone(), alignment.clone())?;
        *input = Some(WorkerInput { source: Box::new(source), readers, alignment: Some(alignment) });
    }
    Ok(inputs)
}

/// The dead-letter sink of this process's workers that read input.
fn dead_letter_sink(config: &Config, out: &Path, process: usize, kafka: Option<&Kafka>) -> Result<SharedDeadLetters> {
    let sink: Box<dyn DeadLetters> = match (config.output.dead_letters, kafka) {
        (StreamSink::Kafka, Some(kafka)) => {
            kafka.ensure_topic(&config.kafka.dead_letter_topic)?;
            Box::new(KafkaDeadLetters::new(&config.kafka)?)
        }
        _ => {
            let name = if process == 0 { DEAD_LETTERS_FILE.to_string() } else { format!("dead-letters.p{process}.jsonl") };
            Box::new(JsonlFile::open(&out.join(name), false)?)
        }
    };
    Ok(SharedDeadLetters::new(sink))
}

fn deltas_sink(config: &Config, out: &Path, as_of: Option<u64>, kafka: Option<&Kafka>) -> Result<Box<dyn TrendDeltas>> {
    Ok(match (config.output.trend_deltas, kafka) {
        (StreamSink::Kafka, Some(kafka)) => {
            kafka.ensure_topic(&config.kafka.trend_deltas_topic)?;
            Box::new(KafkaDeltas::new(&config.kafka)?)
        }
        _ => Box::new(JsonlFile::open_deltas(&out.join(DELTAS_FILE), as_of)?),
    })
}

/// Ctrl-C / SIGTERM set `stop` (the run ends as of its last closed tick);
/// a second one exits at once.
fn stop_on_signal(stop: Arc<AtomicBool>) -> Result<()> {
    let signals = AtomicU32::new(0);
    ctrlc::set_handler(move || {
        if signals.fetch_add(1, Ordering::Relaxed) > 0 {
            eprintln!("clickflow: stopping now");
            std::process::exit(130);
        }
        eprintln!("clickflow: stopping after the current tick (again to stop at once)");
        stop.store(true, Ordering::Relaxed);
    })
    .context("cannot install the Ctrl-C handler")
}

/// This process's side of the store, opened.
enum Store {
    /// SQLite: one writer, on process 0.
    Central(Option<CentralParts>),
    /// Redis: one writer per local worker; the marker on process 0.
    Distributed(Vec<Box<dyn Rows>>, Option<MarkerParts>),
}

fn open_store(config: &Config, target: &RunTarget, kind: InputKind, kafka: Option<&Kafka>, settings: &Settings) -> Result<Store> {
    let first = target.cluster.process == 0;
    let committer = || -> Result<Option<Box<dyn Committer>>> {
        Ok(match kind {
            InputKind::Kafka => Some(Box::new(OffsetCommitter::new(&config.kafka)?)),
            _ => None,
        })
    };
    Ok(match config.store.kind {
        StoreKind::Sqlite => {
            if !first {
                return Ok(Store::Central(None));
            }
            let mut store = SqliteStore::open(&target.out.join(STORE_FILE))?;
            store.check_settings(settings)?;
            let deltas = deltas_sink(config, &target.out, crate::sinks::Store::as_of(&store), kafka)?;
            Store::Central(Some(CentralParts { store: Box::new(store), deltas, committer: committer()? }))
        }
        StoreKind::Redis => {
            let rows = (0..target.cluster.workers).map(|_| RedisRows::open(&config.redis).map(|r| Box::new(r) as Box<dyn Rows>)).collect::<Result<Vec<_>>>()?;
            if !first {
                return Ok(Store::Distributed(rows, None));
            }
            let mut marker = RedisMarker::open(&config.redis)?;
            marker.check_settings(settings)?;
            let deltas = deltas_sink(config, &target.out, crate::sinks::Marker::as_of(&marker), kafka)?;
            Store::Distributed(rows, Some(MarkerParts { marker: Box::new(marker), deltas, committer: committer()? }))
        }
    })
}

/// One local worker's side of the store.
enum WorkerSink {
    /// The central writer's queue (global worker 0 only).
    Central(Option<SyncSender<ClosedTick>>),
    /// The worker's own rows writer, and on global worker 0 the marker's queue.
    Distributed(Box<dyn Rows>, Option<SyncSender<MarkerTick>>),
}

/// Everything one local worker takes into its dataflow.
struct WorkerParts {
    input: Option<WorkerInput>,
    dead_letters: Option<Box<dyn DeadLetters>>,
    sink: WorkerSink,
}

/// The store's writer threads, joined after the workers.
#[derive(Default)]
struct Writers {
    store: Option<StoreThread>,
    marker: Option<MarkerThread>,
}

/// Starts the writer threads of `store` and gives each local worker its side of it.
fn start_writers(store: Store, cluster: &Cluster, metrics: &Arc<Metrics>, error: &FirstError) -> Result<(Routing, Vec<WorkerSink>, Writers)> {
    let mut writers = Writers::default();
    Ok(match store {
        Store::Central(parts) => {
            let mut tx = None;
            if let Some(parts) = parts {
                let (sender, handle) = spawn_writer(parts, metrics.clone(), error.clone()).context("cannot start the store writer thread")?;
                tx = Some(sender);
                writers.store = Some(handle);
            }
            let sinks = (0..cluster.workers).map(|local| WorkerSink::Central(if local == 0 { tx.take() } else { None })).collect();
            (Routing::Central, sinks, writers)
        }
        Store::Distributed(rows, marker) => {
            let mut tx = None;
            if let Some(parts) = marker {
                let (sender, handle) = spawn_marker(parts, cluster.peers(), metrics.clone(), error.clone()).context("cannot start the marker thread")?;
                tx = Some(sender);
                writers.marker = Some(handle);
            }
            let sinks = rows.into_iter().enumerate().map(|(local, r)| WorkerSink::Distributed(r, if local == 0 { tx.take() } else { None })).collect();
            (Routing::Distributed, sinks, writers)
        }
    })
}

/// How the readers pace ticks in this run.
fn pace_of(config: &Config, kind: InputKind, target: &RunTarget, stop: &Arc<AtomicBool>) -> Result<Pace> {
    Ok(match kind {
        InputKind::Kafka => {
            stop_on_signal(stop.clone())?;
            let wall = config.clock.mode == ClockMode::Wall;
            Pace { live: !target.until_end, wall: wall.then_some(config.clock.max_future.ms), idle_timeout_ms: config.clock.idle_timeout.ms, stop: stop.clone(), max_drift_ms: config.input.max_drift.ms }
        }
        _ => Pace::replay(config.input.max_drift.ms),
    })
}

/// What every worker shares: the parameters and the run's counters.
#[derive(Clone)]
struct Shared {
    params: Params,
    routing: Routing,
    batch_lines: usize,
    decoders: usize,
    pace: Pace,
    metrics: Arc<Metrics>,
    counters: Arc<Counters>,
    error: FirstError,
    totals: Arc<Mutex<ProcessStats>>,
    /// Worker threads per process.
    workers: usize,
}

/// One worker: its dataflow until the input ends (or the run stops), then
/// this process's counts to global worker 0, for the summary.
fn work(worker: &mut timely::worker::Worker, parts: Option<WorkerParts>, sh: &Shared) {
    let index = worker.index();
    let main = worker.next_dataflow_index();
    let Some(parts) = parts else {
        record_error(&sh.error, anyhow!("worker {index} has no parts"));
        return;
    };
    worker.dataflow::<u64, _, _>(|scope| {
        let reader_parts = ReaderParts { input: parts.input, dead_letters: parts.dead_letters, batch_lines: sh.batch_lines, decoders: sh.decoders, pace: sh.pace.clone(), metrics: sh.metrics.clone(), error: sh.error.clone() };
        let (ingest, reports) = reader(scope, &sh.params, reader_parts);
        let changes = build(ingest, &sh.params, sh.counters.clone(), sh.routing);
        match parts.sink {
            WorkerSink::Central(writer) => store_sink(changes, reports, writer),
            WorkerSink::Distributed(rows, marker) => marker_sink(rows_sink(changes, rows, sh.error.clone()), reports, marker),
        }
    });
    while worker.installed_dataflows().contains(&main) {
        worker.step_or_park(None);
    }
    let mut stats = InputHandleVec::<u64, ProcessStats>::new();
    let totals = sh.totals.clone();
    worker.dataflow::<u64, _, _>(|scope| {
        stats.to_stream(scope).sink(Exchange::new(|_: &ProcessStats| 0), "SumStats", move |(input, _)| {
            input.for_each(|_cap, data| {
                let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                for s in data.drain(..) {
                    t.add(&s);
                }
            });
        });
    });
    if index.is_multiple_of(sh.workers) {
        stats.send(ProcessStats::of(&sh.metrics, &sh.counters));
    }
}

/// Runs this process of the pipeline to the end of the input (or until
/// stopped) and returns its summary (the cluster's, on process 0).
pub fn run(config: &Config, target: &RunTarget) -> Result<Summary> {
    let params = config.params().map_err(|e| anyhow!("config: {e}"))?;
    let kind = input_kind(config, target);
    let cluster = target.cluster.clone();
    let wall = config.clock.mode == ClockMode::Wall;
    if wall && kind != InputKind::Kafka {
        bail!("config `clock.mode`: \"wall\" needs a live source (`input.kind = \"kafka\"`); file and generator replays run in event time (set mode = \"event\")");
    }
    if wall && target.until_end {
        bail!("--until-end replays a topic in event time, but config `clock.mode` is \"wall\" (set mode = \"event\")");
    }
    let metrics = Arc::new(Metrics::new());
    let stop = Arc::new(AtomicBool::new(false));
    let kafka = uses_kafka(config, kind).then(|| Kafka::connect(&config.kafka)).transpose()?;
    let inputs = worker_inputs(config, target, kind, kafka.as_ref(), &metrics, &stop)?;
    std::fs::create_dir_all(&target.out).with_context(|| format!("cannot create the output directory {}", target.out.display()))?;
    let store = open_store(config, target, kind, kafka.as_ref(), &params.settings())?;
    let dead_letters = if inputs.iter().any(Option::is_some) { Some(dead_letter_sink(config, &target.out, cluster.process, kafka.as_ref())?) } else { None };
    let pace = pace_of(config, kind, target, &stop)?;
    let error: FirstError = Arc::default();
    let (routing, sinks, writers) = start_writers(store, &cluster, &metrics, &error)?;
    let parts: Vec<Option<WorkerParts>> = inputs
        .into_iter()
        .zip(sinks)
        .map(|(input, sink)| {
            let dead_letters = input.as_ref().and_then(|_| dead_letters.clone()).map(|d| Box::new(d) as Box<dyn DeadLetters>);
            Some(WorkerParts { input, dead_letters, sink })
        })
        .collect();
    let shared = Shared {
        params,
        routing,
        batch_lines: config.input.batch_lines.unwrap_or(crate::config::DEFAULT_BATCH_LINES),
        // Each worker with partitions decodes its own; the file is one reader on worker 0.
        decoders: config.input.decoders.unwrap_or(if kind == InputKind::Kafka { 1 } else { cluster.workers }),
        pace,
        metrics: metrics.clone(),
        counters: Arc::new(Counters::default()),
        error: error.clone(),
        totals: Arc::default(),
        workers: cluster.workers,
    };
    let progress = Progress::start(metrics.clone(), target.progress);
    if cluster.processes > 1 {
        exit_when_a_peer_is_lost(&cluster);
    }
    let joined = Arc::new(AtomicBool::new(false));
    watch_join(&cluster, joined.clone());
    let (parts, sh) = (Mutex::new(parts), shared.clone());
    let guards = timely::execute(cluster.timely_config(), move |worker| {
        let local = worker.index() % sh.workers;
        let mine = parts.lock().unwrap_or_else(|p| p.into_inner()).get_mut(local).and_then(Option::take);
        work(worker, mine, &sh);
    })
    .map_err(|e| anyhow!("cannot start the timely workers: {e}"))?;
    joined.store(true, Ordering::Relaxed);
    if cluster.processes > 1 {
        eprintln!("clickflow: process {} of {} joined the cluster ({} workers each)", cluster.process, cluster.processes, cluster.workers);
    }
    let results = guards.join();
    progress.finish();
    for r in results {
        r.map_err(|e| anyhow!("a worker failed: {e}"))?;
    }
    finish(writers, &shared, &error, kind, target)
}

/// Joins the writer threads and makes the summary; the run's first error wins.
fn finish(writers: Writers, sh: &Shared, error: &FirstError, kind: InputKind, target: &RunTarget) -> Result<Summary> {
    let store = writers.store.map(|h| h.join().map_err(|_| anyhow!("the store writer thread failed"))).transpose()?;
    let marker = writers.marker.map(|h| h.join().map_err(|_| anyhow!("the marker thread failed"))).transpose()?;
    // The run's first error, before the store is asked anything more.
    if let Some(e) = error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    let (trend_records, as_of) = match (store, marker) {
        (Some(mut store), _) => (store.trend_records()?, store.as_of()),
        (_, Some(mut marker)) => (marker.trend_records()?, marker.as_of()),
        _ => (0, None),
    };
    let cluster = &target.cluster;
    let stats = match cluster.process {
        0 => sh.totals.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        _ => ProcessStats::of(&sh.metrics, &sh.counters),
    };
    let live = kind == InputKind::Kafka && !target.until_end;
    Ok(Summary::collect(&stats, &sh.metrics, trend_records, as_of, live, (cluster.process, cluster.processes)))
}
