//! One user's state in the user stage ([`crate::user_features`]): the
//! accepted events of the retention period, per-window event and session
//! aggregates, the bot detector, and the SPEC section 5 record rendered
//! from them.
//!
//! State: the events in a deque, 32 bytes each; per window, event
//! aggregates (counts, spend in exact fixed point, hour histogram, product
//! multiset) over a counted range of that deque — each event is added once
//! and removed once per window, found by a cursor; sessions and their
//! per-window aggregates ([`crate::sessions`]). [`UserState::advance`] moves
//! a user to a tick and says when it next changes by itself (a window edge).

use crate::bots::BotDetector;
use crate::event::EventKind;
use crate::intern::{Interner, NONE};
use crate::params::Params;
use crate::sessions::{SessionAgg, Sessions, MAX_WINDOWS};
use crate::spend::Spend;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

/// One accepted event in a user's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ev {
    pub(crate) ts: u64,
    pub(crate) price: f64,
    pub(crate) product: u32,
    pub(crate) category: u32,
    pub(crate) device: u32,
    pub(crate) kind: EventKind,
}

/// Event features of one window.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventAgg {
    counts: [u32; 3],
    spend: Spend,
    hours: [u32; 24],
    products: FxHashMap<u32, u32>,
}

impl EventAgg {
    fn apply(&mut self, e: &Ev, diff: i32) {
        let k = e.kind as usize;
        self.counts[k] = (self.counts[k] as i32 + diff) as u32;
        if e.kind == EventKind::Purchase {
            self.spend.apply(e.price, diff);
        }
        let h = ((e.ts / 3_600_000) % 24) as usize;
        self.hours[h] = (self.hours[h] as i32 + diff) as u32;
        if e.product != NONE {
            if diff > 0 {
                *self.products.entry(e.product).or_insert(0) += 1;
            } else if let Some(c) = self.products.get_mut(&e.product) {
                *c -= 1;
                if *c == 0 {
                    self.products.remove(&e.product);
                }
            }
        }
    }
}

/// Everything kept for one (non-bot) user.
#[derive(Debug, Default)]
pub(crate) struct UserState {
    pub(crate) id: Box<str>,
    pub(crate) events: VecDeque<Ev>,
    /// Absolute index of `events[0]`.
    pub(crate) base: u64,
    /// Absolute index of the first event in the horizon.
    pub(crate) horizon: u64,
    /// Absolute index of the first event not yet applied to windows and sessions.
    pub(crate) applied: u64,
    /// Per window: the counted range of events, absolute indices.
    pub(crate) lo: [u64; MAX_WINDOWS],
    pub(crate) event_aggs: Vec<EventAgg>,
    pub(crate) session_aggs: Vec<SessionAgg>,
    pub(crate) sessions: Sessions,
    pub(crate) last_purchase: Option<u64>,
    pub(crate) bots: BotDetector,
    /// Accepted events ever applied (for the reconciliation of counts).
    pub(crate) total: u64,
    pub(crate) has_record: bool,
    pub(crate) dirty: bool,
    pub(crate) wake: u64,
}

impl UserState {
    pub(crate) fn new(id: &str, windows: usize) -> Self {
        UserState {
            id: id.into(),
            event_aggs: vec![EventAgg::default(); windows],
            session_aggs: vec![SessionAgg::default(); windows],
            ..Default::default()
        }
    }

    pub(crate) fn end(&self) -> u64 {
        self.base + self.events.len() as u64
    }

    pub(crate) fn ev(&self, abs: u64) -> &Ev {
        &self.events[(abs - self.base) as usize]
    }

    /// Moves the user to tick `now`, applying pushed events. Returns the tick
    /// of its next change, `None` when nothing of it is left to keep.
    pub(crate) fn advance(&mut self, now: u64, p: &Params, widths: &[u64], devices: &Interner) -> Option<u64> {
        let smaller = |a: u32, b: u32| devices.name(a) < devices.name(b);
        let end = self.end();
        // New events: into every window (cursors below take out what is already outside) and sessions.
        for abs in self.applied..end {
            let e = self.events[(abs - self.base) as usize];
            for agg in &mut self.event_aggs {
                agg.apply(&e, 1);
            }
            self.sessions.add_event(e.ts, e.kind, e.device, p.session_gap_ms, &mut self.session_aggs, smaller);
        }
        self.applied = end;
        // The horizon cut shrinks the first session.
        let horizon_lo = now.saturating_sub(p.horizon_ms());
        let mut cut = false;
        while self.horizon < end && self.ev(self.horizon).ts < horizon_lo {
            let kind = self.ev(self.horizon).kind;
            self.sessions.drop_first_event(kind, &mut self.session_aggs);
            self.horizon += 1;
            cut = true;
        }
        if cut && self.horizon < end {
            let start = self.ev(self.horizon).ts;
            let mut device = self.ev(self.horizon).device;
            let mut i = self.horizon + 1;
            while i < end && self.ev(i).ts == start {
                if smaller(self.ev(i).device, device) {
                    device = self.ev(i).device;
                }
                i += 1;
            }
            self.sessions.set_front_start(start, device);
        }
        self.sessions.settle(now, widths, &mut self.session_aggs);
        // Events leaving each window.
        for (w, &width) in widths.iter().enumerate() {
            let lo_ts = now.saturating_sub(width);
            let mut lo = self.lo[w].max(self.base);
            while lo < end {
                let e = self.events[(lo - self.base) as usize];
                if e.ts >= lo_ts {
                    break;
                }
                self.event_aggs[w].apply(&e, -1);
                lo += 1;
            }
            self.lo[w] = lo;
        }
        // Retention: keep what a bot flag would have to retract from the trends.
        let keep_lo = now.saturating_sub(p.retention_ms());
        while self.base < self.horizon && self.events.front().is_some_and(|e| e.ts < keep_lo) {
            self.events.pop_front();
            self.base += 1;
        }
        // The next window edge.
        let tick_after = |t: u64| p.tick_after(t);
        let event_exit = widths
            .iter()
            .enumerate()
            .filter(|&(w, _)| self.lo[w] < end)
            .map(|(w, &width)| tick_after(self.ev(self.lo[w]).ts + width))
            .min();
        let retention_exit = self.events.front().filter(|_| self.base < self.horizon).map(|e| tick_after(e.ts + p.retention_ms()));
        let session_exit = self.sessions.next_exit(widths, tick_after);
        let bots_expiry = Some(self.bots.expiry(p)).filter(|&t| t >= now).map(tick_after);
        [event_exit, retention_exit, session_exit, bots_expiry].into_iter().flatten().min()
    }

    pub(crate) fn in_horizon(&self) -> bool {
        self.horizon < self.end()
    }

    /// The SPEC section 5 record as a JSON object.
    pub(crate) fn record(&self, p: &Params, devices: &Interner, horizon_lo: u64) -> String {
        let mut s = String::with_capacity(1600);
        s.push('{');
        for (w, win) in p.windows.iter().enumerate() {
            let ea = &self.event_aggs[w];
            let sa = &self.session_aggs[w];
            let n = win.name.as_str();
            let field = |s: &mut String, name: &str| {
                s.push('"');
                s.push_str(name);
                s.push('_');
                s.push_str(n);
                s.push_str("\":");
            };
            field(&mut s, "views");
            push_u64(&mut s, u64::from(ea.counts[0]));
            s.push(',');
            field(&mut s, "carts");
            push_u64(&mut s, u64::from(ea.counts[1]));
            s.push(',');
            field(&mut s, "purchases");
            push_u64(&mut s, u64::from(ea.counts[2]));
            s.push(',');
            field(&mut s, "spend");
            s.push_str(&json_f64(ea.spend.value()));
            s.push(',');
            field(&mut s, "distinct_products");
            push_u64(&mut s, ea.products.len() as u64);
            s.push(',');
            field(&mut s, "hour_hist");
            s.push('[');
            for (h, &c) in ea.hours.iter().enumerate() {
                if h > 0 {
                    s.push(',');
                }
                push_u64(&mut s, u64::from(c));
            }
            s.push_str("],");
            field(&mut s, "sessions");
            push_u64(&mut s, u64::from(sa.sessions));
            s.push(',');
            field(&mut s, "cart_sessions");
            push_u64(&mut s, u64::from(sa.cart_sessions));
            s.push(',');
            field(&mut s, "purchase_sessions");
            push_u64(&mut s, u64::from(sa.purchase_sessions));
            s.push(',');
            field(&mut s, "session_ms");
            push_u64(&mut s, sa.session_ms);
            s.push(',');
            field(&mut s, "browse_devices");
            write_devices(&mut s, &sa.browse_devices.0, devices);
            s.push(',');
            field(&mut s, "purchase_devices");
            write_devices(&mut s, &sa.purchase_devices.0, devices);
            s.push(',');
        }
        s.push_str("\"last_event_ts\":");
        push_u64(&mut s, self.events.back().map(|e| e.ts).unwrap_or(0));
        s.push_str(",\"last_cart_session_ts\":");
        write_opt(&mut s, self.sessions.last_cart_start());
        s.push_str(",\"last_purchase_ts\":");
        write_opt(&mut s, self.last_purchase.filter(|&t| t >= horizon_lo));
        s.push_str(",\"cart_session_gap_ms\":");
        match self.sessions.cart_session_gap() {
            Some(g) => s.push_str(&json_f64(g)),
            None => s.push_str("null"),
        }
        s.push('}');
        s
    }
}

fn push_u64(s: &mut String, v: u64) {
    s.push_str(itoa::Buffer::new().format(v));
}

fn json_f64(v: f64) -> String {
    serde_json::to_string(&v).unwrap_or_else(|_| "null".into())
}

fn write_opt(s: &mut String, v: Option<u64>) {
    match v {
        Some(v) => push_u64(s, v),
        None => s.push_str("null"),
    }
}

fn write_devices(s: &mut String, counts: &[(u32, u32)], devices: &Interner) {
    let mut named: Vec<(&str, u32)> = counts.iter().map(|&(d, c)| (devices.name(d), c)).collect();
    named.sort_unstable();
    s.push('{');
    for (i, (name, c)) in named.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&serde_json::to_string(name).unwrap_or_default());
        s.push(':');
        push_u64(s, u64::from(*c));
    }
    s.push('}');
}

