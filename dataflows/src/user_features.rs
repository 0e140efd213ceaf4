//! The user stage: bots, sessions and windowed user features (SPEC sections 3-5).
//!
//! Events are exchanged by `user_id`; each worker owns its users. Work is
//! split between two moments:
//!
//! * **Apply**, as soon as the input frontier seals events (every event with
//!   `ts < frontier - tick` has arrived): in `ts` order per user, the bot rules
//!   run, the event joins the user's log, and its trend contributions go out
//!   tagged with the tick it enters at. A bot flag retracts every earlier
//!   contribution of the user (tagged with the tick after its flag time) and
//!   its site-wide counts, and leaves only the user's id: later events are
//!   dropped at the door, O(1).
//! * **Close** output tick `A` (the frontier has passed `A`): every user with
//!   new events, or with a window edge in `(previous tick, A]` (a timer heap
//!   keyed by the next edge), is moved to `A` and its full record (or its
//!   deletion) is emitted; so are this worker's site-wide counts per trend
//!   width, for `w*`.
//!
//! State per user ([`crate::user_state`]): the accepted events of the
//! retention period (the horizon, or the trend baseline if longer), per-window
//! aggregates and sessions, and a bot detector ([`crate::bots`]), kept past
//! the user's events until it can no longer matter; a flagged bot keeps only
//! its id. Cost: O(1) amortized per event and window, plus one record per
//! changed user per output tick.

use crate::event::{Event, EventKind};
use crate::intern::Interner;
use crate::messages::{route_hash, Contribution, EntityKind, FeatureChange, Ingest};
use crate::params::Params;
use crate::slab::Slab;
use crate::user_state::{Ev, UserState};
use crate::windows::WindowLog;
use crate::Counters;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

/// The features of a record that may be null (SPEC section 5); every other
/// feature is a number, an array or an object.
pub const NULLABLE_FEATURES: [&str; 3] = ["last_cart_session_ts", "last_purchase_ts", "cart_session_gap_ms"];

/// What the user stage emits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum UserOut {
    /// A feature row for the sink.
    Feature(FeatureChange),
    /// A trend contribution for the trend stage.
    Trend(Contribution),
    /// This worker's site-wide accepted-event counts per trend width as of `at`.
    Site {
        /// The output tick.
        at: u64,
        /// Counts, one per trend width.
        counts: Vec<i64>,
    },
}

/// One worker's users.
pub struct UserStage {
    params: Params,
    widths: Vec<u64>,
    users: FxHashMap<Box<str>, usize>,
    slots: Slab<UserState>,
    bots: FxHashSet<Box<str>>,
    pending: Vec<Event>,
    /// Trend contributions made since they were last taken.
    contributions: Vec<Contribution>,
    dirty: Vec<usize>,
    deleted: Vec<String>,
    timers: BinaryHeap<Reverse<(u64, usize)>>,
    products: Interner,
    categories: Interner,
    devices: Interner,
    site: WindowLog<()>,
    site_counts: Vec<i64>,
    counters: Arc<Counters>,
}

impl UserStage {
    /// A stage with no users.
    pub fn new(params: Params, counters: Arc<Counters>) -> Self {
        let widths = params.windows.iter().map(|w| w.ms).collect();
        let n = params.trend_widths_ms.len();
        UserStage {
            site: WindowLog::new(params.trend_widths_ms.clone()),
            site_counts: vec![0; n],
            params,
            widths,
            users: FxHashMap::default(),
            slots: Slab::default(),
            bots: FxHashSet::default(),
            pending: Vec::new(),
            contributions: Vec::new(),
            dirty: Vec::new(),
            deleted: Vec::new(),
            timers: BinaryHeap::new(),
            products: Interner::default(),
            categories: Interner::default(),
            devices: Interner::default(),
            counters,
        }
    }

    /// Takes an arriving event; a known bot's is dropped at once.
    pub fn receive(&mut self, e: Event) {
        if self.bots.contains(e.user_id.as_str()) {
            self.counters.bot_events.fetch_add(1, Ordering::Relaxed);
        } else {
            self.pending.push(e);
        }
    }

    fn slot_of(&mut self, id: &str) -> usize {
        if let Some(&s) = self.users.get(id) {
            return s;
        }
        let slot = self.slots.insert(UserState::new(id, self.widths.len()));
        self.users.insert(id.into(), slot);
        slot
    }

    fn remove(&mut self, slot: usize) -> Option<UserState> {
        let state = self.slots.remove(slot)?;
        self.users.remove(&state.id);
        Some(state)
    }

    /// The trend contributions made since the last call, each tagged with
    /// the tick it enters at (at or above the tick of the event that made it).
    pub fn take_contributions(&mut self) -> Vec<Contribution> {
        std::mem::take(&mut self.contributions)
    }

    /// Applies every pending event with `ts < until`, in `ts` order per user:
    /// bot rules, the user's event log, trend contributions (tagged with the
    /// tick the event enters at) and the site-wide log. Windows and records
    /// wait for the next output tick.
    pub fn apply(&mut self, until: u64) {
        if self.pending.is_empty() {
            return;
        }
        let mut keyed: Vec<(usize, u64, usize)> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        let mut later = Vec::new();
        for e in std::mem::take(&mut self.pending) {
            if e.ts >= until {
                later.push(e);
            } else if self.bots.contains(e.user_id.as_str()) {
                self.counters.bot_events.fetch_add(1, Ordering::Relaxed);
            } else {
                let slot = self.slot_of(&e.user_id);
                keyed.push((slot, e.ts, events.len()));
                events.push(e);
            }
        }
        self.pending = later;
        keyed.sort_unstable();
        let p = self.params.clone();
        let mut site_new: Vec<u64> = Vec::with_capacity(keyed.len());
        let mut i = 0;
        while i < keyed.len() {
            let slot = keyed[i].0;
            let j = i + keyed[i..].iter().take_while(|k| k.0 == slot).count();
            let group = &keyed[i..j];
            i = j;
            let state = self.slots.get_mut(slot).expect("slot of a pending user");
            if let Some(flag_ts) = group.iter().find_map(|k| state.bots.observe(k.1, events[k.2].ua_bot, &p)) {
                self.flag_bot(slot, p.tick_after(flag_ts), group.len() as u64);
                continue;
            }
            for k in group {
                let e = std::mem::replace(&mut events[k.2], Event::placeholder());
                let ev = Ev {
                    ts: e.ts,
                    price: e.price,
                    product: self.products.intern_opt(e.product_id.as_deref()),
                    category: self.categories.intern_opt(e.category.as_deref()),
                    device: self.devices.intern(&e.device),
                    kind: e.kind,
                };
                if ev.kind == EventKind::Purchase {
                    state.last_purchase = Some(ev.ts);
                }
                state.events.push_back(ev);
                state.total += 1;
                site_new.push(ev.ts);
                let tag = p.tick_after(e.ts);
                if let Some(cat) = &e.category {
                    self.contributions.push(Contribution { at: tag, kind: EntityKind::Category, id: cat.clone(), ts: e.ts, diff: 1, category: None });
                }
                if let Some(pid) = e.product_id {
                    self.contributions.push(Contribution { at: tag, kind: EntityKind::Product, id: pid, ts: e.ts, diff: 1, category: e.category });
                }
            }
            self.counters.accepted.fetch_add(group.len() as u64, Ordering::Relaxed);
            if !state.dirty {
                state.dirty = true;
                self.dirty.push(slot);
            }
        }
        site_new.sort_unstable();
        let counts = &mut self.site_counts;
        for ts in site_new {
            self.site.push(ts, (), |w, _, d| counts[w] += d);
        }
    }

    /// Closes output tick `at`: applies the events with `ts < at`, moves the
    /// changed users to `at` and emits their records, and this worker's
    /// site-wide counts.
    pub fn close_tick(&mut self, at: u64, out: &mut impl FnMut(UserOut)) {
        self.apply(at);
        let p = self.params.clone();
        for user_id in self.deleted.drain(..) {
            out(UserOut::Feature(FeatureChange { at, user_id, features: None }));
        }
        let counts = &mut self.site_counts;
        self.site.advance(at, |w, _, d| counts[w] += d);
        out(UserOut::Site { at, counts: self.site_counts.clone() });
        // Users with a window edge in (previous tick, at].
        while let Some(&Reverse((t, slot))) = self.timers.peek() {
            if t > at {
                break;
            }
            self.timers.pop();
            if let Some(state) = self.slots.get_mut(slot) {
                if state.wake == t && !state.dirty {
                    state.dirty = true;
                    self.dirty.push(slot);
                }
            }
        }
        let horizon_lo = at.saturating_sub(p.horizon_ms());
        let (mut records, mut sessions) = (0i64, 0i64);
        for slot in std::mem::take(&mut self.dirty) {
            let Some(state) = self.slots.get_mut(slot) else { continue };
            state.dirty = false;
            let sessions_before = state.sessions.len() as i64;
            let wake = state.advance(at, &p, &self.widths, &self.devices);
            sessions += state.sessions.len() as i64 - sessions_before;
            let had = state.has_record;
            if state.in_horizon() {
                let features = state.record(&p, &self.devices, horizon_lo);
                out(UserOut::Feature(FeatureChange { at, user_id: state.id.to_string(), features: Some(features) }));
                state.has_record = true;
            } else if had {
                out(UserOut::Feature(FeatureChange { at, user_id: state.id.to_string(), features: None }));
                state.has_record = false;
            }
            records += i64::from(state.has_record) - i64::from(had);
            match wake {
                Some(t) => {
                    if t != state.wake {
                        state.wake = t;
                        self.timers.push(Reverse((t, slot)));
                    }
                }
                None => {
                    self.remove(slot);
                }
            }
        }
        self.counters.users_with_features.fetch_add(records, Ordering::Relaxed);
        self.counters.sessions.fetch_add(sessions, Ordering::Relaxed);
    }

    /// Flags the user in `slot` as a bot as of tick `at` (the first tick past
    /// its flag time): retracts everything it contributed; its row is deleted
    /// at the next output tick.
    fn flag_bot(&mut self, slot: usize, at: u64, arriving: u64) {
        let Some(state) = self.remove(slot) else { return };
        let p = &self.params;
        let baseline_lo = at.saturating_sub(p.baseline_ms);
        let widest_lo = at.saturating_sub(*p.trend_widths_ms.last().unwrap_or(&0));
        let counts = &mut self.site_counts;
        for e in state.events.iter().filter(|e| e.ts >= baseline_lo) {
            let category = self.categories.name_opt(e.category);
            if let Some(pid) = self.products.name_opt(e.product) {
                self.contributions.push(Contribution { at, kind: EntityKind::Product, id: pid.to_owned(), ts: e.ts, diff: -1, category: category.map(str::to_owned) });
            }
            if let Some(cat) = category {
                self.contributions.push(Contribution { at, kind: EntityKind::Category, id: cat.to_owned(), ts: e.ts, diff: -1, category: None });
            }
            if e.ts >= widest_lo {
                self.site.retract(e.ts, (), |w, _, d| counts[w] += d);
            }
        }
        if state.has_record {
            self.deleted.push(state.id.to_string());
            self.counters.users_with_features.fetch_sub(1, Ordering::Relaxed);
        }
        self.counters.sessions.fetch_sub(state.sessions.len() as i64, Ordering::Relaxed);
        self.counters.accepted.fetch_sub(state.total, Ordering::Relaxed);
        self.counters.bot_events.fetch_add(state.total + arriving, Ordering::Relaxed);
        self.counters.bots_flagged.fetch_add(1, Ordering::Relaxed);
        self.bots.insert(state.id);
    }
}

/// The user stage as an operator: events exchanged by user, outputs at each closed tick.
///
/// Feature records and site counts of tick `A` go out at `A`. Trend
/// contributions go out at the capability held at the input frontier, which
/// is never above their tag (the tick they enter at): an event at time `t`
/// has `ts >= t - tick` (the reader's promise, [`crate::clock`]) and times
/// are tick boundaries, so its tag `tick_after(ts)` is at or above `t`, and
/// `t` at or above the frontier held. The trend stage can therefore rely on
/// frontiers alone: once its frontier passes a tick, every contribution
/// entering at or before that tick has arrived.
pub fn user_features<'s>(
    ingest: StreamVec<'s, u64, Ingest>,
    params: &Params,
    counters: Arc<Counters>,
) -> StreamVec<'s, u64, UserOut> {
    let route = Exchange::new(|item: &Ingest| match item {
        Ingest::Event(e) => route_hash(&e.user_id),
        Ingest::Tick { worker, .. } => u64::from(*worker),
    });
    let mut stage = UserStage::new(params.clone(), counters);
    let tick = params.tick_ms;
    ingest.unary_frontier(route, "UserFeatures", move |cap, _info| {
        // Held at the input frontier: contributions go out at it.
        let mut held = Some(cap);
        let mut ticks: Vec<(u64, Capability<u64>)> = Vec::new();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                for item in data.drain(..) {
                    match item {
                        Ingest::Event(e) => stage.receive(e),
                        // Every reader that closes a tick sends a marker: close it once.
                        Ingest::Tick { at, .. } => {
                            if !ticks.iter().any(|(t, _)| *t == at) {
                                ticks.push((at, cap.delayed(&at, 0)));
                            }
                        }
                    }
                }
            });
            ticks.sort_by_key(|(at, _)| Reverse(*at));
            while ticks.last().is_some_and(|(at, _)| !frontier.less_equal(at)) {
                let Some((at, cap)) = ticks.pop() else { break };
                let mut session = output.session(&cap);
                stage.close_tick(at, &mut |o| session.give(o));
            }
            // Every event with ts < frontier - tick has arrived: apply them now.
            let f = frontier.frontier().first().copied();
            if let Some(f) = f {
                stage.apply(f.saturating_sub(tick));
            }
            let Some(h) = held.as_mut() else { return };
            let contributions = stage.take_contributions();
            if !contributions.is_empty() {
                debug_assert!(contributions.iter().all(|c| c.at >= *h.time()), "a contribution tagged below the held frontier {}", h.time());
                output.session(&*h).give_iterator(contributions.into_iter().map(UserOut::Trend));
            }
            match f {
                Some(f) if *h.time() < f => h.downgrade(&f),
                Some(_) => {}
                None => held = None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const T0: u64 = 1_704_844_800_000; // 2024-01-10T00:00:00Z
    const MIN: u64 = 60_000;

    fn event(user: &str, ts: u64, kind: EventKind, product: Option<&str>, device: &str) -> Event {
        Event {
            ts,
            user_id: user.into(),
            kind,
            product_id: product.map(String::from),
            category: Some("c".into()),
            device: device.into(),
            price: if kind == EventKind::Purchase { 2.5 } else { 0.0 },
            ua_bot: false,
        }
    }

    fn view(user: &str, ts: u64) -> Event {
        event(user, ts, EventKind::View, Some("p"), "mobile")
    }

    /// Closes tick `at`; returns the feature records (None = deleted) and the other outputs.
    fn close(stage: &mut UserStage, at: u64) -> (BTreeMapOut, Vec<Contribution>) {
        let mut records = BTreeMapOut::new();
        let mut trend = Vec::new();
        stage.close_tick(at, &mut |o| match o {
            UserOut::Feature(f) => {
                records.insert(f.user_id, f.features.map(|s| serde_json::from_str(&s).unwrap()));
            }
            UserOut::Trend(_) | UserOut::Site { .. } => {}
        });
        trend.extend(stage.take_contributions());
        (records, trend)
    }

    type BTreeMapOut = std::collections::BTreeMap<String, Option<Value>>;

    fn stage() -> UserStage {
        UserStage::new(Params::default(), Arc::new(Counters::default()))
    }

    #[test]
    fn session_gap_of_exactly_30_min_stays_in_the_session_and_one_ms_more_splits() {
        let mut s = stage();
        for e in [view("same", T0), view("same", T0 + 30 * MIN), view("split", T0), view("split", T0 + 30 * MIN + 1)] {
            s.receive(e);
        }
        let (records, _) = close(&mut s, T0 + 31 * MIN);
        let same = records["same"].as_ref().unwrap();
        assert_eq!(same["sessions_1d"], 1);
        assert_eq!(same["session_ms_1d"], 30 * MIN);
        let split = records["split"].as_ref().unwrap();
        assert_eq!(split["sessions_1d"], 2);
        assert_eq!(split["session_ms_1d"], 0);
    }

    #[test]
    fn event_at_exactly_a_minus_w_is_in_the_window_and_one_ms_earlier_is_not() {
        let day = 86_400_000;
        let at = T0 + 2 * day;
        let mut s = stage();
        s.receive(view("in", at - day));
        s.receive(view("out", at - day - 1));
        let (mut records, _) = close(&mut s, at - day + 1000);
        records.extend(close(&mut s, at).0);
        let inside = records["in"].as_ref().unwrap();
        assert_eq!((inside["views_1d"].as_u64(), inside["views_7d"].as_u64()), (Some(1), Some(1)));
        let outside = records["out"].as_ref().unwrap();
        assert_eq!((outside["views_1d"].as_u64(), outside["views_7d"].as_u64()), (Some(0), Some(1)));
        assert_eq!(outside["sessions_1d"], 0, "its session started before A - 1d");
    }

    #[test]
    fn horizon_cut_moves_the_first_session_start_and_device() {
        let day = 86_400_000;
        let mut s = stage();
        // One session spanning the horizon edge: events every 20 min.
        let start = T0;
        let evs: Vec<Event> = (0..6).map(|i| event("u", start + i * 20 * MIN, if i == 0 { EventKind::Cart } else { EventKind::View }, Some("p"), if i == 1 { "tablet" } else { "mobile" })).collect();
        for e in evs {
            s.receive(e);
        }
        close(&mut s, start + 2 * 60 * MIN);
        // As of start + 30d + 10 min: the first event (the cart) is out of the horizon.
        let (records, _) = close(&mut s, start + 30 * day + 10 * MIN);
        let r = records["u"].as_ref().unwrap();
        assert_eq!(r["sessions_30d"], 1);
        assert_eq!(r["session_ms_30d"], 80 * MIN, "the session now starts at the second event");
        assert_eq!(r["cart_sessions_30d"], 0, "its cart left the horizon");
        assert_eq!(r["browse_devices_30d"], serde_json::json!({"tablet": 1}));
        assert_eq!(r["last_cart_session_ts"], Value::Null);
        assert_eq!(r["views_30d"], 5);
    }

    #[test]
    fn bot_flag_deletes_the_record_and_retracts_earlier_trend_contributions() {
        let counters = Arc::new(Counters::default());
        let mut s = UserStage::new(Params::default(), counters.clone());
        s.receive(view("b", T0));
        s.receive(view("b", T0 + 1000));
        let (records, trend) = close(&mut s, T0 + 2000);
        assert!(records["b"].is_some());
        assert_eq!(trend.iter().filter(|c| c.diff == 1).count(), 4, "product and category per event");
        // 20 events within 10 s: the 20th flags.
        for i in 0..20 {
            s.receive(view("b", T0 + 10_000 + i * 100));
        }
        let (records, trend) = close(&mut s, T0 + 20_000);
        assert_eq!(records["b"], None, "the row is deleted");
        assert_eq!(trend.iter().filter(|c| c.diff == -1).count(), 4, "both earlier events leave both entities");
        assert!(trend.iter().all(|c| c.diff == -1));
        assert_eq!(counters.accepted.load(Ordering::Relaxed), 0);
        assert_eq!(counters.bot_events.load(Ordering::Relaxed), 22);
        assert_eq!(counters.bots_flagged.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_flagged_bot_costs_constant_state_however_many_events_it_sends() {
        let counters = Arc::new(Counters::default());
        let mut s = UserStage::new(Params::default(), counters.clone());
        for i in 0..20 {
            s.receive(event("b", T0 + i, EventKind::View, Some("p"), "x"));
        }
        close(&mut s, T0 + 1000);
        assert_eq!(s.bots.len(), 1);
        for i in 0..200_000u64 {
            s.receive(event("b", T0 + 1000 + i, EventKind::View, Some("p"), "x"));
            assert!(s.pending.is_empty(), "dropped at the door");
        }
        close(&mut s, T0 + 300_000);
        assert!(s.users.is_empty() && s.slots.is_empty());
        assert_eq!(counters.bot_events.load(Ordering::Relaxed), 200_020);
    }

    #[test]
    fn spend_is_exact_after_prices_leave_the_window() {
        let day = 86_400_000;
        let mut s = stage();
        let mut big = event("u", T0, EventKind::Purchase, Some("p"), "d");
        big.price = 1e9 + 0.1;
        let mut small = event("u", T0 + day / 2, EventKind::Purchase, Some("p"), "d");
        small.price = 0.1 + 0.2;
        s.receive(big);
        s.receive(small);
        close(&mut s, T0 + day / 2 + 1000);
        let (records, _) = close(&mut s, T0 + day + 1000);
        let r = records["u"].as_ref().unwrap();
        assert_eq!(r["spend_1d"].as_f64(), Some(0.1 + 0.2), "no residue from the large price");
        assert_eq!(r["purchases_1d"], 1);
    }

    #[test]
    fn spend_of_huge_prices_neither_wraps_nor_overflows() {
        let mut s = stage();
        for (i, price) in [5e18, 5e18, 5e18, 1e300].into_iter().enumerate() {
            let mut e = event("u", T0 + i as u64 * 1000, EventKind::Purchase, Some("p"), "d");
            e.price = price;
            s.receive(e);
        }
        let (records, _) = close(&mut s, T0 + 3000);
        let r = records["u"].as_ref().unwrap();
        assert_eq!(r["spend_1d"].as_f64(), Some(1.5e19), "past 2^63, exactly");
        let (records, _) = close(&mut s, T0 + 4000);
        let spend = records["u"].as_ref().unwrap()["spend_30d"].as_f64().unwrap();
        assert!((spend - 1e300).abs() <= 1e-9 * 1e300, "{spend}");
    }
}
