//! Run-wide counters, the per-tick write latency histogram, the progress
//! line and the end-of-run summary.
//!
//! Counters are atomics shared by all workers of the process; the histogram
//! (hdrhistogram, microseconds) is written by the store sink only. The
//! progress line is printed to stderr twice a second while stderr is a
//! terminal. The summary's counts reconcile:
//! `read = accepted + invalid + late + future + bot events`.

use clickflow_dataflows::{calendar, Counters};
use hdrhistogram::Histogram;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters of one run.
#[derive(Debug)]
pub struct Metrics {
    /// Non-blank lines read.
    pub lines_read: AtomicU64,
    /// Lines dead-lettered as invalid.
    pub invalid: AtomicU64,
    /// Events dead-lettered as late.
    pub late: AtomicU64,
    /// Events dead-lettered as future (wall clock mode).
    pub future: AtomicU64,
    /// Output ticks written to the store.
    pub ticks_written: AtomicU64,
    /// The store's latest `as_of`.
    pub as_of: AtomicU64,
    /// Source progress: done.
    pub progress_done: AtomicU64,
    /// Source progress: total (0: unknown).
    pub progress_total: AtomicU64,
    /// Per-tick store write latency (tick closed by the dataflow → in the store), µs.
    pub write_latency: Mutex<Histogram<u64>>,
    /// Per tick, how far its `as_of` is behind the wall clock once written, ms
    /// (freshness; meaningful for live runs).
    pub as_of_lag: Mutex<Histogram<u64>>,
    started: Instant,
}

impl Metrics {
    /// Fresh counters; the clock for events/s starts now.
    pub fn new() -> Self {
        Metrics {
            lines_read: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            late: AtomicU64::new(0),
            future: AtomicU64::new(0),
            ticks_written: AtomicU64::new(0),
            as_of: AtomicU64::new(0),
            progress_done: AtomicU64::new(0),
            progress_total: AtomicU64::new(0),
            write_latency: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds")),
            as_of_lag: Mutex::new(Histogram::new_with_bounds(1, MAX_LAG_MS, 3).expect("static histogram bounds")),
            started: Instant::now(),
        }
    }

    /// Records one tick written.
    pub fn record_tick(&self, at: u64, took: Duration) {
        self.ticks_written.fetch_add(1, Ordering::Relaxed);
        self.as_of.store(at, Ordering::Relaxed);
        let us = (took.as_micros() as u64).clamp(1, 3_600_000_000);
        if let Ok(mut h) = self.write_latency.lock() {
            let _ = h.record(us);
        }
        let now = now_ms();
        if let Ok(mut h) = self.as_of_lag.lock() {
            let _ = h.record(now.saturating_sub(at).clamp(1, MAX_LAG_MS));
        }
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// Lags beyond a year (a replay of old events) are recorded as a year.
const MAX_LAG_MS: u64 = 365 * 86_400_000;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Whether a fatal error is recorded already.
pub fn has_error(slot: &FirstError) -> bool {
    slot.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// The first fatal error of a run, shared by the reader, the workers and the
/// store writer; the run fails with it.
pub type FirstError = Arc<Mutex<Option<anyhow::Error>>>;

/// Records `e` unless an earlier error is recorded already.
pub fn record_error(slot: &FirstError, e: anyhow::Error) {
    slot.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
}

/// Prints a progress line to stderr until stopped (only on a terminal).
pub struct Progress {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the progress line if `enabled` and stderr is a terminal.
    pub fn start(metrics: Arc<Metrics>, enabled: bool) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = (enabled && std::io::stderr().is_terminal()).then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    let read = metrics.lines_read.load(Ordering::Relaxed);
                    let (done, total) = (metrics.progress_done.load(Ordering::Relaxed), metrics.progress_total.load(Ordering::Relaxed));
                    // A replay's share read, or a live run's catch-up (its backlog read).
                    let pct = if total > 0 && done < total { format!("{:5.1}% ", 100.0 * done as f64 / total as f64) } else { String::new() };
                    let rate = read as f64 / metrics.elapsed().max(1e-9);
                    eprint!(
                        "\r{pct}{read} lines, {:.0} events/s, as_of {}   ",
                        rate,
                        fmt_ts(metrics.as_of.load(Ordering::Relaxed))
                    );
                    let _ = std::io::stderr().flush();
                }
                eprint!("\r{}\r", " ".repeat(80));
            })
        });
        Progress { stop, handle }
    }

    /// Stops and clears the progress line.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Formats ms since the epoch as RFC 3339 (UTC), for humans; `-` for 0 (no
/// `as_of` yet).
pub fn fmt_ts(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    calendar::format_rfc3339_ms(ms)
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What one process counted; process 0 sums every process's for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessStats {
    /// Non-blank lines read.
    pub lines_read: u64,
    /// Invalid lines.
    pub invalid: u64,
    /// Late events.
    pub late: u64,
    /// Future events.
    pub future: u64,
    /// Accepted events.
    pub accepted: u64,
    /// Events of bots.
    pub bot_events: u64,
    /// Bots flagged.
    pub bots_flagged: u64,
    /// Users with a feature record.
    pub users_with_features: i64,
    /// Sessions.
    pub sessions: i64,
    /// Peak resident memory.
    pub peak_rss_bytes: u64,
    /// Processes counted.
    pub processes: u64,
}

impl ProcessStats {
    /// This process's counts now.
    pub fn of(m: &Metrics, c: &Counters) -> ProcessStats {
        ProcessStats {
            lines_read: m.lines_read.load(Ordering::Relaxed),
            invalid: m.invalid.load(Ordering::Relaxed),
            late: m.late.load(Ordering::Relaxed),
            future: m.future.load(Ordering::Relaxed),
            accepted: c.accepted.load(Ordering::Relaxed),
            bot_events: c.bot_events.load(Ordering::Relaxed),
            bots_flagged: c.bots_flagged.load(Ordering::Relaxed),
            users_with_features: c.users_with_features.load(Ordering::Relaxed),
            sessions: c.sessions.load(Ordering::Relaxed),
            peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
            processes: 1,
        }
    }

    /// Adds another process's counts.
    pub fn add(&mut self, o: &ProcessStats) {
        self.lines_read += o.lines_read;
        self.invalid += o.invalid;
        self.late += o.late;
        self.future += o.future;
        self.accepted += o.accepted;
        self.bot_events += o.bot_events;
        self.bots_flagged += o.bots_flagged;
        self.users_with_features += o.users_with_features;
        self.sessions += o.sessions;
        self.peak_rss_bytes += o.peak_rss_bytes;
        self.processes += o.processes;
    }
}

/// The end-of-run summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Non-blank lines read.
    pub lines_read: u64,
    /// Accepted events (valid, not late, not of a bot).
    pub accepted: u64,
    /// Invalid lines.
    pub invalid: u64,
    /// Late events.
    pub late: u64,
    /// Future events.
    pub future: u64,
    /// Events of users flagged as bots.
    pub bot_events: u64,
    /// Users flagged as bots.
    pub bots_flagged: u64,
    /// Users with a feature record at the end.
    pub users_with_features: i64,
    /// Sessions in users' horizons at the end.
    pub sessions: i64,
    /// Trend records at the end.
    pub trend_records: u64,
    /// Output ticks written.
    pub ticks_written: u64,
    /// The store's final `as_of` (None: no valid event).
    pub as_of: Option<u64>,
    /// Wall time in seconds.
    pub wall_s: f64,
    /// Lines read per second.
    pub events_per_s: f64,
    /// Peak resident memory (summed over the processes of a cluster).
    pub peak_rss_bytes: u64,
    /// Processes whose counts these are.
    pub processes: u64,
    /// This process's index in its cluster, and the cluster's process count.
    pub cluster: (usize, usize),
    /// p50 per-tick write latency, µs.
    pub write_p50_us: u64,
    /// p99 per-tick write latency, µs.
    pub write_p99_us: u64,
    /// Max per-tick write latency, µs.
    pub write_max_us: u64,
    /// Live runs: p50 of how far `as_of` was behind the wall clock when written, ms.
    pub as_of_lag_p50_ms: Option<u64>,
    /// Live runs: its p99, ms.
    pub as_of_lag_p99_ms: Option<u64>,
}

impl Summary {
    /// The summary at the end of a run: the counts of `stats` (this process,
    /// or the whole cluster on process 0), ticks and latencies of `m` (where
    /// the store was written); `live`: report freshness.
    pub fn collect(stats: &ProcessStats, m: &Metrics, trend_records: u64, as_of: Option<u64>, live: bool, cluster: (usize, usize)) -> Summary {
        let wall_s = m.elapsed();
        let (p50, p99, max) = m
            .write_latency
            .lock()
            .map(|h| (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()))
            .unwrap_or_default();
        let lag = m.as_of_lag.lock().ok().filter(|h| live && !h.is_empty()).map(|h| (h.value_at_quantile(0.5), h.value_at_quantile(0.99)));
        Summary {
            lines_read: stats.lines_read,
            accepted: stats.accepted,
            invalid: stats.invalid,
            late: stats.late,
            future: stats.future,
            bot_events: stats.bot_events,
            bots_flagged: stats.bots_flagged,
            users_with_features: stats.users_with_features,
            sessions: stats.sessions,
            trend_records,
            ticks_written: m.ticks_written.load(Ordering::Relaxed),
            as_of,
            wall_s,
            events_per_s: stats.lines_read as f64 / wall_s.max(1e-9),
            peak_rss_bytes: stats.peak_rss_bytes,
            processes: stats.processes,
            cluster,
            write_p50_us: p50,
            write_p99_us: p99,
            write_max_us: max,
            as_of_lag_p50_ms: lag.map(|l| l.0),
            as_of_lag_p99_ms: lag.map(|l| l.1),
        }
    }

    /// Whether the counts reconcile.
    pub fn reconciles(&self) -> bool {
        self.lines_read == self.accepted + self.invalid + self.late + self.future + self.bot_events
    }

    /// The human-readable summary.
    pub fn render(&self) -> String {
        let ok = if self.reconciles() { "reconciled" } else { "DO NOT RECONCILE" };
        let lag = match (self.as_of_lag_p50_ms, self.as_of_lag_p99_ms) {
            (Some(p50), Some(p99)) => format!("\n  as_of behind wall clock p50 {p50} ms, p99 {p99} ms"),
            _ => String::new(),
        };
        let whose = match self.cluster {
            (_, 1) => String::new(),
            (0, n) => format!(": the cluster of {n} processes"),
            (p, n) => format!(": process {p} of {n} only (process 0 reports the cluster; the store is written there)"),
        };
        format!(
            "clickflow run summary{whose}\n\
             \x20 lines read        {:>12}\n\
             \x20   accepted        {:>12}\n\
             \x20   invalid         {:>12}\n\
             \x20   late            {:>12}\n\
             \x20   future          {:>12}\n\
             \x20   bot events      {:>12}   ({ok})\n\
             \x20 bots flagged      {:>12}\n\
             \x20 users w/ features {:>12}\n\
             \x20 sessions          {:>12}\n\
             \x20 trend records     {:>12}\n\
             \x20 ticks written     {:>12}\n\
             \x20 as_of             {}\n\
             \x20 wall time         {:>11.2}s\n\
             \x20 throughput        {:>12.0} events/s\n\
             \x20 peak memory       {:>9.1} MiB{}\n\
             \x20 tick write latency p50 {} µs, p99 {} µs, max {} µs{lag}",
            self.lines_read,
            self.accepted,
            self.invalid,
            self.late,
            self.future,
            self.bot_events,
            self.bots_flagged,
            self.users_with_features,
            self.sessions,
            self.trend_records,
            self.ticks_written,
            self.as_of.map_or("none (no valid event)".to_string(), |a| format!("{a} ({})", fmt_ts(a))),
            self.wall_s,
            self.events_per_s,
            self.peak_rss_bytes as f64 / (1 << 20) as f64,
            if self.processes > 1 { format!(" (over {} processes)", self.processes) } else { String::new() },
            self.write_p50_us,
            self.write_p99_us,
            self.write_max_us,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps() {
        assert_eq!(fmt_ts(1_704_844_800_500), "2024-01-10T00:00:00.500Z");
        assert_eq!(fmt_ts(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(fmt_ts(0), "-");
    }
}
