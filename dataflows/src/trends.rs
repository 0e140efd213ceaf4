//! The trend stage (SPEC section 6): adaptive width, per-entity counts, scores.
//!
//! * **Width.** Every user worker sends, per output tick, its share of the
//!   site-wide accepted-event counts per trend width; [`trend_width`] (one
//!   worker) sums them once the tick is closed and broadcasts `w*`: the
//!   smallest width with at least `trend_min_events`, else the largest.
//! * **Counts.** Contributions are exchanged by entity and applied once the
//!   frontier passes their tag (the tick their event enters at): the user
//!   stage sends each one at a timely time at or below its tag, so a frontier
//!   past a tick means every contribution tagged at or before it has arrived.
//!   Each worker
//!   keeps one [`WindowLog`] over all its entities' events, counting in every
//!   trend width and the baseline at once (so a change of `w*` needs no
//!   recount), and retracting a bot's events when its user is flagged. Cost
//!   per event: O(widths), plus a binary search per retraction.
//! * **Records.** At each closed tick the entities whose counts changed (all
//!   of them if `w*` changed) get their record recomputed; a changed record is
//!   emitted as a [`TrendChange`] with its previous values — the trend delta.
//!   `baseline_count == 0` deletes the record, and the entity is forgotten.
//! * **Categories of products.** A product's category list is the category of
//!   its latest live event in the baseline that has one (ties on `ts`: the
//!   smallest string): kept per product as a deque of `(ts, category)`.
//!
//! Each worker then ranks its own eligible entities into local top-k lists
//! for the merger in [`crate::trending`].

use crate::intern::{Interner, NONE};
use crate::messages::{route_hash, Contribution, EntityKind, TrendChange, TrendValues};
use crate::params::Params;
use crate::slab::Slab;
use crate::trending::{Candidate, LocalList};
use crate::windows::WindowLog;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

/// `w*` as of a tick, addressed to one worker.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Width {
    /// The output tick.
    pub at: u64,
    /// `w*` in ms.
    pub window_ms: u64,
    /// The worker this copy is for.
    pub worker: u32,
}

/// Picks `w*` from site-wide counts per width (SPEC section 6).
pub fn pick_width(widths: &[u64], counts: &[i64], min_events: u64) -> u64 {
    widths
        .iter()
        .zip(counts)
        .find(|(_, &c)| c >= min_events as i64)
        .map(|(&w, _)| w)
        .unwrap_or_else(|| *widths.last().unwrap_or(&0))
}

/// `N / D` of the SPEC's score: `N = (count + 1) * B`, `D = baseline_count * w + B`.
pub fn score_parts(count: u64, baseline_count: u64, window_ms: u64, baseline_ms: u64) -> (u128, u128) {
    let b = u128::from(baseline_ms);
    ((u128::from(count) + 1) * b, u128::from(baseline_count) * u128::from(window_ms) + b)
}

/// The double nearest `n / d` (exact when both fit in 53 bits after reduction).
pub fn ratio_to_f64(n: u128, d: u128) -> f64 {
    let g = gcd(n, d).max(1);
    let (n, d) = (n / g, d / g);
    n as f64 / d as f64
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Sums the user workers' site counts per closed tick and broadcasts `w*`.
pub fn trend_width<'s>(
    site: StreamVec<'s, u64, (u64, Vec<i64>)>,
    params: &Params,
    peers: u32,
) -> StreamVec<'s, u64, Width> {
    let widths = params.trend_widths_ms.clone();
    let min_events = params.trend_min_events;
    site.unary_frontier(Exchange::new(|_: &(u64, Vec<i64>)| 0), "TrendWidth", move |_cap, _info| {
        let mut pending: BTreeMap<u64, (Capability<u64>, Vec<i64>)> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                for (at, counts) in data.drain(..) {
                    let entry = pending.entry(at).or_insert_with(|| (cap.delayed(&at, 0), vec![0; counts.len()]));
                    for (total, c) in entry.1.iter_mut().zip(&counts) {
                        *total += c;
                    }
                }
            });
            while let Some(entry) = pending.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let (at, (cap, counts)) = entry.remove_entry();
                let window_ms = pick_width(&widths, &counts, min_events);
                let mut session = output.session(&cap);
                for worker in 0..peers {
                    session.give(Width { at, window_ms, worker });
                }
            }
        }
    })
}

/// One product or category on this worker.
#[derive(Debug)]
struct Entity {
    kind: EntityKind,
    id: Box<str>,
    /// Live events per trend width, then in the baseline.
    counts: Vec<i64>,
    record: Option<TrendValues>,
    /// Products: `(ts, category, live)` of events with a category, in the baseline.
    categories: VecDeque<(u64, u32, bool)>,
    dirty: bool,
}

/// One worker's entities.
pub struct TrendStage {
    params: Params,
    /// Entity index by id, one map per kind (looked up by `&str`, no allocation).
    index: [FxHashMap<Box<str>, usize>; 2],
    entities: Slab<Entity>,
    log: WindowLog<(u32, u32)>,
    category_names: Interner,
    window_ms: u64,
    dirty: Vec<usize>,
    eligible: FxHashSet<usize>,
    sent: FxHashMap<String, Vec<Candidate>>,
    worker: u32,
}

impl TrendStage {
    /// An empty stage for worker `worker`.
    pub fn new(params: Params, worker: u32) -> Self {
        let mut widths = params.trend_widths_ms.clone();
        widths.push(params.baseline_ms);
        TrendStage {
            log: WindowLog::new(widths),
            window_ms: 0,
            params,
            index: [FxHashMap::default(), FxHashMap::default()],
            entities: Slab::default(),
            category_names: Interner::default(),
            dirty: Vec::new(),
            eligible: FxHashSet::default(),
            sent: FxHashMap::default(),
            worker,
        }
    }

    fn entity(&mut self, kind: EntityKind, id: &str) -> usize {
        if let Some(&i) = self.index[kind as usize].get(id) {
            return i;
        }
        let n = self.params.trend_widths_ms.len() + 1;
        let e = Entity { kind, id: id.into(), counts: vec![0; n], record: None, categories: VecDeque::new(), dirty: false };
        let i = self.entities.insert(e);
        self.index[kind as usize].insert(id.into(), i);
        i
    }

    fn count_change(entities: &mut Slab<Entity>, dirty: &mut Vec<usize>, w: usize, key: (u32, u32), d: i64) {
        if let Some(e) = entities.get_mut(key.0 as usize) {
            e.counts[w] += d;
            if !e.dirty {
                e.dirty = true;
                dirty.push(key.0 as usize);
            }
        }
    }

    /// Applies contributions; every later call brings no smaller `ts` among its
    /// additions (they come in tick order). Counts move; records wait for the
    /// next output tick.
    pub fn apply(&mut self, mut contributions: Vec<Contribution>) {
        contributions.sort_unstable_by_key(|c| (c.diff, c.ts));
        for c in contributions {
            let e = self.entity(c.kind, &c.id);
            let cat = if c.kind == EntityKind::Product { self.category_names.intern_opt(c.category.as_deref()) } else { NONE };
            let (entities, dirty) = (&mut self.entities, &mut self.dirty);
            let changed = |w, key, d| Self::count_change(entities, dirty, w, key, d);
            if c.diff < 0 {
                self.log.retract(c.ts, (e as u32, cat), changed);
                if cat != NONE {
                    if let Some(ent) = self.entities.get_mut(e) {
                        let start = ent.categories.partition_point(|x| x.0 < c.ts);
                        if let Some(x) = ent.categories.range_mut(start..).take_while(|x| x.0 == c.ts).find(|x| x.1 == cat && x.2) {
                            x.2 = false;
                        }
                    }
                }
            } else {
                self.log.push(c.ts, (e as u32, cat), changed);
                if cat != NONE {
                    if let Some(ent) = self.entities.get_mut(e) {
                        ent.categories.push_back((c.ts, cat, true));
                    }
                }
            }
            // A new entity whose only contribution was a retraction of a forgotten event.
            if let Some(ent) = self.entities.get_mut(e) {
                if !ent.dirty {
                    ent.dirty = true;
                    self.dirty.push(e);
                }
            }
        }
    }

    /// Closes tick `at` with `w* = window_ms` (its contributions applied);
    /// emits changed records and changed local lists.
    pub fn close_tick(&mut self, at: u64, window_ms: u64, out: &mut impl FnMut(TrendChange), lists: &mut impl FnMut(LocalList)) {
        let (entities, dirty) = (&mut self.entities, &mut self.dirty);
        self.log.advance(at, |w, key, d| Self::count_change(entities, dirty, w, key, d));
        if window_ms != self.window_ms {
            self.window_ms = window_ms;
            for (i, e) in self.entities.iter_mut() {
                if e.record.is_some() && !e.dirty {
                    e.dirty = true;
                    self.dirty.push(i);
                }
            }
        }
        let any_change = !self.dirty.is_empty();
        let w_idx = self.params.trend_widths_ms.iter().position(|&w| w == window_ms).unwrap_or(0);
        let nb = self.params.trend_widths_ms.len();
        let baseline_lo = at.saturating_sub(self.params.baseline_ms);
        for i in std::mem::take(&mut self.dirty) {
            let Some(e) = self.entities.get_mut(i) else { continue };
            e.dirty = false;
            while e.categories.front().is_some_and(|x| x.0 < baseline_lo) {
                e.categories.pop_front();
            }
            let baseline = e.counts[nb];
            let new = (baseline > 0).then(|| {
                let count = e.counts[w_idx] as u64;
                let (n, d) = score_parts(count, baseline as u64, window_ms, self.params.baseline_ms);
                TrendValues { window_ms, count, baseline_count: baseline as u64, score: ratio_to_f64(n, d) }
            });
            if new != e.record {
                out(TrendChange { at, kind: e.kind, id: e.id.to_string(), prev: e.record, new });
                e.record = new;
            }
            if new.is_some_and(|v| v.count >= self.params.trending_min_count) {
                self.eligible.insert(i);
            } else {
                self.eligible.remove(&i);
            }
            if new.is_none() && baseline == 0 {
                if let Some(e) = self.entities.remove(i) {
                    self.index[e.kind as usize].remove(&e.id);
                }
            }
        }
        if any_change {
            self.rank(at, lists);
        }
    }

    /// The category list a product belongs to: its latest live categorized event's.
    fn product_category(&self, e: &Entity) -> Option<u32> {
        let mut best: Option<(u64, u32)> = None;
        for &(ts, cat, live) in e.categories.iter().rev() {
            if !live {
                continue;
            }
            match best {
                Some((bts, _)) if ts < bts => break,
                Some((_, bcat)) if self.category_names.name(cat) >= self.category_names.name(bcat) => {}
                _ => best = Some((ts, cat)),
            }
        }
        best.map(|(_, c)| c)
    }

    /// Ranks this worker's eligible entities into local top-k lists; sends the changed ones.
    fn rank(&mut self, at: u64, lists: &mut impl FnMut(LocalList)) {
        let mut by_list: FxHashMap<String, Vec<Candidate>> = FxHashMap::default();
        for &i in &self.eligible {
            let Some(e) = self.entities.get(i) else { continue };
            let Some(r) = e.record else { continue };
            let (n, d) = score_parts(r.count, r.baseline_count, r.window_ms, self.params.baseline_ms);
            let cand = Candidate { id: e.id.to_string(), n, d, count: r.count, score: r.score };
            match e.kind {
                EntityKind::Category => by_list.entry("categories".into()).or_default().push(cand),
                EntityKind::Product => {
                    if let Some(cat) = self.product_category(e) {
                        by_list.entry(format!("category:{}", self.category_names.name(cat))).or_default().push(cand.clone());
                    }
                    by_list.entry("global".into()).or_default().push(cand);
                }
            }
        }
        let k = self.params.trending_k;
        for list in by_list.values_mut() {
            crate::trending::top_k(list, k);
        }
        let gone: Vec<String> = self.sent.keys().filter(|l| !by_list.contains_key(*l)).cloned().collect();
        for list in gone {
            self.sent.remove(&list);
            lists(LocalList { at, list, worker: self.worker, entries: Vec::new() });
        }
        for (list, entries) in by_list {
            if self.sent.get(&list) != Some(&entries) {
                self.sent.insert(list.clone(), entries.clone());
                lists(LocalList { at, list, worker: self.worker, entries });
            }
        }
    }
}

/// What the trend stage emits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TrendOut {
    /// A changed trend record.
    Change(TrendChange),
    /// A changed local top-k list.
    List(LocalList),
}

/// The trend stage as an operator.
pub fn trends<'s>(
    contributions: StreamVec<'s, u64, Contribution>,
    widths: StreamVec<'s, u64, Width>,
    params: &Params,
) -> StreamVec<'s, u64, TrendOut> {
    let by_entity = Exchange::new(|c: &Contribution| route_hash(&c.id) ^ (c.kind as u64));
    let by_worker = Exchange::new(|w: &Width| u64::from(w.worker));
    let mut stage = TrendStage::new(params.clone(), contributions.scope().index() as u32);
    contributions.binary_frontier(widths, by_entity, by_worker, "Trends", move |_cap, _info| {
        let mut stash: BTreeMap<u64, Vec<Contribution>> = BTreeMap::new();
        let mut ticks: BTreeMap<u64, (u64, Capability<u64>)> = BTreeMap::new();
        move |(input1, frontier1), (input2, frontier2), output| {
            input1.for_each(|_cap, data| {
                for c in data.drain(..) {
                    stash.entry(c.at).or_default().push(c);
                }
            });
            input2.for_each(|cap, data| {
                for w in data.drain(..) {
                    ticks.insert(w.at, (w.window_ms, cap.delayed(&w.at, 0)));
                }
            });
            while let Some(entry) = ticks.first_entry() {
                let at = *entry.key();
                if frontier1.less_equal(&at) || frontier2.less_equal(&at) {
                    break;
                }
                let (window_ms, cap) = entry.remove();
                let due = stash.split_off(&(at + 1));
                for (_, cs) in std::mem::replace(&mut stash, due) {
                    stage.apply(cs);
                }
                let mut session = output.session(&cap);
                let mut changes = Vec::new();
                let mut lists = Vec::new();
                stage.close_tick(at, window_ms, &mut |c| changes.push(c), &mut |l| lists.push(l));
                changes.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
                session.give_iterator(changes.into_iter().map(TrendOut::Change));
                session.give_iterator(lists.into_iter().map(TrendOut::List));
            }
            // Contributions travel at or below their tag: those tagged below
            // both frontiers have all arrived (and no tick at or above a
            // frontier is closed yet): apply them now.
            let sealed = match (frontier1.frontier().first(), frontier2.frontier().first()) {
                (Some(&a), Some(&b)) => a.min(b),
                (Some(&a), None) | (None, Some(&a)) => a,
                (None, None) => u64::MAX,
            };
            let later = stash.split_off(&sealed);
            for (_, cs) in std::mem::replace(&mut stash, later) {
                stage.apply(cs);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;
    const T0: u64 = 1_704_844_800_000;

    fn contribution(kind: EntityKind, id: &str, ts: u64, diff: i8) -> Contribution {
        Contribution { at: 0, kind, id: id.into(), ts, diff, category: None }
    }

    #[test]
    fn adaptive_width_is_the_smallest_reaching_min_events_else_the_largest() {
        let widths = [15 * 60_000, 30 * 60_000, H];
        assert_eq!(pick_width(&widths, &[9, 10, 12], 10), 30 * 60_000);
        assert_eq!(pick_width(&widths, &[10, 10, 12], 10), 15 * 60_000);
        assert_eq!(pick_width(&widths, &[1, 2, 3], 10), H, "none reaches: the largest");
    }

    fn close(stage: &mut TrendStage, at: u64, w: u64, cs: Vec<Contribution>) -> Vec<TrendChange> {
        let mut out = Vec::new();
        stage.apply(cs);
        stage.close_tick(at, w, &mut |c| out.push(c), &mut |_| {});
        out
    }

    #[test]
    fn a_width_switch_rewrites_every_record_and_baseline_zero_deletes() {
        let p = Params::default();
        let mut s = TrendStage::new(p.clone(), 0);
        let cs = vec![contribution(EntityKind::Product, "a", T0, 1), contribution(EntityKind::Product, "b", T0 + 10, 1)];
        let first = close(&mut s, T0 + 1000, 8 * H, cs);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|c| c.prev.is_none() && c.new.is_some_and(|v| v.count == 1 && v.baseline_count == 1)));
        let (n, d) = score_parts(1, 1, 8 * H, p.baseline_ms);
        assert_eq!(first[0].new.unwrap().score, n as f64 / d as f64);
        assert!(close(&mut s, T0 + 2000, 8 * H, vec![]).is_empty(), "nothing changed");
        let switched = close(&mut s, T0 + 3000, H, vec![]);
        assert_eq!(switched.len(), 2, "every record carries w*");
        assert!(switched.iter().all(|c| c.new.unwrap().window_ms == H));
        // The product's event leaves w* = 1h, then the 7d baseline.
        let left_w = close(&mut s, T0 + H + 1000, H, vec![]);
        assert!(left_w.iter().all(|c| c.new.unwrap().count == 0 && c.new.unwrap().baseline_count == 1));
        let gone = close(&mut s, T0 + p.baseline_ms + 1000, H, vec![]);
        assert_eq!(gone.len(), 2);
        assert!(gone.iter().all(|c| c.new.is_none() && c.prev.is_some()), "baseline 0: deleted");
        assert!(s.entities.is_empty(), "and forgotten");
    }

    #[test]
    fn retraction_removes_a_bots_event_from_every_width() {
        let mut s = TrendStage::new(Params::default(), 0);
        close(&mut s, T0 + 1000, H, vec![contribution(EntityKind::Category, "c", T0, 1), contribution(EntityKind::Category, "c", T0 + 5, 1)]);
        let out = close(&mut s, T0 + 2000, H, vec![contribution(EntityKind::Category, "c", T0 + 5, -1)]);
        let v = out[0].new.unwrap();
        assert_eq!((v.count, v.baseline_count), (1, 1));
        assert_eq!(s.log.len(), 2, "the dead entry waits for the cursors");
    }
}
