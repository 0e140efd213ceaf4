//! Trending lists (SPEC section 6): top-k by exact score, merged across workers.
//!
//! Order: larger score first, comparing `N1 * D2` with `N2 * D1` in 128-bit
//! integers (never the rounded doubles); ties go to the larger `count`, then
//! the smaller id in byte order. Each trend worker ranks its own eligible
//! entities (a record and `count >= trending_min_count`) and sends a list only
//! when its local top-k changed; the top-k of the union of local top-ks is the
//! global top-k. The merger (one worker) keeps the last local list of every
//! worker per list name and, per closed tick, re-merges the lists that changed
//! and emits those whose merged contents changed. A list with no entries is
//! emitted empty (its rows are deleted) and forgotten.

use crate::messages::{Ranked, TrendingChange};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;
use rustc_hash::FxHashMap;

/// An entity competing for a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The entity id.
    pub id: String,
    /// Score numerator.
    pub n: u128,
    /// Score denominator.
    pub d: u128,
    /// Count in `w*`.
    pub count: u64,
    /// The stored score.
    pub score: f64,
}

/// A worker's top-k for one list as of a tick.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalList {
    /// The output tick.
    pub at: u64,
    /// The list name.
    pub list: String,
    /// The sending worker.
    pub worker: u32,
    /// Its top-k, ranked.
    pub entries: Vec<Candidate>,
}

/// The SPEC's ranking: `Less` means `a` ranks before `b`.
pub fn rank_order(a: &Candidate, b: &Candidate) -> Ordering {
    (b.n * a.d)
        .cmp(&(a.n * b.d))
        .then(b.count.cmp(&a.count))
        .then_with(|| a.id.as_bytes().cmp(b.id.as_bytes()))
}

/// Sorts `list` by rank and keeps the first `k`.
pub fn top_k(list: &mut Vec<Candidate>, k: usize) {
    if list.len() > k {
        list.select_nth_unstable_by(k - 1, rank_order);
        list.truncate(k);
    }
    list.sort_unstable_by(rank_order);
}

/// Merges local lists into the trending lists, on one worker.
pub fn trending<'s>(lists: StreamVec<'s, u64, LocalList>, k: usize) -> StreamVec<'s, u64, TrendingChange> {
    lists.unary_frontier(Exchange::new(|_: &LocalList| 0), "TrendingMerge", move |_cap, _info| {
        let mut pending: BTreeMap<u64, (Capability<u64>, Vec<LocalList>)> = BTreeMap::new();
        let mut local: FxHashMap<String, BTreeMap<u32, Vec<Candidate>>> = FxHashMap::default();
        let mut merged: FxHashMap<String, Vec<Candidate>> = FxHashMap::default();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                for l in data.drain(..) {
                    pending.entry(l.at).or_insert_with(|| (cap.delayed(&l.at, 0), Vec::new())).1.push(l);
                }
            });
            while let Some(entry) = pending.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let (at, (cap, lists)) = entry.remove_entry();
                let mut touched = BTreeSet::new();
                for l in lists {
                    let per_worker = local.entry(l.list.clone()).or_default();
                    if l.entries.is_empty() {
                        per_worker.remove(&l.worker);
                    } else {
                        per_worker.insert(l.worker, l.entries);
                    }
                    touched.insert(l.list);
                }
                let mut session = output.session(&cap);
                for list in touched {
                    let mut all: Vec<Candidate> = local.get(&list).map(|m| m.values().flatten().cloned().collect()).unwrap_or_default();
                    top_k(&mut all, k);
                    if all.is_empty() {
                        local.remove(&list);
                    }
                    let prev = merged.get(&list).map(Vec::as_slice).unwrap_or(&[]);
                    if prev != all.as_slice() {
                        let entries = all.iter().map(|c| Ranked { id: c.id.clone(), score: c.score, count: c.count }).collect();
                        session.give(TrendingChange { at, list: list.clone(), entries });
                        if all.is_empty() {
                            merged.remove(&list);
                        } else {
                            merged.insert(list, all);
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trends::score_parts;

    fn cand(id: &str, count: u64, baseline: u64, w: u64) -> Candidate {
        let (n, d) = score_parts(count, baseline, w, 7 * 86_400_000);
        Candidate { id: id.into(), n, d, count, score: crate::trends::ratio_to_f64(n, d) }
    }

    #[test]
    fn ties_go_to_larger_count_then_smaller_id_bytes() {
        let w = 8 * 3_600_000;
        // score = 21 (c + 1) / (b + 21): (4, 9) and (3, 3) both score 3.5.
        let mut list = vec![cand("pB", 3, 3, w), cand("pC", 4, 9, w), cand("pA", 3, 3, w), cand("PZ", 3, 3, w)];
        assert_eq!(list[0].score, list[1].score);
        top_k(&mut list, 3);
        let ids: Vec<&str> = list.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["pC", "PZ", "pA"]);
    }

    #[test]
    fn exact_fractions_decide_not_doubles() {
        let a = Candidate { id: "a".into(), n: (1u128 << 60) + 1, d: 1 << 60, count: 1, score: 1.0 };
        let b = Candidate { id: "b".into(), n: 1, d: 1, count: 1, score: 1.0 };
        assert_eq!(rank_order(&a, &b), Ordering::Less, "a is larger by 2^-60");
    }
}
