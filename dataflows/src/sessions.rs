//! Sessions of one user and their per-window aggregates (SPEC sections 4, 5).
//!
//! The user's accepted events in the horizon, in `ts` order, are cut into
//! sessions wherever the gap to the previous event is `> session_gap_ms`. The
//! user stage applies events in `ts` order, so sessions change in only three
//! ways, each O(1):
//!
//! * a new event extends the last session or starts a new one;
//! * an event leaving the horizon shrinks the first session (its `start`,
//!   device, cart and purchase flags follow the remaining events) or removes it;
//! * a session leaves window `W` once `start < A - W`.
//!
//! A session in window `W` (`A - W <= start < A`) is counted in that window's
//! [`SessionAgg`]; each session keeps a bit mask of the windows that count it,
//! so a session about to change is first uncounted from exactly those windows
//! and recounted by [`Sessions::settle`]. Sessions in `W` are a suffix of the
//! list (starts ascend), so one cursor per window finds those leaving it.
//!
//! Ties: a session's device is that of its earliest event, ties on `ts` broken
//! by the smallest device string. State: one [`Session`] (40 bytes) per
//! session in the horizon, plus the indices of the sessions with a cart.

use crate::event::EventKind;
use std::collections::VecDeque;

/// The most feature windows (one bit each in a session's mask).
pub const MAX_WINDOWS: usize = 8;

/// One session.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// First `ts`.
    pub start: u64,
    /// Last `ts`.
    pub end: u64,
    /// Events in the session (within the horizon).
    pub events: u32,
    /// Cart events in it.
    pub carts: u32,
    /// Purchase events in it.
    pub purchases: u32,
    /// Interned device of its earliest event.
    pub device: u32,
    /// Windows that count it.
    mask: u8,
}

/// Device -> count, with no zero entries (the SPEC's device objects).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceCounts(pub Vec<(u32, u32)>);

impl DeviceCounts {
    fn add(&mut self, device: u32, diff: i32) {
        match self.0.iter().position(|&(d, _)| d == device) {
            Some(i) => {
                let c = self.0[i].1 as i32 + diff;
                if c == 0 {
                    self.0.swap_remove(i);
                } else {
                    self.0[i].1 = c as u32;
                }
            }
            None => {
                debug_assert!(diff > 0);
                self.0.push((device, diff as u32));
            }
        }
    }
}

/// Session features of one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionAgg {
    /// `sessions_W`.
    pub sessions: u32,
    /// `cart_sessions_W`.
    pub cart_sessions: u32,
    /// `purchase_sessions_W`.
    pub purchase_sessions: u32,
    /// `session_ms_W`.
    pub session_ms: u64,
    /// `browse_devices_W`.
    pub browse_devices: DeviceCounts,
    /// `purchase_devices_W`.
    pub purchase_devices: DeviceCounts,
}

impl SessionAgg {
    fn apply(&mut self, s: &Session, diff: i32) {
        let d64 = i64::from(diff);
        self.sessions = (self.sessions as i32 + diff) as u32;
        if s.carts > 0 {
            self.cart_sessions = (self.cart_sessions as i32 + diff) as u32;
        }
        let duration = (s.end - s.start) as i64;
        self.session_ms = (self.session_ms as i64 + d64 * duration) as u64;
        if s.purchases > 0 {
            self.purchase_sessions = (self.purchase_sessions as i32 + diff) as u32;
            self.purchase_devices.add(s.device, diff);
        } else {
            self.browse_devices.add(s.device, diff);
        }
    }
}

/// A user's sessions in the horizon.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    list: VecDeque<Session>,
    /// Absolute index of `list[0]`.
    base: u64,
    /// Per window: absolute index of the first session that may be counted.
    cursors: [u64; MAX_WINDOWS],
    /// Absolute indices of the sessions with a cart event, ascending.
    with_cart: VecDeque<u64>,
}

impl Sessions {
    /// Number of sessions in the horizon.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there is no session.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn uncount(s: &mut Session, aggs: &mut [SessionAgg]) {
        for (w, agg) in aggs.iter_mut().enumerate() {
            if s.mask & (1 << w) != 0 {
                agg.apply(s, -1);
            }
        }
        s.mask = 0;
    }

    /// Applies the next event in `ts` order. `smaller(a, b)`: device `a` sorts before `b`.
    pub fn add_event(
        &mut self,
        ts: u64,
        kind: EventKind,
        device: u32,
        gap_ms: u64,
        aggs: &mut [SessionAgg],
        smaller: impl Fn(u32, u32) -> bool,
    ) {
        let (cart, purchase) = (u32::from(kind == EventKind::Cart), u32::from(kind == EventKind::Purchase));
        let idx = self.base + self.list.len() as u64;
        match self.list.back_mut() {
            Some(last) if ts - last.end <= gap_ms => {
                Self::uncount(last, aggs);
                if ts == last.start && smaller(device, last.device) {
                    last.device = device;
                }
                last.end = ts;
                last.events += 1;
                if last.carts == 0 && cart == 1 {
                    self.with_cart.push_back(idx - 1);
                }
                last.carts += cart;
                last.purchases += purchase;
            }
            _ => {
                if cart == 1 {
                    self.with_cart.push_back(idx);
                }
                self.list.push_back(Session { start: ts, end: ts, events: 1, carts: cart, purchases: purchase, device, mask: 0 });
            }
        }
    }

    /// Removes the horizon's first event (of kind `kind`) from the first session.
    /// Returns true if that emptied the session. The caller then calls
    /// [`Sessions::set_front_start`] with the next event, if any remains.
    pub fn drop_first_event(&mut self, kind: EventKind, aggs: &mut [SessionAgg]) -> bool {
        let Some(front) = self.list.front_mut() else { return false };
        Self::uncount(front, aggs);
        front.events -= 1;
        if kind == EventKind::Cart {
            front.carts -= 1;
            if front.carts == 0 && self.with_cart.front() == Some(&self.base) {
                self.with_cart.pop_front();
            }
        }
        if kind == EventKind::Purchase {
            front.purchases -= 1;
        }
        if front.events == 0 {
            self.list.pop_front();
            self.base += 1;
            true
        } else {
            false
        }
    }

    /// Sets the first session's start and device after it lost its first events.
    pub fn set_front_start(&mut self, start: u64, device: u32) {
        if let Some(front) = self.list.front_mut() {
            front.start = start;
            front.device = device;
        }
    }

    /// Counts changed sessions and uncounts those that left a window, as of tick `now`.
    /// `widths[w]` is the width of window `w`.
    pub fn settle(&mut self, now: u64, widths: &[u64], aggs: &mut [SessionAgg]) {
        let all = ((1u16 << widths.len()) - 1) as u8;
        let n = self.list.len();
        let base = self.base;
        let cursors = &mut self.cursors;
        let mut count = |s: &mut Session, idx: u64| {
            for (w, agg) in aggs.iter_mut().enumerate() {
                agg.apply(s, 1);
                cursors[w] = cursors[w].min(idx);
            }
            s.mask = all;
        };
        // New or changed sessions are at the back, or the shrunk first one.
        let mut i = n;
        while i > 0 && self.list[i - 1].mask == 0 {
            i -= 1;
            count(&mut self.list[i], base + i as u64);
        }
        if i > 0 && self.list[0].mask == 0 {
            count(&mut self.list[0], base);
        }
        // Sessions whose start left a window.
        let end = base + n as u64;
        for (w, &width) in widths.iter().enumerate() {
            let lo = now.saturating_sub(width);
            let cursor = &mut self.cursors[w];
            *cursor = (*cursor).max(base);
            while *cursor < end {
                let s = &mut self.list[(*cursor - base) as usize];
                if s.start >= lo {
                    break;
                }
                if s.mask & (1 << w) != 0 {
                    aggs[w].apply(s, -1);
                    s.mask &= !(1 << w);
                }
                *cursor += 1;
            }
        }
    }

    /// The tick at which the next counted session leaves some window.
    pub fn next_exit(&self, widths: &[u64], tick_after: impl Fn(u64) -> u64) -> Option<u64> {
        widths
            .iter()
            .enumerate()
            .filter_map(|(w, &width)| {
                let i = self.cursors[w].max(self.base) - self.base;
                self.list.get(i as usize).map(|s| tick_after(s.start + width))
            })
            .min()
    }

    /// `last_cart_session_ts`: start of the latest session with a cart.
    pub fn last_cart_start(&self) -> Option<u64> {
        self.with_cart.back().map(|&i| self.list[(i - self.base) as usize].start)
    }

    /// `cart_session_gap_ms`: mean gap between consecutive cart sessions' starts.
    pub fn cart_session_gap(&self) -> Option<f64> {
        let n = self.with_cart.len();
        if n < 2 {
            return None;
        }
        let first = self.list[(self.with_cart[0] - self.base) as usize].start;
        let last = self.list[(self.with_cart[n - 1] - self.base) as usize].start;
        Some((last - first) as f64 / (n - 1) as f64)
    }
}
