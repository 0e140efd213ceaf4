//! `clickflow run`: one process, N timely workers; a file, the generator or
//! a Kafka topic into the online store, trend deltas and dead letters.
//!
//! Everything that can fail on the environment (the input file, the Kafka
//! topic, the output directory, the store, the output topics) is opened
//! before the workers start, so those errors are one clear line and a
//! non-zero exit. A file or the generator is read by worker 0; a Kafka
//! topic's partitions are spread over all workers. Worker 0 owns the store
//! writer; every worker runs the user and trend stages on its share.

use crate::config::{ClockMode, Config, InputKind, StoreKind, StreamSink};
use crate::kafka::admin;
use crate::kafka::consumer::{KafkaChunks, OffsetCommitter, PartitionRead};
use crate::kafka::producer::{KafkaDeadLetters, KafkaDeltas};
use crate::metrics::{FirstError, Metrics, Progress, Summary};
use crate::sinks::jsonl::JsonlFile;
use crate::sinks::redis::RedisStore;
use crate::sinks::sqlite::SqliteStore;
use crate::sinks::{spawn_writer, store_sink, Committer, DeadLetters, SharedDeadLetters, SinkParts, Store, TrendDeltas};
use crate::sources::file::FileSource;
use crate::sources::generator::Generator;
use crate::sources::{reader, Alignment, GeneratorSource, LineChunks, LineSource, Pace, ReaderInfo, ReaderParts, WorkerInput};
use anyhow::{anyhow, bail, Context, Result};
use clickflow_dataflows::{build, Counters};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Where a run reads from and writes to.
#[derive(Debug, Clone)]
pub struct RunTarget {
    /// A file (`--input` or `input.path`), if the input is a file.
    pub input: Option<PathBuf>,
    /// The output directory.
    pub out: PathBuf,
    /// Worker threads.
    pub workers: usize,
    /// Show progress on a terminal.
    pub progress: bool,
    /// Kafka: read each partition to its high-water mark at start, then end as of `A_end`.
    pub until_end: bool,
}

/// File names inside the output directory.
pub const STORE_FILE: &str = "features.db";
/// Trend deltas in the output directory.
pub const DELTAS_FILE: &str = "trend-deltas.jsonl";
/// Dead letters in the output directory.
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

/// Each worker's input: the file or generator on worker 0, or its Kafka partitions.
fn worker_inputs(config: &Config, target: &RunTarget, kind: InputKind, metrics: &Metrics, stop: &Arc<AtomicBool>) -> Result<Vec<Option<WorkerInput>>> {
    let mut inputs: Vec<Option<WorkerInput>> = (0..target.workers).map(|_| None).collect();
    if kind != InputKind::Kafka {
        let source = line_source(config, kind, target.input.as_deref())?;
        let readers = vec![ReaderInfo { name: source.name(), partition: None }];
        inputs[0] = Some(WorkerInput { source: Box::new(LineChunks::new(source)), readers, alignment: None });
        return Ok(inputs);
    }
    let k = &config.kafka;
    let client = admin::metadata_client(k)?;
    let partitions = admin::input_partitions(&client, k)?;
    let marks = admin::watermarks(&client, k, &k.topic, &partitions)?;
    let mut reads: Vec<Vec<PartitionRead>> = vec![Vec::new(); target.workers];
    for (i, &p) in partitions.iter().enumerate() {
        let (low, high) = marks[&p];
        reads[i % target.workers].push(PartitionRead { partition: p, end: target.until_end.then_some(high), start: low });
    }
    if target.until_end {
        let total: i64 = marks.values().map(|(low, high)| (high - low).max(0)).sum();
        metrics.progress_total.store(total as u64, Ordering::Relaxed);
    }
    for (w, parts) in reads.into_iter().enumerate() {
        if parts.is_empty() {
            continue;
        }
        let readers = parts.iter().map(|p| ReaderInfo { name: format!("{}:{}", k.topic, p.partition), partition: Some(p.partition) }).collect();
        let alignment = Arc::new(Alignment::new(parts.len()));
        let source = KafkaChunks::new(k, &parts, stop.clone(), alignment.clone())?;
        inputs[w] = Some(WorkerInput { source: Box::new(source), readers, alignment: Some(alignment) });
    }
    Ok(inputs)
}

/// The dead-letter sink every worker with input writes to.
fn dead_letter_sink(config: &Config, out: &Path) -> Result<SharedDeadLetters> {
    let sink: Box<dyn DeadLetters> = match config.output.dead_letters {
        StreamSink::Jsonl => Box::new(JsonlFile::open(&out.join(DEAD_LETTERS_FILE), false)?),
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

/// Runs the pipeline to the end of the input (or until stopped) and returns its summary.
pub fn run(config: &Config, target: &RunTarget) -> Result<Summary> {
    let params = config.params().map_err(|e| anyhow!("config: {e}"))?;
    let kind = input_kind(config, target);
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
    let store: Box<dyn Store> = match config.store.kind {
        StoreKind::Sqlite => Box::new(SqliteStore::open(&target.out.join(STORE_FILE))?),
        StoreKind::Redis => Box::new(RedisStore::open(&config.redis)?),
    };
    let deltas = deltas_sink(config, &target.out, store.as_of())?;
    let dead_letters = dead_letter_sink(config, &target.out)?;
    let committer: Option<Box<dyn Committer>> = match kind {
        InputKind::Kafka => Some(Box::new(OffsetCommitter::new(&config.kafka)?)),
        _ => None,
    };
    let pace = match kind {
        InputKind::Kafka => {
            stop_on_signal(stop.clone())?;
            Pace {
                live: !target.until_end,
                wall: wall.then_some(config.clock.max_future.ms),
                idle_timeout_ms: config.clock.idle_timeout.ms,
                stop: stop.clone(),
                max_drift_ms: config.input.max_drift.ms,
            }
        }
        _ => Pace::replay(config.input.max_drift.ms),
    };

    let counters = Arc::new(Counters::default());
    let error: FirstError = Arc::default();
    let inputs = Mutex::new(inputs);
    let (writer_tx, writer) = spawn_writer(SinkParts { store, deltas, committer }, metrics.clone(), error.clone());
    let writer_tx = Mutex::new(Some(writer_tx));
    let batch_lines = config.input.batch_lines.unwrap_or(crate::config::DEFAULT_BATCH_LINES);
    let decoders = config.input.decoders.unwrap_or(match kind {
        // Each worker with partitions decodes its own; the file is one reader on worker 0.
        InputKind::Kafka => 1,
        _ => target.workers,
    });
    let progress = Progress::start(metrics.clone(), target.progress);

    let (m, c, e) = (metrics.clone(), counters.clone(), error.clone());
    let guards = timely::execute(timely::Config::process(target.workers), move |worker| {
        let index = worker.index();
        let input = inputs.lock().ok().and_then(|mut i| i.get_mut(index).and_then(Option::take));
        let dead_letters = input.as_ref().map(|_| Box::new(dead_letters.clone()) as Box<dyn DeadLetters>);
        let sink = if index == 0 { writer_tx.lock().ok().and_then(|mut p| p.take()) } else { None };
        let (m, c, e) = (m.clone(), c.clone(), e.clone());
        let pace = pace.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let parts = ReaderParts { input, dead_letters, batch_lines, decoders, pace, metrics: m.clone(), error: e.clone() };
            let (ingest, reports) = reader(scope, &params, parts);
            let changes = build(ingest, &params, c);
            store_sink(changes, reports, sink);
        });
    })
    .map_err(|e| anyhow!("cannot start the timely workers: {e}"))?;
    let results = guards.join();
    let writer_done = writer.join();
    progress.finish();
    let Ok(mut store) = writer_done else {
        bail!("the store writer thread failed");
    };
    for r in results {
        r.map_err(|e| anyhow!("a worker failed: {e}"))?;
    }
    if let Some(e) = error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    let trend_records = store.trend_records()?;
    Ok(Summary::collect(&metrics, &counters, trend_records, store.as_of(), kind == InputKind::Kafka && !target.until_end))
}
