//! The event-time clock of one reader (SPEC section 2).
//!
//! A reader tracks the largest `ts` of the valid events it has read; an event
//! with `ts < max - allowed_lateness` is late. Output ticks close as the
//! watermark `max - allowed_lateness` rises: tick `A` is closed once every
//! event with `ts < A` must have been read, i.e. `A <= floor(wm / tick) * tick`.
//! At the end of a finite input the last tick is `A_end`, the first boundary
//! strictly greater than the largest valid, non-late `ts`.
//!
//! The reader sends events at its current capability time, which is never
//! above the tick any later event can belong to, and a [`Clock::close`] marker
//! per batch; the stages downstream do all per-tick work at those markers.

use crate::params::Params;

/// Verdict on a valid event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// In time: send it.
    OnTime,
    /// Below the watermark: dead-letter it as `late`.
    Late,
}

/// The watermark and output ticks of one reader.
#[derive(Debug, Clone)]
pub struct Clock {
    tick: u64,
    lateness: u64,
    max_ts: Option<u64>,
    closed: u64,
}

impl Clock {
    /// A clock with nothing read.
    pub fn new(params: &Params) -> Self {
        Clock { tick: params.tick_ms, lateness: params.allowed_lateness_ms, max_ts: None, closed: 0 }
    }

    /// Classifies a valid event in read order and, if on time, advances the maximum.
    pub fn admit(&mut self, ts: u64) -> Admit {
        match self.max_ts {
            Some(max) if ts < max.saturating_sub(self.lateness) && max >= self.lateness => Admit::Late,
            _ => {
                self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
                Admit::OnTime
            }
        }
    }

    /// The largest valid, non-late `ts` read so far.
    pub fn max_ts(&self) -> Option<u64> {
        self.max_ts
    }

    /// The watermark: the largest ts minus the allowed lateness.
    pub fn watermark(&self) -> Option<u64> {
        self.max_ts.map(|m| m.saturating_sub(self.lateness))
    }

    /// The lowest tick any later event can belong to: the time to send at.
    pub fn frontier(&self) -> u64 {
        match self.max_ts {
            Some(max) => (max.saturating_sub(self.lateness) / self.tick) * self.tick + self.tick,
            None => 0,
        }
    }

    /// The newest output tick closed by the watermark, if it moved since the last call.
    pub fn close(&mut self) -> Option<u64> {
        let max = self.max_ts?;
        if max < self.lateness {
            return None;
        }
        let at = ((max - self.lateness) / self.tick) * self.tick;
        (at > self.closed).then(|| {
            self.closed = at;
            at
        })
    }

    /// At the end of a finite input: `A_end`, if it is beyond the last closed tick.
    pub fn close_end(&mut self) -> Option<u64> {
        let end = (self.max_ts? / self.tick + 1) * self.tick;
        (end > self.closed).then(|| {
            self.closed = end;
            end
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_is_strictly_below_max_minus_lateness() {
        let mut c = Clock::new(&Params::default());
        assert_eq!(c.admit(100_000), Admit::OnTime);
        assert_eq!(c.admit(95_000), Admit::OnTime, "ts == max - 5000 is on time");
        assert_eq!(c.admit(94_999), Admit::Late);
        assert_eq!(c.max_ts(), Some(100_000));
    }

    #[test]
    fn ticks_close_behind_the_watermark_and_end_past_the_max() {
        let mut c = Clock::new(&Params::default());
        c.admit(100_500);
        assert_eq!(c.close(), Some(95_000), "every ts < 95000 is late from now on");
        assert_eq!(c.frontier(), 96_000);
        assert_eq!(c.close(), None);
        assert_eq!(c.close_end(), Some(101_000));
        let mut c = Clock::new(&Params::default());
        c.admit(101_000);
        assert_eq!(c.close_end(), Some(102_000), "strictly greater than the max");
    }
}
