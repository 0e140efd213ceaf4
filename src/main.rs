//! clickflow: a real-time feature pipeline for e-commerce clickstreams.
//!
//! `clickflow run` replays a file (or the built-in generator), or reads a
//! Kafka topic, through the timely dataflow of `clickflow-dataflows` into the
//! online store (SQLite embedded, Redis in production); `clickflow generate`
//! writes a synthetic workload; `clickflow produce` loads a file into a Kafka
//! topic; `clickflow get` reads features and trends back.

mod cluster;
mod config;
mod generate;
mod get;
mod kafka;
mod metrics;
mod run;
mod sinks;
mod sources;
mod units;
mod workload;

use anyhow::Result;

/// mimalloc: the pipeline allocates many small strings per event; the system
/// allocator spent ~20% of a replay in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use clickflow_dataflows::messages::EntityKind;
use cluster::ClusterFlags;
use config::Config;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "clickflow", version, about = "Real-time clickstream features on timely dataflow")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline: a file, the generator or Kafka into the store (no arguments: the built-in generator into out/).
    Run {
        /// Config file (TOML); defaults apply when omitted.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Events file (.jsonl or .jsonl.gz); default: `input.path`, else the generator.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Output directory; default: `output.dir` (out).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Worker threads per process (timely's -w); default: `cluster.workers`, else `run.workers` (1).
        #[arg(long, short = 'w')]
        workers: Option<usize>,
        /// Processes in the cluster (timely's -n); default: `cluster.processes` (1).
        #[arg(long, short = 'n')]
        processes: Option<usize>,
        /// This process's index in the cluster (timely's -p); default: `cluster.process` (0).
        #[arg(long, short = 'p')]
        process: Option<usize>,
        /// A file of host:port lines, one per process (timely's -h); default: `cluster.addresses` / `cluster.hostfile`.
        #[arg(long)]
        hostfile: Option<PathBuf>,
        /// No progress line.
        #[arg(long)]
        quiet: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// Kafka input: read every partition up to its high-water mark at start, then finish as of A_end.
        #[arg(long)]
        until_end: bool,
    },
    /// Produce a JSON Lines file to a Kafka topic, one message per line in file order.
    Produce {
        /// Config file whose `[kafka]` section names the brokers (and the default topic).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Events file (.jsonl or .jsonl.gz).
        #[arg(long)]
        input: PathBuf,
        /// Topic; default: `kafka.topic`.
        #[arg(long)]
        topic: Option<String>,
        /// Partitions of the topic if it has to be created.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Send messages without a key (default: keyed by `user_id`).
        #[arg(long)]
        no_key: bool,
        /// Messages per second (default: as fast as the broker takes them).
        #[arg(long)]
        rate: Option<f64>,
        /// Set every event's `ts` to the wall clock when it is sent (a live feed for wall-clock mode).
        #[arg(long)]
        retime: bool,
        /// Stop after this many messages.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Write a synthetic clickstream (JSON Lines) from the seeded generator.
    Generate(generate::GenerateArgs),
    /// Read from the store and print JSON.
    Get {
        /// Output directory holding features.db; default: `output.dir` of --config, else out.
        #[arg(long, global = true)]
        out: Option<PathBuf>,
        /// Config file (for `output.dir`).
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        what: GetWhat,
    },
}

#[derive(Subcommand)]
enum GetWhat {
    /// A user's feature record.
    User {
        /// The user id.
        id: String,
    },
    /// A trending list: global (default), categories, or category:<name>.
    Trending {
        /// The list name.
        list: Option<String>,
    },
    /// A trend record.
    Trend {
        /// product or category.
        #[arg(value_parser = ["product", "category"])]
        entity_type: String,
        /// The entity id.
        id: String,
    },
}

fn load(config: Option<&PathBuf>) -> Result<Config> {
    match config {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = dispatch(cli) {
        eprintln!("clickflow: error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let default_run = Command::Run { config: None, input: None, out: None, workers: None, processes: None, process: None, hostfile: None, quiet: false, json: false, until_end: false };
    match cli.command.unwrap_or(default_run) {
        Command::Run { config, input, out, workers, processes, process, hostfile, quiet, json, until_end } => {
            let cfg = load(config.as_ref())?;
            let flags = ClusterFlags { processes, process, hostfile, workers };
            let cluster = cfg.cluster.resolve(flags, cfg.run.workers).map_err(|e| match &config {
                Some(path) => anyhow::anyhow!("config {}: {e}", path.display()),
                None => anyhow::anyhow!("cluster: {e}"),
            })?;
            let target = run::RunTarget {
                input: input.or_else(|| cfg.input.path.clone()),
                out: out.unwrap_or_else(|| cfg.output.dir.clone()),
                cluster,
                progress: cfg.run.progress && !quiet,
                until_end,
            };
            let summary = run::run(&cfg, &target)?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!("{}", summary.render());
                println!("  output            {}", target.out.display());
            }
            Ok(())
        }
        Command::Generate(args) => {
            let cfg = load(args.config.as_ref())?;
            generate::generate(&args, cfg.generator)
        }
        Command::Produce { config, input, topic, partitions, no_key, rate, retime, limit } => {
            let cfg = load(config.as_ref())?;
            if rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
                anyhow::bail!("--rate must be a positive number of messages per second");
            }
            let opts = kafka::produce::ProduceOptions { topic: topic.clone(), partitions, keyed: !no_key, rate, retime, limit };
            let done = kafka::produce::produce(&cfg.kafka, &input, &opts)?;
            eprintln!(
                "clickflow: produced {} messages to `{}` in {:.2} s ({:.0} messages/s)",
                done.messages,
                topic.as_deref().unwrap_or(&cfg.kafka.topic),
                done.seconds,
                done.messages as f64 / done.seconds.max(1e-9)
            );
            Ok(())
        }
        Command::Get { out, config, what } => {
            let cfg = load(config.as_ref())?;
            let sqlite = out.unwrap_or_else(|| cfg.output.dir.clone()).join(run::STORE_FILE);
            let mut store = get::open_store(&cfg, &sqlite)?;
            let what = match &what {
                GetWhat::User { id } => get::What::User(id),
                GetWhat::Trending { list } => get::What::Trending(list.as_deref().unwrap_or("global")),
                GetWhat::Trend { entity_type, id } => get::What::Trend(if entity_type == "category" { EntityKind::Category } else { EntityKind::Product }, id),
            };
            let value = get::get(store.as_mut(), what)?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
    }
}
