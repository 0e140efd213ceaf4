//! The event-time clock of readers (SPEC section 2).
//!
//! A [`Clock`] is one reader's watermark: the largest `ts` of the valid events
//! it has read minus the allowed lateness, raised to a floor when the reader
//! follows the wall clock or other readers. An event with `ts` below the
//! watermark is late. At the end of a finite input the last tick is `A_end`,
//! the first boundary strictly greater than the largest valid, non-late `ts`.
//!
//! [`Readers`] is the clock of one worker's readers (a file is one reader;
//! each Kafka partition is one). Their *low watermark* is the lowest
//! watermark of the readers that hold the clock: the active ones, or, when
//! none is active, every live one. Output tick `A` may close once
//! `A <= floor(low / tick) * tick`: every event with `ts < A` that is still
//! to come is late. A reader marked idle stops holding the others back and
//! follows them (its floor is raised to their low watermark, here and on
//! other workers), so its later events are late or not by the same rule; a
//! finished reader drops out.
//!
//! The worker sends events, and the close marker of each tick it closes, at
//! its capability, which [`Readers::frontier`] keeps at
//! `max(floor(low / tick) * tick, closed + tick)`: never above a tick it may
//! still close, and at most one tick above the `ts` of any event still to
//! come (the stages downstream rely on `ts >= time - tick`). Right after a
//! close it moves past the closed tick, so the tick completes at once.

use crate::params::Params;

/// Verdict on a valid event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// In time: send it.
    OnTime,
    /// Below the watermark: dead-letter it as `late`.
    Late,
}

/// The watermark of one reader.
#[derive(Debug, Clone)]
pub struct Clock {
    lateness: u64,
    max_ts: Option<u64>,
    floor: Option<u64>,
}

impl Clock {
    /// A clock with nothing read.
    pub fn new(params: &Params) -> Self {
        Clock { lateness: params.allowed_lateness_ms, max_ts: None, floor: None }
    }

    /// Classifies a valid event in read order and, if on time, advances the maximum.
    pub fn admit(&mut self, ts: u64) -> Admit {
        match self.watermark() {
            Some(wm) if ts < wm => Admit::Late,
            _ => {
                self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
                Admit::OnTime
            }
        }
    }

    /// The largest ts of the on-time events read.
    pub fn max_ts(&self) -> Option<u64> {
        self.max_ts
    }

    /// The watermark: the largest ts minus the allowed lateness, or the floor if higher.
    pub fn watermark(&self) -> Option<u64> {
        let own = self.max_ts.map(|m| m.saturating_sub(self.lateness));
        match (own, self.floor) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Raises the watermark to at least `wm` (wall clock, or following other readers).
    pub fn raise_floor(&mut self, wm: u64) {
        self.floor = Some(self.floor.map_or(wm, |f| f.max(wm)));
    }

    /// `A_end` of what was read so far: the first boundary strictly above the largest ts.
    pub fn end(&self, tick: u64) -> Option<u64> {
        Some((self.max_ts? / tick + 1) * tick)
    }
}

/// What a reader of a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderState {
    /// Reading: it holds the worker's clock back.
    Active,
    /// Nothing to read for a while: it follows the other readers.
    Idle,
    /// At the end of its input.
    Done,
}

/// What one worker's readers tell the others, so that idle readers anywhere
/// can follow the active ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ActiveLow {
    /// No active reader here.
    NoneActive,
    /// The lowest watermark of the active readers here (`None`: one of them
    /// has read nothing yet, so nobody can follow past 0).
    Low(Option<u64>),
}

impl ActiveLow {
    /// The combined low of two groups of readers: `NoneActive` adds nothing,
    /// an active reader with no watermark yet blocks following.
    pub fn min(self, other: ActiveLow) -> ActiveLow {
        match (self, other) {
            (ActiveLow::NoneActive, x) | (x, ActiveLow::NoneActive) => x,
            (ActiveLow::Low(a), ActiveLow::Low(b)) => ActiveLow::Low(a.zip(b).map(|(a, b)| a.min(b))),
        }
    }
}

/// The clocks of one worker's readers.
#[derive(Debug, Clone)]
pub struct Readers {
    tick: u64,
    clocks: Vec<Clock>,
    states: Vec<ReaderState>,
    closed: u64,
    ended: bool,
    others: ActiveLow,
}

impl Readers {
    /// `n` active readers with nothing read.
    pub fn new(params: &Params, n: usize) -> Self {
        Readers {
            tick: params.tick_ms,
            clocks: vec![Clock::new(params); n],
            states: vec![ReaderState::Active; n],
            closed: 0,
            ended: false,
            others: ActiveLow::NoneActive,
        }
    }

    /// Reader `r`'s clock.
    pub fn clock(&self, r: usize) -> &Clock {
        &self.clocks[r]
    }

    /// Reader `r`'s state.
    pub fn state(&self, r: usize) -> ReaderState {
        self.states[r]
    }

    /// How many readers there are.
    pub fn len(&self) -> usize {
        self.clocks.len()
    }

    /// Whether there are no readers.
    pub fn is_empty(&self) -> bool {
        self.clocks.is_empty()
    }

    /// Classifies a valid event of reader `r`; an idle reader becomes active again.
    pub fn admit(&mut self, r: usize, ts: u64) -> Admit {
        if self.states[r] == ReaderState::Idle {
            self.states[r] = ReaderState::Active;
        }
        self.clocks[r].admit(ts)
    }

    /// Marks live reader `r` idle (it stops holding the others back) or active.
    pub fn set_idle(&mut self, r: usize, idle: bool) {
        if self.states[r] != ReaderState::Done {
            self.states[r] = if idle { ReaderState::Idle } else { ReaderState::Active };
        }
    }

    /// Reader `r` reached the end of its input.
    pub fn finish(&mut self, r: usize) {
        self.states[r] = ReaderState::Done;
    }

    /// Every reader stops without reaching the end (a live run shutting
    /// down): no `A_end` is closed, the output stays as of the last tick.
    pub fn stop(&mut self) {
        self.states.iter_mut().for_each(|s| *s = ReaderState::Done);
        self.ended = true;
    }

    /// Raises every reader's watermark to at least `wm` (the wall clock).
    pub fn raise_floor(&mut self, wm: u64) {
        self.clocks.iter_mut().for_each(|c| c.raise_floor(wm));
    }

    /// Raises reader `r`'s watermark to at least `wm` (the wall clock, for
    /// a reader that has caught up).
    pub fn raise_floor_of(&mut self, r: usize, wm: u64) {
        self.clocks[r].raise_floor(wm);
    }

    /// What the other workers' active readers have passed (their combined
    /// [`ActiveLow`]): idle readers here follow the lowest active reader anywhere.
    pub fn hear(&mut self, others: ActiveLow) {
        self.others = others;
    }

    /// Idle readers follow a watermark `wm` that every active reader has passed.
    fn follow(&mut self, wm: u64) {
        for (c, s) in self.clocks.iter_mut().zip(&self.states) {
            if *s == ReaderState::Idle {
                c.raise_floor(wm);
            }
        }
    }

    /// Whether every reader is done.
    pub fn done(&self) -> bool {
        self.states.iter().all(|s| *s == ReaderState::Done)
    }

    /// The lowest watermark over the readers in `state` (`None` inside: one
    /// has no watermark yet); `None` when there is no such reader.
    fn low_of(&self, holds: impl Fn(ReaderState) -> bool) -> Option<Option<u64>> {
        let mut low: Option<Option<u64>> = None;
        for (c, s) in self.clocks.iter().zip(&self.states) {
            if holds(*s) {
                let wm = c.watermark();
                low = Some(match low {
                    None => wm,
                    Some(l) => l.zip(wm).map(|(a, b)| a.min(b)),
                });
            }
        }
        low
    }

    /// What this worker's active readers tell the other workers.
    pub fn active_low(&self) -> ActiveLow {
        self.low_of(|s| s == ReaderState::Active).map_or(ActiveLow::NoneActive, ActiveLow::Low)
    }

    /// The low watermark of the readers holding the clock: the active ones
    /// (idle ones follow them first), else every live one; `None` when all
    /// are done.
    fn settle(&mut self) -> Option<Option<u64>> {
        if let ActiveLow::Low(Some(wm)) = self.active_low().min(self.others) {
            self.follow(wm);
        }
        match self.active_low() {
            ActiveLow::Low(low) => Some(low),
            ActiveLow::NoneActive => self.low_of(|s| s != ReaderState::Done),
        }
    }

    /// The time to send at: the newest tick boundary at or below the low
    /// watermark (a tick this worker may still close; no later event has a
    /// smaller `ts`), or the tick after the last closed one if later (no later
    /// marker is below it, no later event below the closed tick); `None` when
    /// all readers are done.
    pub fn frontier(&mut self) -> Option<u64> {
        let tick = self.tick;
        let f = self.settle()?.map_or(0, |wm| (wm / tick) * tick);
        Some(f.max(self.closed + tick))
    }

    /// The newest output tick the low watermark has passed, if it moved since the last call.
    pub fn close(&mut self) -> Option<u64> {
        let at = (self.settle()?? / self.tick) * self.tick;
        (at > self.closed).then(|| {
            self.closed = at;
            at
        })
    }

    /// Once every reader is done (and not stopped): `A_end` of what they
    /// read, if beyond the last closed tick. Returns it once.
    pub fn close_end(&mut self) -> Option<u64> {
        if !self.done() || self.ended {
            return None;
        }
        self.ended = true;
        let end = self.clocks.iter().filter_map(|c| c.end(self.tick)).max()?;
        (end > self.closed).then(|| {
            self.closed = end;
            end
        })
    }

    /// The last tick closed.
    pub fn closed(&self) -> u64 {
        self.closed
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
        let p = Params::default();
        let mut r = Readers::new(&p, 1);
        r.admit(0, 100_500);
        assert_eq!(r.close(), Some(95_000), "every ts < 95000 is late from now on");
        assert_eq!(r.frontier(), Some(96_000), "past the closed tick: it completes at once");
        assert_eq!(r.close(), None);
        r.finish(0);
        assert_eq!(r.close_end(), Some(101_000));
        let mut r = Readers::new(&p, 1);
        r.admit(0, 101_000);
        r.finish(0);
        assert_eq!(r.close_end(), Some(102_000), "strictly greater than the max");
    }

    #[test]
    fn the_send_time_never_passes_a_tick_that_may_still_close() {
        let p = Params::default();
        let mut r = Readers::new(&p, 1);
        r.admit(0, 10_500);
        // The watermark is 5500 and nothing is closed yet: tick 5000 may still close.
        let sent_at = r.frontier().unwrap();
        assert_eq!(r.close(), Some(5_000));
        assert!(sent_at <= 5_000, "a marker for 5000 must be sendable at {sent_at}");
        r.admit(0, 10_900);
        let sent_at = r.frontier().unwrap();
        assert_eq!(sent_at, 6_000, "the next marker is for 6000 or later");
        assert_eq!(r.admit(0, 5_499), Admit::Late);
        assert_eq!(r.admit(0, 5_900), Admit::OnTime);
        assert!(5_900 >= sent_at - 1_000, "an event is never more than a tick below its send time");
    }

    #[test]
    fn a_floor_makes_earlier_events_late_and_closes_ticks() {
        let p = Params::default();
        let mut r = Readers::new(&p, 1);
        r.raise_floor(50_500);
        assert_eq!(r.admit(0, 50_499), Admit::Late);
        assert_eq!(r.admit(0, 50_500), Admit::OnTime);
        assert_eq!(r.close(), Some(50_000));
        assert_eq!(r.frontier(), Some(51_000));
        r.finish(0);
        assert_eq!(r.close_end(), Some(51_000), "A_end follows the events, not the floor");
    }

    #[test]
    fn the_slowest_active_reader_holds_the_worker_back() {
        let p = Params::default();
        let mut r = Readers::new(&p, 2);
        assert_eq!(r.frontier(), Some(1_000), "no tick 0 to close");
        r.admit(0, 100_000);
        assert_eq!(r.close(), None, "reader 1 has read nothing");
        assert_eq!(r.frontier(), Some(1_000));
        r.admit(1, 60_000);
        assert_eq!(r.close(), Some(55_000));
        assert_eq!(r.frontier(), Some(56_000));
        assert_eq!(r.admit(0, 94_999), Admit::Late, "lateness is per reader");
        assert_eq!(r.admit(1, 56_000), Admit::OnTime);
        assert_eq!(r.admit(1, 54_999), Admit::Late);
    }

    #[test]
    fn an_idle_reader_follows_and_its_later_events_are_late_by_the_same_rule() {
        let p = Params::default();
        let mut r = Readers::new(&p, 2);
        r.admit(0, 100_000);
        r.admit(1, 20_000);
        assert_eq!(r.close(), Some(15_000));
        r.set_idle(1, true);
        assert_eq!(r.close(), Some(95_000), "reader 1 no longer holds reader 0 back");
        assert_eq!(r.frontier(), Some(96_000));
        assert_eq!(r.admit(1, 94_999), Admit::Late, "it followed reader 0's watermark");
        assert_eq!(r.state(1), ReaderState::Active);
        assert_eq!(r.admit(1, 95_000), Admit::OnTime);
    }

    #[test]
    fn idle_readers_follow_other_workers() {
        let p = Params::default();
        let mut r = Readers::new(&p, 1);
        r.set_idle(0, true);
        assert_eq!(r.active_low(), ActiveLow::NoneActive);
        assert_eq!(r.close(), None);
        r.hear(ActiveLow::Low(None));
        assert_eq!(r.close(), None, "another worker's active reader has read nothing yet");
        r.hear(ActiveLow::Low(Some(30_000)));
        assert_eq!(r.close(), Some(30_000));
        assert_eq!(r.frontier(), Some(31_000));
        r.set_idle(0, false);
        assert_eq!(r.active_low(), ActiveLow::Low(Some(30_000)));
        assert_eq!(r.admit(0, 29_999), Admit::Late);
    }

    #[test]
    fn idle_readers_follow_the_lowest_active_reader_anywhere() {
        let p = Params::default();
        let mut r = Readers::new(&p, 2);
        r.admit(0, 55_000);
        r.set_idle(1, true);
        r.hear(ActiveLow::Low(Some(90_000)));
        assert_eq!(r.close(), Some(50_000), "reader 0 here is the lowest");
        assert_eq!(r.admit(1, 50_000), Admit::OnTime, "reader 1 followed 50000, not 90000");
        let mut r = Readers::new(&p, 1);
        r.set_idle(0, true);
        r.hear(ActiveLow::Low(Some(90_000)).min(ActiveLow::Low(Some(70_000))).min(ActiveLow::NoneActive));
        assert_eq!(r.close(), Some(70_000));
    }

    #[test]
    fn the_end_is_past_the_largest_ts_of_any_reader_once_all_are_done() {
        let p = Params::default();
        let mut r = Readers::new(&p, 3);
        r.admit(0, 10_500);
        r.admit(1, 7_000);
        r.finish(2);
        r.finish(0);
        assert_eq!(r.close_end(), None, "reader 1 is still reading");
        assert_eq!(r.frontier(), Some(2_000), "reader 1 alone holds the frontier now");
        assert_eq!(r.close(), Some(2_000));
        assert_eq!(r.frontier(), Some(3_000));
        r.finish(1);
        assert_eq!(r.frontier(), None);
        assert_eq!(r.close_end(), Some(11_000));
        assert_eq!(r.close_end(), None, "once");
        let mut empty = Readers::new(&p, 1);
        empty.finish(0);
        assert_eq!(empty.close_end(), None, "no valid event: no A_end");
    }

    #[test]
    fn a_stopped_run_closes_no_end() {
        let p = Params::default();
        let mut r = Readers::new(&p, 1);
        r.admit(0, 10_500);
        assert_eq!(r.close(), Some(5_000));
        r.stop();
        assert!(r.done());
        assert_eq!(r.close_end(), None, "a live run stopping is not the end of its input");
        assert_eq!(r.frontier(), None);
    }
}
