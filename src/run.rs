//! `clickflow run`: one process, N timely workers, a file or the generator
//! into the embedded store.
//!
//! Everything that can fail on the environment (the input file, the output
//! directory, the store) is opened before the workers start, so those errors
//! are one clear line and a non-zero exit. Worker 0 reads the input and owns
//! the sinks; every worker runs the user and trend stages on its share.

use crate::config::{Config, StoreKind};
use crate::sinks::redis::RedisStore;
use crate::sinks::Store;
use crate::metrics::{FirstError, Metrics, Progress, Summary};
use crate::sinks::jsonl::JsonlFile;
use crate::sinks::sqlite::SqliteStore;
use crate::sinks::{spawn_writer, store_sink, DeadLetters, SinkParts};
use crate::sources::file::FileSource;
use crate::sources::generator::Generator;
use crate::sources::{reader, GeneratorSource, LineChunks, LineSource, Pace, ReaderInfo, ReaderParts, WorkerInput};
use anyhow::{anyhow, bail, Context, Result};
use clickflow_dataflows::{build, Counters};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where a run reads from and writes to.
#[derive(Debug, Clone)]
pub struct RunTarget {
    /// A file, or `None` for the built-in generator.
    pub input: Option<PathBuf>,
    /// The output directory.
    pub out: PathBuf,
    /// Worker threads.
    pub workers: usize,
    /// Show progress on a terminal.
    pub progress: bool,
}

/// File names inside the output directory.
pub const STORE_FILE: &str = "features.db";
/// Trend deltas in the output directory.
pub const DELTAS_FILE: &str = "trend-deltas.jsonl";
/// Dead letters in the output directory.
pub const DEAD_LETTERS_FILE: &str = "dead-letters.jsonl";

fn open_source(config: &Config, input: Option<&Path>) -> Result<Box<dyn LineSource>> {
    Ok(match input {
        Some(path) => Box::new(FileSource::open(path)?),
        None => {
            let generator = Generator::new(config.generator.clone()).map_err(|e| anyhow!("config `generator`: {e}"))?;
            Box::new(GeneratorSource::new(generator))
        }
    })
}

/// Runs the pipeline to the end of the input and returns its summary.
pub fn run(config: &Config, target: &RunTarget) -> Result<Summary> {
    let params = config.params().map_err(|e| anyhow!("config: {e}"))?;
    if config.clock.mode == crate::config::ClockMode::Wall {
        bail!("config `clock.mode`: \"wall\" needs a live source; file and generator replays run in event time (set mode = \"event\")");
    }
    let source = open_source(config, target.input.as_deref())?;
    std::fs::create_dir_all(&target.out)
        .with_context(|| format!("cannot create the output directory {}", target.out.display()))?;
    let store: Box<dyn Store> = match config.store.kind {
        StoreKind::Sqlite => Box::new(SqliteStore::open(&target.out.join(STORE_FILE))?),
        StoreKind::Redis => Box::new(RedisStore::open(&config.redis)?),
    };
    let resuming = store.as_of().is_some();
    let deltas = JsonlFile::open(&target.out.join(DELTAS_FILE), resuming)?;
    let dead_letters = JsonlFile::open(&target.out.join(DEAD_LETTERS_FILE), false)?;

    let metrics = Arc::new(Metrics::new());
    let counters = Arc::new(Counters::default());
    let error: FirstError = Arc::default();
    let reader_parts = Mutex::new(Some((source, Box::new(dead_letters) as Box<dyn DeadLetters>)));
    let (writer_tx, writer) = spawn_writer(SinkParts { store, deltas: Box::new(deltas), committer: None }, metrics.clone(), error.clone());
    let writer_tx = Mutex::new(Some(writer_tx));
    let batch_lines = config.input.batch_lines.unwrap_or(crate::config::DEFAULT_BATCH_LINES);
    let decoders = config.input.decoders.unwrap_or(target.workers);
    let progress = Progress::start(metrics.clone(), target.progress);

    let (m, c, e) = (metrics.clone(), counters.clone(), error.clone());
    let guards = timely::execute(timely::Config::process(target.workers), move |worker| {
        let index = worker.index();
        let (source, dead_letters) = if index == 0 {
            reader_parts.lock().ok().and_then(|mut p| p.take()).map_or((None, None), |(s, d)| (Some(s), Some(d)))
        } else {
            (None, None)
        };
        let sink = if index == 0 { writer_tx.lock().ok().and_then(|mut p| p.take()) } else { None };
        let (m, c, e) = (m.clone(), c.clone(), e.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            let input = source.map(|s| {
                let readers = vec![ReaderInfo { name: s.name(), partition: None }];
                WorkerInput { source: Box::new(LineChunks::new(s)), readers }
            });
            let parts = ReaderParts { input, dead_letters, batch_lines, decoders, pace: Pace::replay(), metrics: m.clone(), error: e.clone() };
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
    Ok(Summary::collect(&metrics, &counters, trend_records, store.as_of()))
}
