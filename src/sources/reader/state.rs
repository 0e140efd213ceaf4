//! The state of one worker's readers between activations of the reader
//! operator, with one method per concern: admit a decoded chunk (a verdict
//! per line), align partitions, close a tick, report offsets, gossip.
//!
//! Everything a reader must remember is here, explicit: each reader's clock
//! (largest `ts`, floor) in [`Readers`], each partition's commit position in
//! [`SafeOffsets`], when each last had data (idleness), the lines since the
//! last close (batches), whether dead letters wait for a flush, and what was
//! last told to the other workers.

use super::{Alignment, Pace, ReaderInfo};
use crate::sinks::records::Reason;
use crate::sinks::DeadLetters;
use crate::sources::decode::{Chunk, Decoded};
use crate::sources::offsets::SafeOffsets;
use anyhow::Result;
use clickflow_dataflows::clock::{ActiveLow, Admit, ReaderState, Readers};
use clickflow_dataflows::event::Event;
use clickflow_dataflows::messages::OffsetReport;
use clickflow_dataflows::Params;
use std::time::{Duration, Instant};

/// What becomes of one line.
pub enum Verdict {
    /// A valid, on-time event: into the dataflow.
    Send(Event),
    /// Blank: skipped, not counted.
    Skip,
    /// To the dead letters, with the detail.
    DeadLetter(Reason, String),
}

/// Lines admitted by one activation, by outcome.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Non-blank lines.
    pub read: u64,
    /// Invalid lines.
    pub invalid: u64,
    /// Late events.
    pub late: u64,
    /// Future events.
    pub future: u64,
}

/// `low` rounded down to its tick: the granularity of the gossip, and so of
/// alignment (comparing one worker's exact watermark with another's rounded
/// one could hold both back for good when `max_drift` is below a tick).
fn at_tick(low: ActiveLow, tick: u64) -> ActiveLow {
    match low {
        ActiveLow::Low(Some(wm)) => ActiveLow::Low(Some(wm / tick * tick)),
        other => other,
    }
}

/// One worker's readers.
pub struct Reading {
    tick: u64,
    lateness: u64,
    pace: Pace,
    batch_lines: usize,
    infos: Vec<ReaderInfo>,
    readers: Readers,
    /// Per partitioned reader, the offsets each closed tick reflects.
    safe: Vec<Option<SafeOffsets>>,
    last_data: Vec<Instant>,
    /// Per reader, whether it has read its backlog (SPEC section 2): only
    /// then does the wall-clock floor apply to it, or can it become idle.
    caught_up: Vec<bool>,
    since_close: usize,
    /// Dead letters written since the last flush.
    unflushed: bool,
    /// The active low last gossiped (`None`: nothing told yet).
    told: Option<ActiveLow>,
}

impl Reading {
    /// Readers `infos`, nothing read yet.
    pub fn new(params: &Params, pace: Pace, batch_lines: usize, infos: Vec<ReaderInfo>) -> Reading {
        let tick = params.tick_ms;
        let n = infos.len();
        Reading {
            tick,
            lateness: params.allowed_lateness_ms,
            pace,
            batch_lines,
            safe: infos.iter().map(|i| i.partition.map(|_| SafeOffsets::new(tick))).collect(),
            readers: Readers::new(params, n),
            last_data: vec![Instant::now(); n],
            caught_up: infos.iter().map(|i| !i.backlog).collect(),
            since_close: 0,
            unflushed: false,
            told: None,
            infos,
        }
    }

    /// The pacing of this run.
    pub fn pace(&self) -> &Pace {
        &self.pace
    }

    /// Follows the clocks: the wall clock (in wall mode, for the readers
    /// that have caught up; the others replay their backlog in event time)
    /// and what the other workers' active readers have passed (idle readers
    /// follow them).
    pub fn follow(&mut self, now: u64, heard: ActiveLow) {
        if self.pace.wall.is_some() {
            let floor = now.saturating_sub(self.lateness);
            for r in (0..self.readers.len()).filter(|&r| self.caught_up[r]) {
                self.readers.raise_floor_of(r, floor);
            }
        }
        self.readers.hear(heard);
    }


    /// Whether this batch has its lines (a replay closes a tick per batch).
    pub fn batch_full(&self) -> bool {
        self.since_close >= self.batch_lines
    }

    /// What becomes of one decoded line of reader `r`.
    fn verdict(&mut self, r: usize, decoded: Decoded, now: u64) -> Verdict {
        let event = match decoded {
            Decoded::Blank => return Verdict::Skip,
            Decoded::Invalid(detail) => return Verdict::DeadLetter(Reason::Invalid, detail),
            Decoded::Event(event) => event,
        };
        if let Some(max_future) = self.pace.wall {
            if event.ts > now.saturating_add(max_future) {
                let detail = format!("ts {} is more than {max_future} ms (clock.max_future) after the wall clock {now}", event.ts);
                return Verdict::DeadLetter(Reason::Future, detail);
            }
        }
        match self.readers.admit(r, event.ts) {
            Admit::OnTime => Verdict::Send(event),
            Admit::Late => {
                let clock = self.readers.clock(r);
                let follows = if self.pace.wall.is_some() || self.pace.live { ", or the clock it follows" } else { "" };
                let detail = format!(
                    "ts {} is below the watermark {} (largest ts read {} minus the allowed lateness{follows})",
                    event.ts,
                    clock.watermark().unwrap_or(0),
                    clock.max_ts().unwrap_or(0),
                );
                Verdict::DeadLetter(Reason::Late, detail)
            }
        }
    }

    /// Admits one decoded chunk in read order: events to `send`, the rest to
    /// the dead letters, counts into `tally`. An error (a dead letter that
    /// cannot be written, the source's own error) stops the reading; the
    /// lines before it are admitted.
    pub fn admit_chunk(&mut self, mut chunk: Chunk, now: u64, send: &mut impl FnMut(Event), mut dead: Option<&mut (dyn DeadLetters + '_)>, tally: &mut Tally) -> Result<()> {
        let r = chunk.reader;
        self.since_close += chunk.spans.len();
        if !chunk.spans.is_empty() {
            self.last_data[r] = Instant::now();
            if self.readers.state(r) == ReaderState::Idle {
                self.readers.set_idle(r, false);
            }
        }
        for (i, decoded) in std::mem::take(&mut chunk.decoded).into_iter().enumerate() {
            let offset = chunk.offsets.get(i).copied();
            let verdict = self.verdict(r, decoded, now);
            let ts = match verdict {
                Verdict::Skip => None,
                Verdict::Send(event) => {
                    tally.read += 1;
                    let ts = event.ts;
                    send(event);
                    Some(ts)
                }
                Verdict::DeadLetter(reason, detail) => {
                    tally.read += 1;
                    match reason {
                        Reason::Invalid => tally.invalid += 1,
                        Reason::Late => tally.late += 1,
                        Reason::Future => tally.future += 1,
                    }
                    if let Some(d) = dead.as_mut() {
                        self.unflushed = true;
                        d.write(reason, &detail, &chunk.position(&self.infos[r].name, i), chunk.line(i))?;
                    }
                    // Reflected once its dead letter is written.
                    None
                }
            };
            if let (Some(o), Some(s)) = (offset, self.safe[r].as_mut()) {
                s.read(o, ts);
            }
        }
        // Its lines were backlog, read in event time; the floor applies from
        // the next activation on.
        self.caught_up[r] |= chunk.caught_up;
        if let Some(e) = chunk.error.take() {
            // Not the end of the input: stop, without closing `A_end`.
            return Err(e);
        }
        if chunk.last {
            self.readers.finish(r);
        }
        Ok(())
    }

    /// Marks the readers too far ahead of the lowest active reader anywhere
    /// (`heard`: the other workers'), so that their source waits for the others.
    pub fn align(&self, alignment: &Alignment, heard: ActiveLow) {
        let tick = self.tick;
        let low = at_tick(self.readers.active_low(), tick).min(heard);
        for r in 0..self.readers.len() {
            let wm = self.readers.clock(r).watermark();
            let ahead = match low {
                ActiveLow::Low(Some(low)) => wm.is_some_and(|w| w / tick * tick > low.saturating_add(self.pace.max_drift_ms)),
                // Someone has read nothing yet: those who have wait for it.
                ActiveLow::Low(None) => wm.is_some() && self.readers.state(r) == ReaderState::Active,
                ActiveLow::NoneActive => false,
            };
            alignment.set(r, ahead);
        }
    }

    /// The source gave every chunk it will give (`exhausted`) without a last
    /// one for some reader (it gave up): those readers are done. In a live
    /// run, readers without data for `idle_timeout` become idle, once they
    /// have caught up (a backlog is data to read, however slowly it comes).
    pub fn settle(&mut self, exhausted: bool) {
        if exhausted && !self.readers.done() {
            (0..self.readers.len()).for_each(|r| self.readers.finish(r));
        }
        if self.pace.live {
            let timeout = Duration::from_millis(self.pace.idle_timeout_ms);
            for (r, t) in self.last_data.iter().enumerate() {
                if self.readers.state(r) == ReaderState::Active && self.caught_up[r] && t.elapsed() >= timeout {
                    self.readers.set_idle(r, true);
                }
            }
        }
    }

    /// The tick to close now, if any: when stopping, the newest the
    /// watermark passed (and no `A_end`); at the end of every reader,
    /// `A_end`; else after a full batch, or in a live run whenever the input
    /// is drained, the newest the watermark passed.
    pub fn close_tick(&mut self, stopping: bool, drained: bool) -> Option<u64> {
        let batch_full = self.batch_full();
        if batch_full {
            self.since_close = 0;
        }
        if stopping {
            let at = self.readers.close();
            self.readers.stop();
            at
        } else if self.readers.done() {
            self.readers.close_end()
        } else if batch_full || (self.pace.live && drained) {
            self.readers.close()
        } else {
            None
        }
    }

    /// The offset reports of the partitioned readers for a closed tick, and
    /// once more when the readers end without one (offsets that fed no tick,
    /// e.g. only dead letters, are reflected once the store holds the last
    /// tick). The dead letters of the offsets reported are flushed first.
    pub fn report_offsets(&mut self, closed: Option<u64>, dead: Option<&mut (dyn DeadLetters + '_)>) -> Result<Vec<OffsetReport>> {
        let Some(at) = closed.or(self.readers.done().then(|| self.readers.closed())) else { return Ok(Vec::new()) };
        let mut reports = Vec::new();
        for (info, s) in self.infos.iter().zip(self.safe.iter_mut()) {
            if let (Some(partition), Some(s)) = (info.partition, s.as_mut()) {
                if let Some(offset) = s.at_close(at) {
                    reports.push(OffsetReport { at, partition, offset });
                }
            }
        }
        if !reports.is_empty() && self.unflushed {
            if let Some(d) = dead {
                d.flush()?;
            }
            self.unflushed = false;
        }
        Ok(reports)
    }

    /// What to tell the other workers, if it changed (or when stopping): this
    /// worker's active low at tick granularity, which is all that following
    /// and alignment need (in wall-clock mode the exact value moves on every
    /// wake-up, and each change would wake every other reader in turn).
    pub fn gossip(&mut self, stopping: bool) -> Option<ActiveLow> {
        let active = at_tick(self.readers.active_low(), self.tick);
        (self.told != Some(active) || stopping).then(|| {
            self.told = Some(active);
            active
        })
    }

    /// The time to send at (see [`Readers::frontier`]); `None` once every reader is done.
    pub fn frontier(&mut self) -> Option<u64> {
        self.readers.frontier()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickflow_dataflows::params::DAY_MS;

    const T0: u64 = 1_700_006_400_000; // a day's start

    /// One worker reading two partitions, a day's tick, no drift allowed.
    fn two_partitions() -> Reading {
        let params = Params { tick_ms: DAY_MS, ..Params::default() };
        let infos = (0..2).map(|p| ReaderInfo { name: format!("t:{p}"), partition: Some(p), backlog: true }).collect();
        Reading::new(&params, Pace::replay(0), 100, infos)
    }

    fn ahead(reading: &Reading, heard: ActiveLow) -> [bool; 2] {
        let alignment = Alignment::new(2);
        reading.align(&alignment, heard);
        [alignment.is_ahead(0), alignment.is_ahead(1)]
    }

    #[test]
    fn readers_within_one_tick_are_never_held_back() {
        // Exact watermarks compared with rounded lows would mark both: each
        // is above the start of the tick both are in.
        let mut reading = two_partitions();
        assert_eq!(reading.readers.admit(0, T0 + 5 * 3_600_000), Admit::OnTime);
        assert_eq!(reading.readers.admit(1, T0 + 6 * 3_600_000), Admit::OnTime);
        assert_eq!(ahead(&reading, ActiveLow::NoneActive), [false, false]);
        // Another worker's reader, heard at tick granularity, in the same tick.
        assert_eq!(ahead(&reading, ActiveLow::Low(Some(T0))), [false, false]);
    }

    #[test]
    fn a_reader_a_tick_ahead_waits_and_one_that_read_nothing_holds_the_others() {
        let mut reading = two_partitions();
        reading.readers.admit(0, T0 + DAY_MS + 60_000);
        assert_eq!(ahead(&reading, ActiveLow::NoneActive), [true, false], "partition 1 has read nothing yet");
        reading.readers.admit(1, T0 + 60_000);
        assert_eq!(ahead(&reading, ActiveLow::NoneActive), [true, false], "partition 0 is a tick ahead of partition 1");
        reading.readers.admit(1, T0 + DAY_MS + 30_000);
        assert_eq!(ahead(&reading, ActiveLow::NoneActive), [false, false]);
        assert_eq!(ahead(&reading, ActiveLow::Low(Some(T0))), [true, true], "another worker is a tick behind both");
    }

    #[test]
    fn the_wall_clock_floor_applies_to_a_reader_only_once_it_has_caught_up() {
        let pace = Pace { live: true, wall: Some(60_000), idle_timeout_ms: 0, stop: Default::default(), max_drift_ms: u64::MAX };
        let infos = vec![ReaderInfo { name: "t:0".into(), partition: Some(0), backlog: true }, ReaderInfo { name: "t:1".into(), partition: Some(1), backlog: false }];
        let mut reading = Reading::new(&Params::default(), pace, 100, infos);
        let now = T0 + 9 * DAY_MS;
        reading.readers.admit(0, T0);
        reading.follow(now, ActiveLow::NoneActive);
        assert_eq!(reading.readers.clock(0).watermark(), Some(T0 - 5_000), "the backlog is replayed in event time");
        assert_eq!(reading.readers.clock(1).watermark(), Some(now - 5_000), "an empty partition has nothing to catch up on");
        reading.settle(false);
        assert_eq!(reading.readers.state(0), ReaderState::Active, "a reader with a backlog is never idle");
        assert_eq!(reading.caught_up, [false, true]);
        let mut tally = Tally::default();
        let chunk = Chunk { reader: 0, caught_up: true, ..Chunk::default() };
        reading.admit_chunk(chunk, now, &mut |_| {}, None, &mut tally).unwrap();
        reading.follow(now, ActiveLow::NoneActive);
        assert_eq!(reading.caught_up, [true, true]);
        assert_eq!(reading.readers.clock(0).watermark(), Some(now - 5_000));
    }
}
