//! clickflow: a real-time feature pipeline for e-commerce clickstreams.
//!
//! `clickflow run` replays a file (or the built-in generator) through the
//! timely dataflow of `clickflow-dataflows` into the embedded SQLite store;
//! `clickflow generate` writes a synthetic workload; `clickflow get` reads
//! features and trends back.

mod config;
mod get;
mod metrics;
mod run;
mod sinks;
mod sources;

use anyhow::{Context, Result};

/// mimalloc: the pipeline allocates many small strings per event; the system
/// allocator spent ~20% of a replay in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use config::Config;
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "clickflow", version, about = "Real-time clickstream features on timely dataflow")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Replay events into the store (no arguments: the built-in generator into out/).
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
        /// Worker threads; default: `run.workers` (1).
        #[arg(long)]
        workers: Option<usize>,
        /// No progress line.
        #[arg(long)]
        quiet: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a synthetic clickstream (JSON Lines) from the seeded generator.
    Generate {
        /// Config file whose `[generator]` section is the base.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output file (`-` for stdout); `.gz` compresses.
        #[arg(long, default_value = "-")]
        output: PathBuf,
        /// Human users.
        #[arg(long)]
        users: Option<u64>,
        /// Days of event time.
        #[arg(long)]
        days: Option<u64>,
        /// Mean events per user per day.
        #[arg(long)]
        rate: Option<f64>,
        /// Share of users that are bots (0..1).
        #[arg(long)]
        bot_share: Option<f64>,
        /// Random seed.
        #[arg(long)]
        seed: Option<u64>,
    },
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
    match cli.command.unwrap_or(Command::Run { config: None, input: None, out: None, workers: None, quiet: false, json: false }) {
        Command::Run { config, input, out, workers, quiet, json } => {
            let cfg = load(config.as_ref())?;
            let target = run::RunTarget {
                input: input.or_else(|| cfg.input.path.clone()),
                out: out.unwrap_or_else(|| cfg.output.dir.clone()),
                workers: workers.unwrap_or(cfg.run.workers).max(1),
                progress: cfg.run.progress && !quiet,
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
        Command::Generate { config, output, users, days, rate, bot_share, seed } => {
            let cfg = load(config.as_ref())?;
            let mut g = cfg.generator.clone();
            g.users = users.unwrap_or(g.users);
            g.days = days.unwrap_or(g.days);
            g.events_per_user_day = rate.unwrap_or(g.events_per_user_day);
            g.bot_share = bot_share.unwrap_or(g.bot_share);
            g.seed = seed.unwrap_or(g.seed);
            let mut generator = sources::generator::Generator::new(g).map_err(|e| anyhow::anyhow!("generator: {e}"))?;
            let sink: Box<dyn Write> = if output.as_os_str() == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                let file = std::fs::File::create(&output).with_context(|| format!("cannot create {}", output.display()))?;
                if output.extension().is_some_and(|e| e == "gz") {
                    Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()))
                } else {
                    Box::new(file)
                }
            };
            let mut out = std::io::BufWriter::with_capacity(1 << 20, sink);
            let mut line = Vec::with_capacity(512);
            let mut n = 0u64;
            while generator.next_line(&mut line) {
                line.push(b'\n');
                out.write_all(&line).with_context(|| format!("cannot write {}", output.display()))?;
                line.clear();
                n += 1;
            }
            out.flush().with_context(|| format!("cannot write {}", output.display()))?;
            drop(out);
            eprintln!("clickflow: generated {n} lines");
            Ok(())
        }
        Command::Get { out, config, what } => {
            let cfg = load(config.as_ref())?;
            if cfg.store.kind == config::StoreKind::Redis {
                let value = match what {
                    GetWhat::User { id } => get::redis_store::user(&cfg.redis, &id)?,
                    GetWhat::Trending { list } => get::redis_store::trending(&cfg.redis, list.as_deref().unwrap_or("global"))?,
                    GetWhat::Trend { entity_type, id } => get::redis_store::trend(&cfg.redis, &entity_type, &id)?,
                };
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(());
            }
            let store = out.unwrap_or(cfg.output.dir).join(run::STORE_FILE);
            let value = match what {
                GetWhat::User { id } => get::user(&store, &id)?,
                GetWhat::Trending { list } => get::trending(&store, list.as_deref().unwrap_or("global"))?,
                GetWhat::Trend { entity_type, id } => get::trend(&store, &entity_type, &id)?,
            };
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
    }
}
