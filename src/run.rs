//! `clickflow run`: one process of a cluster (often the only one), its
//! timely workers; a file, the generator or a Kafka topic into the online
//! store, trend deltas and dead letters.
//!
//! Everything that can fail on the environment (the input file, the Kafka
//! topic, the output directory, the store, the output topics) is opened
//! before the workers start, so those errors are one clear line and a
//! non-zero exit. A file or the generator is read by global worker 0; a Kafka
//! topic's partitions are spread over every worker of every process. SQLite
//! is written by worker 0; Redis by every worker, with the `as_of` marker on
//! worker 0. After the run, every process's counts are summed on process 0
//! for the summary.

use crate::cluster::{exit_when_a_peer_is_lost, watch_join, Cluster};
use crate::config::{ClockMode, Config, InputKind, StoreKind, StreamSink};
use crate::kafka::admin;
use crate::kafka::consumer::{KafkaChunks, OffsetCommitter, PartitionRead};
use crate::kafka::producer::{KafkaDeadLetters, KafkaDeltas};
use crate::metrics::{FirstError, Metrics, ProcessStats, Progress, Summary};
use crate::sinks::distributed::{marker_sink, rows_sink, Marker, MarkerParts, MarkerThread, Rows};
use crate::sinks::jsonl::JsonlFile;
use crate::sinks::redis::{RedisMarker, RedisRows};
use crate::sinks::sqlite::SqliteStore;
use crate::sinks::{spawn_writer, store_sink, Committer, DeadLetters, SharedDeadLetters, SinkParts, Store, TrendDeltas};
use crate::sources::file::FileSource;
use crate::sources::{reader, Alignment, GeneratorSource, LineChunks, LineSource, Pace, ReaderInfo, ReaderParts, WorkerInput};
use crate::workload::Generator;
use anyhow::{anyhow, bail, Context, Result};
use clickflow_dataflows::{build, Counters, Routing};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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
fn worker_inputs(config: &Config, target: &RunTarget, kind: InputKind, metrics: &Metrics, stop: &Arc<AtomicBool>) -> Result<Vec<Option<WorkerInput>>> {
    let cluster = &target.cluster;
    let mut inputs: Vec<Option<WorkerInput>> = (0..cluster.workers).map(|_| None).collect();
    if kind != InputKind::Kafka {
        // One reader (SPEC section 2): only process 0 needs the file.
        if cluster.process == 0 {
            let source = line_source(config, kind, target.input.as_deref())?;
            let readers = vec![ReaderInfo { name: source.name(), partition: None }];
            inputs[0] = Some(WorkerInput { source: Box::new(LineChunks::new(source)), readers, alignment: None });
        }
        return Ok(inputs);
    }
    let k = &config.kafka;
    let client = admin::metadata_client(k)?;
    let partitions = admin::input_partitions(&client, k)?;
    let marks = admin::watermarks(&client, k, &k.topic, &partitions)?;
    let peers = cluster.peers();
    for (local, input) in inputs.iter_mut().enumerate() {
        let global = cluster.global(local);
        let parts: Vec<PartitionRead> = partitions
            .iter()
            .enumerate()
            .filter(|(i, _)| i % peers == global)
            .map(|(_, &p)| {
                let (low, high) = marks[&p];
                PartitionRead { partition: p, end: target.until_end.then_some(high), start: low }
            })
            .collect();
        if parts.is_empty() {
            continue;
        }
        if target.until_end {
            let total: i64 = parts.iter().map(|p| (p.end.unwrap_or(p.start) - p.start).max(0)).sum();
            metrics.progress_total.fetch_add(total as u64, Ordering::Relaxed);
        }
        let readers = parts.iter().map(|p| ReaderInfo { name: format!("{}:{}", k.topic, p.partition), partition: Some(p.partition) }).collect();
        let alignment = Arc::new(Alignment::new(parts.len()));
        let source = KafkaChunks::new(k, &parts, stop.clone(), alignment.clone())?;
        *input = Some(WorkerInput { source: Box::new(source), readers, alignment: Some(alignment) });
    }
    Ok(inputs)
}

/// The dead-letter sink of this process's workers that read input.
fn dead_letter_sink(config: &Config, out: &Path, process: usize) -> Result<SharedDeadLetters> {
    let sink: Box<dyn DeadLetters> = match config.output.dead_letters {
        StreamSink::Jsonl => {
            let name = if process == 0 { DEAD_LETTERS_FILE.to_string() } else { format!("dead-letters.p{process}.jsonl") };
            Box::new(JsonlFile::open(&out.join(name), false)?)
        }
        StreamSink::Kafka => {
            let k = &config.kafka;
            admin::ensure_topic(&admin::metadata_client(k)?, k, &k.dead_letter_topic, k.topic_partitions)?;
            Box::new(KafkaDeadLetters::new(k)?)
        }
    };
    Ok(SharedDeadLetters::new(sink))
}

fn deltas_sink(config: &Config, out: &Path, as_of: Option<u64>) -> Result<Box<dyn TrendDeltas>> {
    Ok(match config.output.trend_deltas {
        StreamSink::Jsonl => Box::new(JsonlFile::open_deltas(&out.join(DELTAS_FILE), as_of)?),
        StreamSink::Kafka => {
            let k = &config.kafka;
            admin::ensure_topic(&admin::metadata_client(k)?, k, &k.trend_deltas_topic, k.topic_partitions)?;
            Box::new(KafkaDeltas::new(k)?)
        }
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

/// How this process writes the store.
enum Sinks {
    /// SQLite: everything to global worker 0, which has the writer (on process 0).
    Central(Option<SinkParts>),
    /// Redis: one writer per local worker; the marker on process 0.
    Distributed(Vec<Box<dyn Rows>>, Option<MarkerParts>),
}

fn open_sinks(config: &Config, target: &RunTarget, committer: impl FnOnce() -> Result<Option<Box<dyn Committer>>>) -> Result<Sinks> {
    let first = target.cluster.process == 0;
    Ok(match config.store.kind {
        StoreKind::Sqlite => {
            if !first {
                return Ok(Sinks::Central(None));
            }
            let store = SqliteStore::open(&target.out.join(STORE_FILE))?;
            let deltas = deltas_sink(config, &target.out, store.as_of())?;
            Sinks::Central(Some(SinkParts { store: Box::new(store), deltas, committer: committer()? }))
        }
        StoreKind::Redis => {
            let rows = (0..target.cluster.workers).map(|_| RedisRows::open(&config.redis).map(|r| Box::new(r) as Box<dyn Rows>)).collect::<Result<Vec<_>>>()?;
            if !first {
                return Ok(Sinks::Distributed(rows, None));
            }
            let marker = RedisMarker::open(&config.redis)?;
            let deltas = deltas_sink(config, &target.out, marker.as_of())?;
            Sinks::Distributed(rows, Some(MarkerParts { marker: Box::new(marker), deltas, committer: committer()? }))
        }
    })
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
    let inputs = worker_inputs(config, target, kind, &metrics, &stop)?;
    std::fs::create_dir_all(&target.out).with_context(|| format!("cannot create the output directory {}", target.out.display()))?;
    let sinks = open_sinks(config, target, || {
        Ok(match kind {
            InputKind::Kafka => Some(Box::new(OffsetCommitter::new(&config.kafka)?) as Box<dyn Committer>),
            _ => None,
        })
    })?;
    let dead_letters = if inputs.iter().any(Option::is_some) { Some(dead_letter_sink(config, &target.out, cluster.process)?) } else { None };
    let live = kind == InputKind::Kafka && !target.until_end;
    let pace = match kind {
        InputKind::Kafka => {
            stop_on_signal(stop.clone())?;
            Pace { live, wall: wall.then_some(config.clock.max_future.ms), idle_timeout_ms: config.clock.idle_timeout.ms, stop: stop.clone(), max_drift_ms: config.input.max_drift.ms }
        }
        _ => Pace::replay(config.input.max_drift.ms),
    };

    let counters = Arc::new(Counters::default());
    let error: FirstError = Arc::default();
    let inputs = Mutex::new(inputs);
    let routing = match sinks {
        Sinks::Central(_) => Routing::ToWorkerZero,
        Sinks::Distributed(..) => Routing::Local,
    };
    // Worker 0's writer (process 0), and per local worker its Redis rows.
    let (central, rows, marker_parts) = match sinks {
        Sinks::Central(parts) => (parts.map(|p| spawn_writer(p, metrics.clone(), error.clone())).transpose().context("cannot start the store writer thread")?, Vec::new(), None),
        Sinks::Distributed(rows, marker) => (None, rows, marker),
    };
    let (writer_tx, store_writer) = match central {
        Some((tx, handle)) => (Some(tx), Some(handle)),
        None => (None, None),
    };
    let writer_tx = Mutex::new(writer_tx);
    let rows: Mutex<Vec<Option<Box<dyn Rows>>>> = Mutex::new(rows.into_iter().map(Some).collect());
    let marker_parts = Mutex::new(marker_parts);
    let marker_handle: Arc<Mutex<Option<MarkerThread>>> = Arc::default();
    let totals: Arc<Mutex<ProcessStats>> = Arc::default();
    let batch_lines = config.input.batch_lines.unwrap_or(crate::config::DEFAULT_BATCH_LINES);
    let decoders = config.input.decoders.unwrap_or(match kind {
        // Each worker with partitions decodes its own; the file is one reader on worker 0.
        InputKind::Kafka => 1,
        _ => cluster.workers,
    });
    let progress = Progress::start(metrics.clone(), target.progress);

    if cluster.processes > 1 {
        exit_when_a_peer_is_lost(&cluster);
    }
    let joined = Arc::new(AtomicBool::new(false));
    watch_join(&cluster, joined.clone());
    let (m, c, e, mh, tot) = (metrics.clone(), counters.clone(), error.clone(), marker_handle.clone(), totals.clone());
    let guards = timely::execute(cluster.timely_config(), move |worker| {
        let index = worker.index();
        let local = index % cluster.workers;
        let input = inputs.lock().ok().and_then(|mut i| i.get_mut(local).and_then(Option::take));
        let dead_letters = input.as_ref().and_then(|_| dead_letters.clone()).map(|d| Box::new(d) as Box<dyn DeadLetters>);
        let (m, c, e) = (m.clone(), c.clone(), e.clone());
        let pace = pace.clone();
        let main = worker.next_dataflow_index();
        worker.dataflow::<u64, _, _>(|scope| {
            let parts = ReaderParts { input, dead_letters, batch_lines, decoders, pace, metrics: m.clone(), error: e.clone() };
            let (ingest, reports) = reader(scope, &params, parts);
            let changes = build(ingest, &params, c.clone(), routing);
            match routing {
                Routing::ToWorkerZero => {
                    let sink = if index == 0 { writer_tx.lock().ok().and_then(|mut p| p.take()) } else { None };
                    store_sink(changes, reports, sink);
                }
                Routing::Local => {
                    let my_rows = rows.lock().ok().and_then(|mut r| r.get_mut(local).and_then(Option::take));
                    match my_rows {
                        Some(r) => {
                            let w = rows_sink(changes, r, e.clone());
                            let parts = if index == 0 { marker_parts.lock().ok().and_then(|mut p| p.take()) } else { None };
                            if let Some(h) = marker_sink(w, reports, parts, m.clone(), e.clone()) {
                                *mh.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
                            }
                        }
                        None => crate::metrics::record_error(&e, anyhow!("worker {index} has no store writer")),
                    }
                }
            }
        });
        while worker.installed_dataflows().contains(&main) {
            worker.step_or_park(None);
        }
        // Every process's counts to worker 0, for the summary.
        let mut stats = InputHandleVec::<u64, ProcessStats>::new();
        let tot = tot.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            stats.to_stream(scope).sink(Exchange::new(|_: &ProcessStats| 0), "SumStats", move |(input, _)| {
                input.for_each(|_cap, data| {
                    let mut t = tot.lock().unwrap_or_else(|p| p.into_inner());
                    for s in data.drain(..) {
                        t.add(&s);
                    }
                });
            });
        });
        if local == 0 {
            stats.send(ProcessStats::of(&m, &c));
        }
    })
    .map_err(|e| anyhow!("cannot start the timely workers: {e}"))?;
    joined.store(true, Ordering::Relaxed);
    if cluster.processes > 1 {
        eprintln!("clickflow: process {} of {} joined the cluster ({} workers each)", cluster.process, cluster.processes, cluster.workers);
    }
    let results = guards.join();
    let marker = marker_handle.lock().unwrap_or_else(|p| p.into_inner()).take();
    progress.finish();
    for r in results {
        r.map_err(|e| anyhow!("a worker failed: {e}"))?;
    }
    let store = store_writer.map(|h| h.join().map_err(|_| anyhow!("the store writer thread failed"))).transpose()?;
    let marker = marker.map(|h| h.join().map_err(|_| anyhow!("the marker thread failed"))).transpose()?;
    // The run's first error, before the store is asked anything more.
    if let Some(e) = error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    let (trend_records, as_of) = match (store, marker) {
        (Some(mut store), _) => (store.trend_records()?, store.as_of()),
        (_, Some(mut marker)) => (marker.trend_records()?, marker.as_of()),
        _ => (0, None),
    };
    let stats = match cluster.process {
        0 => totals.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        _ => ProcessStats::of(&metrics, &counters),
    };
    Ok(Summary::collect(&stats, &metrics, trend_records, as_of, live, (cluster.process, cluster.processes)))
}
