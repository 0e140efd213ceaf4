//! Bot detection (SPEC section 3), one user at a time.
//!
//! A [`BotDetector`] sees a user's valid, non-late events in `ts` order (the
//! user stage applies closed ticks in order and sorts each tick's events) and
//! reports the flag time of the first rule to fire:
//!
//! 1. user agent: the event's `ts` when its user agent matched a pattern
//!    (matched once, at decoding, see [`crate::event::UaPatterns`]);
//! 2. burst: the smallest `t` with `burst_events` events in `(t - span, t]`,
//!    which is always an event's `ts`: the one that makes the count;
//! 3. daily volume: the `ts` of the `daily_max_events`-th event of one UTC day.
//!
//! In `ts` order the first event at which any rule holds gives the smallest
//! flag time over all rules, so "first rule to fire" needs no lookahead.
//!
//! State: the `ts` of the last `burst_events - 1` events within the span (a
//! ring buffer) and one day counter — O(burst_events) per user. It outlives
//! the user's events until [`BotDetector::expiry`] (a daily count must survive
//! a quiet stretch longer than the windows). Once flagged, the user stage
//! keeps only the user's id.

use crate::params::{Params, DAY_MS};
use std::collections::VecDeque;

/// Per-user state of the three bot rules.
#[derive(Debug, Clone, Default)]
pub struct BotDetector {
    recent: VecDeque<u64>,
    day: u64,
    day_count: u32,
}

impl BotDetector {
    /// Feeds the next event in `ts` order; returns `Some(ts)` if it flags the user.
    pub fn observe(&mut self, ts: u64, ua_bot: bool, params: &Params) -> Option<u64> {
        if ua_bot {
            return Some(ts);
        }
        // Burst: events with t - span < ts' <= t, t = this event's ts.
        while self.recent.front().is_some_and(|&f| f + params.burst_span_ms <= ts) {
            self.recent.pop_front();
        }
        self.recent.push_back(ts);
        if self.recent.len() >= params.burst_events as usize {
            return Some(ts);
        }
        // Daily volume.
        let day = ts / DAY_MS;
        if day != self.day {
            self.day = day;
            self.day_count = 0;
        }
        self.day_count += 1;
        if self.day_count >= params.daily_max_events {
            return Some(ts);
        }
        None
    }

    /// The time from which this state cannot affect any later event: the end
    /// of the last event's UTC day, or its burst span, whichever is later.
    pub fn expiry(&self, params: &Params) -> u64 {
        let last = self.recent.back().copied().unwrap_or(0);
        ((self.day + 1) * DAY_MS).max(last + params.burst_span_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params { daily_max_events: 10, ..Params::default() }
    }

    fn first_flag(ts: &[u64], ua: &[bool], p: &Params) -> Option<u64> {
        let mut d = BotDetector::default();
        ts.iter().zip(ua.iter().chain(std::iter::repeat(&false))).find_map(|(&t, &u)| d.observe(t, u, p))
    }

    #[test]
    fn burst_at_threshold_flags_and_one_below_does_not() {
        let p = Params::default();
        let hit: Vec<u64> = (0..20).map(|i| 1_000_000 + i * 526).collect(); // spans 9994 ms
        assert_eq!(first_flag(&hit, &[], &p), Some(hit[19]));
        let nineteen = &hit[..19];
        assert_eq!(first_flag(nineteen, &[], &p), None);
        let spans_10s: Vec<u64> = (0..19).map(|i| 1_000_000 + i * 500).chain([1_010_000]).collect();
        assert_eq!(first_flag(&spans_10s, &[], &p), None, "the first event drops out at exactly 10 s");
    }

    #[test]
    fn burst_slides() {
        let p = Params::default();
        let b0 = 5_000_000;
        let mut ts: Vec<u64> = (0..19).map(|i| b0 + i * 500).collect();
        ts.extend((0..5).map(|i| b0 + 10_000 + i * 400));
        // 19 events over 9 s, then 5 more: (t - 10 s, t] first holds 20 at the 21st event.
        let flag = first_flag(&ts, &[], &p).unwrap();
        assert_eq!(flag, b0 + 10_400);
        let naive = ts.iter().copied().find(|&t| ts.iter().filter(|&&x| x + 10_000 > t && x <= t).count() >= 20);
        assert_eq!(Some(flag), naive);
    }

    #[test]
    fn daily_rule_counts_per_utc_day() {
        let p = params();
        let midnight = 19_000 * DAY_MS;
        let ts: Vec<u64> = (0..9).map(|i| midnight - 20 * 60_000 + i * 60_000).chain((0..9).map(|i| midnight + i * 60_000)).collect();
        assert_eq!(first_flag(&ts, &[], &p), None, "18 events, never 10 in one day");
        let ts: Vec<u64> = (0..10).map(|i| midnight + i * 60_000).collect();
        assert_eq!(first_flag(&ts, &[], &p), Some(ts[9]), "the 10th event of the day");
        assert_eq!(first_flag(&ts[..9], &[], &p), None);
    }

    #[test]
    fn user_agent_flags_at_its_event() {
        let p = params();
        assert_eq!(first_flag(&[10, 20, 30], &[false, true, false], &p), Some(20));
    }
}
