//! The TOML config file: SPEC section 9 keys plus clickflow's own sections.
//!
//! Every section and key is optional and defaults as in the SPEC. Unknown keys
//! and bad values are errors that name the key in backticks (the path comes
//! from `serde_path_to_error`), and relations between keys (widths shorter
//! than the baseline, ...) are checked by [`Params::check`].

use crate::units::Duration;
use crate::workload::GeneratorConfig;
use anyhow::{anyhow, Context, Result};
use clickflow_dataflows::params::{Params, Window};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `[clock]`: event time, lateness and ticks (SPEC section 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockConfig {
    /// Granularity of the logical clock; outputs exist as of multiples of it.
    pub tick: Duration,
    /// How far behind a reader's largest ts an event may be before it is late.
    pub allowed_lateness: Duration,
    /// `"event"` (replays) or `"wall"` (live sources: the watermark follows the wall clock too).
    pub mode: ClockMode,
    /// In wall mode, events further than this in the future are dead-lettered (`future`).
    pub max_future: Duration,
    /// A reader idle this long stops holding the clock back.
    pub idle_timeout: Duration,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            tick: Duration::ms(1000),
            allowed_lateness: Duration::ms(5000),
            mode: ClockMode::Event,
            max_future: Duration::ms(60_000),
            idle_timeout: Duration::ms(10_000),
        }
    }
}

/// Which clock drives the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// Event time only.
    Event,
    /// Event time, and at least the wall clock minus the lateness.
    Wall,
}

/// `[bots]`: the three bot rules (SPEC section 3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BotsConfig {
    /// Case-insensitive user-agent substrings that flag a user.
    pub user_agent_patterns: Vec<String>,
    /// This many events within `burst_span` flag a user.
    pub burst_events: u32,
    /// The span of a burst.
    pub burst_span: Duration,
    /// The n-th event of one UTC day flags a user.
    pub daily_max_events: u32,
}

impl Default for BotsConfig {
    fn default() -> Self {
        let p = Params::default();
        BotsConfig {
            user_agent_patterns: p.user_agent_patterns,
            burst_events: p.burst_events,
            burst_span: Duration::ms(p.burst_span_ms),
            daily_max_events: p.daily_max_events,
        }
    }
}

/// `[sessions]` (SPEC section 4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// A gap longer than this starts a new session.
    pub gap: Duration,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig { gap: Duration::ms(1_800_000) }
    }
}

/// `[features]` (SPEC section 5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturesConfig {
    /// Lookback windows, ascending; each string is also the feature suffix.
    pub windows: Vec<String>,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig { windows: ["1d", "7d", "14d", "30d"].map(String::from).to_vec() }
    }
}

/// `[trends]` (SPEC section 6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrendsConfig {
    /// Candidate short-window widths, ascending.
    pub widths: Vec<Duration>,
    /// Site-wide accepted events a width needs to be chosen.
    pub min_events: u64,
    /// The baseline window.
    pub baseline: Duration,
    /// Entries per trending list.
    pub trending_k: usize,
    /// Smallest count that may trend.
    pub trending_min_count: u64,
}

impl Default for TrendsConfig {
    fn default() -> Self {
        let p = Params::default();
        TrendsConfig {
            widths: p.trend_widths_ms.iter().map(|&ms| Duration::ms(ms)).collect(),
            min_events: p.trend_min_events,
            baseline: Duration::ms(p.baseline_ms),
            trending_k: p.trending_k,
            trending_min_count: p.trending_min_count,
        }
    }
}

/// Lines per replay batch unless `input.batch_lines` says otherwise: each
/// batch closes one output tick, whose changed rows are all written, so fewer,
/// larger ticks make replays cheaper (a live source closes every tick).
pub const DEFAULT_BATCH_LINES: usize = 1 << 20;

/// Where events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// A JSON Lines file (`input.path` or `--input`).
    File,
    /// The built-in generator (`[generator]`).
    Generator,
    /// A Kafka topic (`[kafka]`).
    Kafka,
}

/// `[input]`: where events come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// `"file"`, `"generator"` or `"kafka"`; default: a file when `path` (or
    /// `--input`) is given, else the generator.
    pub kind: Option<InputKind>,
    /// A JSON Lines file (`.gz` for gzip); when unset and no `--input` is given, the built-in generator.
    pub path: Option<PathBuf>,
    /// Lines per replay batch; each batch closes the output ticks its watermark passed (default 1048576).
    pub batch_lines: Option<usize>,
    /// Threads decoding JSON in parallel for the reader (default: `run.workers`).
    pub decoders: Option<usize>,
    /// With several readers (Kafka partitions), one whose watermark is this
    /// far ahead of the lowest waits for the others (watermark alignment).
    pub max_drift: Duration,
}

/// Where a stream of records (trend deltas, dead letters) goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamSink {
    /// A JSON Lines file in `output.dir`.
    #[default]
    Jsonl,
    /// A Kafka topic (`kafka.trend_deltas_topic`, `kafka.dead_letter_topic`).
    Kafka,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig { kind: None, path: None, batch_lines: None, decoders: None, max_drift: Duration::ms(10_000) }
    }
}

/// `[output]`: where results go besides the online store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Directory for `features.db` and the JSON Lines sinks.
    pub dir: PathBuf,
    /// Trend deltas: `"jsonl"` (`trend-deltas.jsonl`) or `"kafka"`.
    pub trend_deltas: StreamSink,
    /// Dead letters: `"jsonl"` (`dead-letters.jsonl`) or `"kafka"`.
    pub dead_letters: StreamSink,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { dir: PathBuf::from("out"), trend_deltas: StreamSink::Jsonl, dead_letters: StreamSink::Jsonl }
    }
}

/// `[store]`: which online store the run writes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `"sqlite"` (embedded, `output.dir/features.db`) or `"redis"` (`[redis]`).
    pub kind: StoreKind,
}

/// The online store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One SQLite file.
    #[default]
    Sqlite,
    /// A Redis server.
    Redis,
}

/// `[run]`: how the process runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Timely worker threads in this process.
    pub workers: usize,
    /// Show a progress line on a terminal.
    pub progress: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { workers: 1, progress: true }
    }
}

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[clock]`.
    pub clock: ClockConfig,
    /// `[bots]`.
    pub bots: BotsConfig,
    /// `[sessions]`.
    pub sessions: SessionsConfig,
    /// `[features]`.
    pub features: FeaturesConfig,
    /// `[trends]`.
    pub trends: TrendsConfig,
    /// `[input]`.
    pub input: InputConfig,
    /// `[output]`.
    pub output: OutputConfig,
    /// `[run]`.
    pub run: RunConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[redis]`.
    pub redis: crate::sinks::redis::RedisConfig,
    /// `[kafka]`.
    pub kafka: crate::kafka::KafkaConfig,
    /// `[cluster]`.
    pub cluster: crate::cluster::ClusterConfig,
    /// `[generator]`: the built-in workload.
    pub generator: GeneratorConfig,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        Config::parse(&text).map_err(|e| anyhow!("config {}: {e}", path.display()))
    }

    /// Parses and validates config text; the error names the key.
    pub fn parse(text: &str) -> Result<Config, String> {
        let de = toml::Deserializer::parse(text).map_err(|e| format!("not valid TOML: {}", e.message()))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.message().to_string();
            if path == "." {
                msg
            } else {
                format!("`{path}`: {msg}")
            }
        })?;
        config.params()?;
        config.redis.check()?;
        config.kafka.check()?;
        config.cluster.check()?;
        if config.input.kind == Some(InputKind::Kafka) && config.input.path.is_some() {
            return Err("`input.path` is set but `input.kind` is \"kafka\": remove one".into());
        }
        if config.input.kind == Some(InputKind::Generator) && config.input.path.is_some() {
            return Err("`input.path` is set but `input.kind` is \"generator\": remove one".into());
        }
        if config.run.workers == 0 {
            return Err("`run.workers` must be at least 1".into());
        }
        if config.input.decoders == Some(0) {
            return Err("`input.decoders` must be at least 1".into());
        }
        if config.input.batch_lines == Some(0) {
            return Err("`input.batch_lines` must be at least 1".into());
        }
        Ok(config)
    }

    /// The dataflow's parameters.
    pub fn params(&self) -> Result<Params, String> {
        let mut windows = Vec::new();
        for (i, name) in self.features.windows.iter().enumerate() {
            let ms = Duration::parse(name).map_err(|e| format!("`features.windows[{i}]`: {e}"))?.ms;
            if ms == 0 {
                return Err(format!("`features.windows[{i}]` must be longer than 0"));
            }
            windows.push(Window { name: name.clone(), ms });
        }
        let params = Params {
            tick_ms: self.clock.tick.ms,
            allowed_lateness_ms: self.clock.allowed_lateness.ms,
            user_agent_patterns: self.bots.user_agent_patterns.clone(),
            burst_events: self.bots.burst_events,
            burst_span_ms: self.bots.burst_span.ms,
            daily_max_events: self.bots.daily_max_events,
            session_gap_ms: self.sessions.gap.ms,
            windows,
            trend_widths_ms: self.trends.widths.iter().map(|d| d.ms).collect(),
            trend_min_events: self.trends.min_events,
            baseline_ms: self.trends.baseline.ms,
            trending_k: self.trends.trending_k,
            trending_min_count: self.trends.trending_min_count,
        };
        params.check()?;
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_spec_default() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.params().unwrap(), Params::default());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[clock]\ntick = \"1x\"", "`clock.tick`"),
            ("[clock]\ntik = \"1s\"", "tik"),
            ("[trends]\nwidths = [\"15m\", \"bad\"]", "`trends.widths[1]`"),
            ("[trends]\nbaseline = \"1h\"", "`trends.widths`"),
            ("[features]\nwindows = [\"1d\", \"x\"]", "`features.windows[1]`"),
            ("[bots]\nburst_events = -1", "`bots.burst_events`"),
            ("[clock]\nmode = \"sundial\"", "`clock.mode`"),
            ("[run]\nworkers = 0", "`run.workers`"),
            ("[nope]\n", "nope"),
            ("[store]\nkind = \"postgres\"", "`store.kind`"),
            ("[redis]\nurl = \"http://x\"", "`redis.url`"),
            ("[input]\nkind = \"ftp\"", "`input.kind`"),
            ("[input]\nkind = \"kafka\"\npath = \"x.jsonl\"", "`input.path`"),
            ("[output]\ntrend_deltas = \"s3\"", "`output.trend_deltas`"),
            ("[kafka]\nbrokers = 9092", "`kafka.brokers`"),
            ("[cluster]\nprocesses = 2\nprocess = 2", "`cluster.process`"),
            ("[cluster]\naddresses = [\"localhost\"]", "`cluster.addresses[0]`"),
            ("[cluster]\nprocs = 2", "procs"),
            ("[kafka]\ntopic = \"a b\"", "`kafka.topic`"),
            ("[kafka.consumer]\n\"enable.auto.commit\" = \"true\"", "`kafka.consumer.\"enable.auto.commit\"`"),
        ];
        for (text, key) in cases {
            let err = Config::parse(text).unwrap_err();
            assert!(err.contains(key), "{text:?} -> {err}");
        }
    }

    #[test]
    fn every_shipped_config_parses() {
        fn walk(dir: &Path, n: &mut usize) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, n);
                } else if path.extension().is_some_and(|e| e == "toml") {
                    let config = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                    if config.cluster.processes > 1 {
                        // Relative hostfiles are relative to the repository, where clickflow runs.
                        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
                        let hostfile = config.cluster.hostfile.as_ref().map(|h| root.join(h));
                        config.cluster.resolve(crate::cluster::ClusterFlags { hostfile, ..Default::default() }, config.run.workers).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    }
                    *n += 1;
                }
            }
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        walk(&dir, &mut n);
        assert!(n >= 4, "only {n} configs in {}", dir.display());
    }
}
