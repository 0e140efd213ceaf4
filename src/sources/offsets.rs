//! Which offsets of a partition an output tick reflects, so that they can be
//! committed once the store holds that tick (offsets are committed
//! only after the store holds every tick they fed).
//!
//! A message is reflected by tick `A` when it was dead-lettered or skipped,
//! or its event has `ts < A`. Tick `A` therefore reflects every offset below
//! the first message whose event has `ts >= A` (or below the next offset to
//! read, if there is none). Messages arrive in offset order; a message is
//! only worth remembering if its `ts` is in a later tick than every message
//! before it (an earlier offset with a later-or-equal tick answers every
//! question first), so the state is a chain of (offset, tick) pairs strictly
//! increasing in both: at most one entry per tick between the last closed
//! tick and the largest `ts` read.

use std::collections::VecDeque;

/// The commit position of one partition.
#[derive(Debug, Clone)]
pub struct SafeOffsets {
    tick: u64,
    /// (offset, floor(ts / tick) * tick) of events not yet reflected.
    chain: VecDeque<(i64, u64)>,
    /// The offset after the last message seen.
    next: Option<i64>,
    reported: Option<i64>,
}

impl SafeOffsets {
    /// Nothing read yet; `tick` is the output tick length.
    pub fn new(tick: u64) -> Self {
        SafeOffsets { tick, chain: VecDeque::new(), next: None, reported: None }
    }

    /// A message at `offset` was read; `ts` is its event's, if it is an
    /// on-time event (anything else is reflected as soon as it is read).
    pub fn read(&mut self, offset: i64, ts: Option<u64>) {
        self.next = Some(offset + 1);
        if let Some(ts) = ts {
            let key = ts / self.tick * self.tick;
            if self.chain.back().is_none_or(|&(_, k)| k < key) {
                self.chain.push_back((offset, key));
            }
        }
    }

    /// Tick `at` is closed: the offset everything below which it reflects,
    /// if it moved since the last report.
    pub fn at_close(&mut self, at: u64) -> Option<i64> {
        while self.chain.front().is_some_and(|&(_, k)| k < at) {
            self.chain.pop_front();
        }
        let safe = self.chain.front().map(|&(o, _)| o).or(self.next)?;
        (self.reported.is_none_or(|r| safe > r)).then(|| {
            self.reported = Some(safe);
            safe
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_reflects_offsets_below_the_first_event_at_or_after_it() {
        let mut s = SafeOffsets::new(1000);
        s.read(0, Some(1_500));
        s.read(1, None); // invalid: reflected at once
        s.read(2, Some(3_200));
        s.read(3, Some(2_100)); // out of order, behind offset 2
        s.read(4, Some(5_000));
        assert_eq!(s.at_close(1_000), Some(0), "offset 0 (ts 1500) is not in tick 1000 yet");
        assert_eq!(s.at_close(2_000), Some(2), "offsets 0 and 1 are in");
        assert_eq!(s.at_close(3_000), None, "offset 2 still blocks (ts 3200)");
        assert_eq!(s.at_close(4_000), Some(4));
        assert_eq!(s.at_close(6_000), Some(5), "everything read is reflected");
    }

    #[test]
    fn the_chain_keeps_one_entry_per_tick() {
        let mut s = SafeOffsets::new(1000);
        for o in 0..10_000 {
            s.read(o, Some(10_000 + o as u64 / 10));
        }
        assert_eq!(s.chain.len(), 1, "all ten thousand events are in tick 10000..11000");
        assert_eq!(s.at_close(10_000), Some(0));
        assert_eq!(s.at_close(11_000), Some(10_000));
    }
}
