//! The semantic parameters of the computation (SPEC section 9), already
//! validated and in milliseconds. The program's config module builds them
//! from TOML; tests build them directly.

use serde::{Deserialize, Serialize};

/// Every number the dataflow's semantics depend on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Granularity of the logical clock (`clock.tick`).
    pub tick_ms: u64,
    /// How far behind the largest ts an event may be (`clock.allowed_lateness`).
    pub allowed_lateness_ms: u64,
    /// Case-insensitive user-agent substrings (`bots.user_agent_patterns`).
    pub user_agent_patterns: Vec<String>,
    /// Events that make a burst (`bots.burst_events`).
    pub burst_events: u32,
    /// The span of a burst (`bots.burst_span`).
    pub burst_span_ms: u64,
    /// The n-th event of one UTC day that flags a user (`bots.daily_max_events`).
    pub daily_max_events: u32,
    /// Largest gap inside a session (`sessions.gap`).
    pub session_gap_ms: u64,
    /// User feature windows, ascending, with their suffixes (`features.windows`).
    pub windows: Vec<Window>,
    /// Adaptive trend widths, ascending (`trends.widths`).
    pub trend_widths_ms: Vec<u64>,
    /// Site-wide events that make a width wide enough (`trends.min_events`).
    pub trend_min_events: u64,
    /// The trend baseline (`trends.baseline`).
    pub baseline_ms: u64,
    /// Entries per trending list (`trends.trending_k`).
    pub trending_k: usize,
    /// Smallest count that may trend (`trends.trending_min_count`).
    pub trending_min_count: u64,
}

/// One user feature window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// The feature-name suffix, as configured (`"1d"`).
    pub name: String,
    /// Its width.
    pub ms: u64,
}

/// One day in ms.
pub const DAY_MS: u64 = 86_400_000;

/// The settings a store and its checkpoints record (SPEC section 11): each
/// section 9 key with its value in a canonical text (durations in ms, lists
/// as JSON), so that two runs agree exactly when these texts are equal.
pub type Settings = std::collections::BTreeMap<String, String>;

impl Params {
    /// This run's [`Settings`].
    pub fn settings(&self) -> Settings {
        let json = |v: serde_json::Value| v.to_string();
        let windows: Vec<(&str, u64)> = self.windows.iter().map(|w| (w.name.as_str(), w.ms)).collect();
        [
            ("clock.tick", self.tick_ms.to_string()),
            ("clock.allowed_lateness", self.allowed_lateness_ms.to_string()),
            ("bots.user_agent_patterns", json(serde_json::json!(self.user_agent_patterns))),
            ("bots.burst_events", self.burst_events.to_string()),
            ("bots.burst_span", self.burst_span_ms.to_string()),
            ("bots.daily_max_events", self.daily_max_events.to_string()),
            ("sessions.gap", self.session_gap_ms.to_string()),
            ("features.windows", json(serde_json::json!(windows))),
            ("trends.widths", json(serde_json::json!(self.trend_widths_ms))),
            ("trends.min_events", self.trend_min_events.to_string()),
            ("trends.baseline", self.baseline_ms.to_string()),
            ("trends.trending_k", self.trending_k.to_string()),
            ("trends.trending_min_count", self.trending_min_count.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Where `stored` (what a store or checkpoint recorded) and `now` (this
/// run's) differ, one line per key: `key: <stored> there, <now> here`
/// (`(unset)` for a key one side lacks). Empty when they agree.
pub fn settings_differ(stored: &Settings, now: &Settings) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = stored.keys().chain(now.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (stored.get(k), now.get(k));
            (a != b).then(|| format!("{k}: {} there, {} here", a.map_or("(unset)", String::as_str), b.map_or("(unset)", String::as_str)))
        })
        .collect()
}

impl Default for Params {
    fn default() -> Self {
        let minute = 60_000;
        let hour = 60 * minute;
        Params {
            tick_ms: 1000,
            allowed_lateness_ms: 5000,
            user_agent_patterns: ["bot", "crawler", "spider", "headless", "curl", "python-requests"]
                .map(String::from)
                .to_vec(),
            burst_events: 20,
            burst_span_ms: 10_000,
            daily_max_events: 2000,
            session_gap_ms: 30 * minute,
            windows: [("1d", 1), ("7d", 7), ("14d", 14), ("30d", 30)]
                .map(|(name, days)| Window { name: name.to_owned(), ms: days * DAY_MS })
                .to_vec(),
            trend_widths_ms: vec![15 * minute, 30 * minute, hour, 2 * hour, 4 * hour, 8 * hour],
            trend_min_events: 1000,
            baseline_ms: 7 * DAY_MS,
            trending_k: 20,
            trending_min_count: 3,
        }
    }
}

impl Params {
    /// The horizon H: the largest user window.
    pub fn horizon_ms(&self) -> u64 {
        self.windows.iter().map(|w| w.ms).max().unwrap_or(0)
    }

    /// How long a user's events are kept: the horizon, or the trend baseline
    /// if longer (a bot's flag retracts its events from every trend window).
    pub fn retention_ms(&self) -> u64 {
        self.horizon_ms().max(self.baseline_ms)
    }

    /// The first tick boundary strictly greater than `ts`: when an event at
    /// `ts` enters a window, and when one at `ts - W` leaves it.
    pub fn tick_after(&self, ts: u64) -> u64 {
        (ts / self.tick_ms + 1) * self.tick_ms
    }

    /// Checks the relations between parameters that the computation relies
    /// on; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.tick_ms == 0 {
            return Err("`clock.tick` must be at least 1ms".into());
        }
        if self.windows.is_empty() {
            return Err("`features.windows` must list at least one window".into());
        }
        if self.windows.len() > 8 {
            return Err("`features.windows` may list at most 8 windows".into());
        }
        for pair in self.windows.windows(2) {
            if pair[0].ms >= pair[1].ms {
                return Err("`features.windows` must be strictly increasing".into());
            }
        }
        if self.trend_widths_ms.is_empty() {
            return Err("`trends.widths` must list at least one width".into());
        }
        for pair in self.trend_widths_ms.windows(2) {
            if pair[0] >= pair[1] {
                return Err("`trends.widths` must be strictly increasing".into());
            }
        }
        let widest = *self.trend_widths_ms.last().unwrap_or(&0);
        if widest >= self.baseline_ms {
            return Err("`trends.widths` must all be shorter than `trends.baseline`".into());
        }
        let narrowest = self.windows[0].ms.min(self.trend_widths_ms[0]);
        if narrowest < self.tick_ms {
            return Err("`features.windows` and `trends.widths` must not be shorter than `clock.tick`".into());
        }
        if self.burst_events == 0 {
            return Err("`bots.burst_events` must be at least 1".into());
        }
        if self.daily_max_events == 0 {
            return Err("`bots.daily_max_events` must be at least 1".into());
        }
        if self.trending_k == 0 {
            return Err("`trends.trending_k` must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_every_key_that_differs() {
        let a = Params::default().settings();
        assert_eq!(a["clock.tick"], "1000");
        assert!(settings_differ(&a, &Params::default().settings()).is_empty());
        let mut p = Params::default();
        p.windows.truncate(1);
        p.tick_ms = 2000;
        let d = settings_differ(&a, &p.settings());
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0], "clock.tick: 1000 there, 2000 here");
        assert!(d[1].starts_with("features.windows: [[\"1d\",86400000],"), "{d:?}");
        let mut old = a.clone();
        old.remove("trends.baseline");
        assert_eq!(settings_differ(&old, &a), [format!("trends.baseline: (unset) there, {} here", a["trends.baseline"])]);
    }
}
