//! Sliding-window counts over a time-ordered log (SPEC section 2).
//!
//! A [`WindowLog`] counts entries, per key, in several windows at once: as of
//! tick `A`, window `w` holds the live entries with `A - w <= ts < A`. Entries
//! are pushed in nondecreasing `ts` order (the dataflow applies ticks in
//! order), each counted in every window at once; [`WindowLog::advance`] then
//! moves one cursor per window past the entries that have left it. So an entry
//! costs one push, one visit per window and one pop: O(windows) per entry,
//! whatever the window lengths.
//!
//! [`WindowLog::retract`] removes an earlier entry (a bot's event, SPEC
//! section 3): it is found by binary search on `ts`, marked dead, and
//! uncounted from the windows whose cursor has not passed it yet; cursors skip
//! dead entries. Entries are forgotten once the widest window's cursor passes
//! them. All counts changes are reported through a callback, so owners keep
//! their own per-key counters.

use std::collections::VecDeque;

/// One logged entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry<K> {
    ts: u64,
    key: K,
    alive: bool,
}

/// Counts of keyed entries in several sliding windows.
#[derive(Debug, Clone)]
pub struct WindowLog<K> {
    widths: Vec<u64>,
    entries: VecDeque<Entry<K>>,
    /// Absolute index of `entries[0]`.
    base: u64,
    /// Per window: the absolute index of the first entry still counted.
    cursors: Vec<u64>,
}

impl<K: Copy + PartialEq> WindowLog<K> {
    /// A log counting in the given windows (any order; indices are kept).
    pub fn new(widths: Vec<u64>) -> Self {
        let n = widths.len();
        WindowLog { widths, entries: VecDeque::new(), base: 0, cursors: vec![0; n] }
    }

    /// The number of entries retained.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is retained.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends an entry, counting it in every window (`changed(window, key, +1)`).
    /// `ts` must not be below the previous entry's.
    pub fn push(&mut self, ts: u64, key: K, mut changed: impl FnMut(usize, K, i64)) {
        debug_assert!(self.entries.back().is_none_or(|e| e.ts <= ts));
        self.entries.push_back(Entry { ts, key, alive: true });
        for w in 0..self.widths.len() {
            changed(w, key, 1);
        }
    }

    /// Removes one live entry `(ts, key)`, uncounting it from the windows that
    /// still hold it. Returns false if there is none (it already left every window).
    pub fn retract(&mut self, ts: u64, key: K, mut changed: impl FnMut(usize, K, i64)) -> bool {
        let start = self.entries.partition_point(|e| e.ts < ts);
        let found = (start..self.entries.len())
            .take_while(|&i| self.entries[i].ts == ts)
            .find(|&i| self.entries[i].alive && self.entries[i].key == key);
        let Some(i) = found else { return false };
        self.entries[i].alive = false;
        let abs = self.base + i as u64;
        for (w, &cursor) in self.cursors.iter().enumerate() {
            if cursor <= abs {
                changed(w, key, -1);
            }
        }
        true
    }

    /// Moves every window to tick `now`: entries with `ts < now - width` leave it.
    pub fn advance(&mut self, now: u64, mut changed: impl FnMut(usize, K, i64)) {
        let end = self.base + self.entries.len() as u64;
        for (w, &width) in self.widths.iter().enumerate() {
            let lo = now.saturating_sub(width);
            let cursor = &mut self.cursors[w];
            while *cursor < end {
                let e = &self.entries[(*cursor - self.base) as usize];
                if e.ts >= lo {
                    break;
                }
                if e.alive {
                    changed(w, e.key, -1);
                }
                *cursor += 1;
            }
        }
        let keep_from = self.cursors.iter().copied().min().unwrap_or(end);
        while self.base < keep_from {
            self.entries.pop_front();
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A from-scratch count of live entries with `now - w <= ts < now`.
    fn naive(entries: &[(u64, u8, bool)], widths: &[u64], now: u64) -> Vec<[i64; 3]> {
        widths
            .iter()
            .map(|&w| {
                let mut c = [0i64; 3];
                for &(ts, k, alive) in entries {
                    if alive && ts + w >= now && ts < now {
                        c[k as usize] += 1;
                    }
                }
                c
            })
            .collect()
    }

    #[test]
    fn entry_leaves_at_first_tick_after_ts_plus_width() {
        let mut log = WindowLog::new(vec![10]);
        let mut count = 0i64;
        log.push(5, (), |_, _, d| count += d);
        log.advance(15, |_, _, d| count += d);
        assert_eq!(count, 1, "ts 5 is inside [15 - 10, 15)");
        log.advance(16, |_, _, d| count += d);
        assert_eq!(count, 0, "ts 5 is outside [16 - 10, 16)");
    }

    #[test]
    fn incremental_counts_equal_recomputation() {
        let widths = vec![7, 30, 100];
        let mut log = WindowLog::new(widths.clone());
        let mut counts = vec![[0i64; 3]; 3];
        let mut all: Vec<(u64, u8, bool)> = Vec::new();
        let mut state = 99u64;
        let mut rnd = |m: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        let mut now = 0;
        for _ in 0..400 {
            let next = now + 1 + rnd(5);
            for _ in 0..rnd(4) {
                let ts = now + rnd(next - now);
                all.push((ts, rnd(3) as u8, true));
            }
            let tail = all.len() - all.iter().rev().take_while(|e| e.0 >= now).count();
            all[tail..].sort_by_key(|e| e.0);
            for &(ts, k, _) in &all[tail..] {
                log.push(ts, k, |w, k, d| counts[w][k as usize] += d);
            }
            if rnd(3) == 0 && !all.is_empty() {
                let i = rnd(all.len() as u64) as usize;
                if all[i].2 {
                    let (ts, k, _) = all[i];
                    if log.retract(ts, k, |w, k, d| counts[w][k as usize] += d) {
                        all[i].2 = false;
                    } else {
                        assert!(ts + 100 < now, "only entries gone from every window are missing");
                        all[i].2 = false;
                    }
                }
            }
            now = next;
            log.advance(now, |w, k, d| counts[w][k as usize] += d);
            assert_eq!(counts, naive(&all, &widths, now), "at {now}");
        }
    }
}
