//! Resuming over a store that already holds some ticks.
//!
//! A run over input the store already reflects does not write the ticks at
//! or below the store's `as_of` (nothing moves back in time). But each tick's
//! changes are relative to the run's *own* previous tick, and after a crash,
//! or with another batch size or partition timing, the new run's ticks are
//! not the old run's: a record that changed between the store's `as_of` and
//! the new run's last skipped tick would never be written. So the writer
//! keeps the latest change of every key from the skipped ticks ([`Carry`])
//! and writes them with the first tick it does write: then the store holds,
//! for every key the run has seen, the run's record as of that tick. Trend
//! deltas of that tick take `prev` from the store (what a consumer of the
//! deltas last saw), and a record equal to the stored one gets no delta.
//!
//! Memory: one entry per key changed during the skipped ticks, dropped once
//! written.

use super::TrendLookup;
use anyhow::Result;
use clickflow_dataflows::messages::{EntityKind, FeatureChange, TrendChange, TrendingChange};
use clickflow_dataflows::Change;
use std::collections::HashMap;

/// A writer's view of what the store held when it was opened: which ticks
/// to skip, and what they carry into the first tick written.
pub struct Resume {
    held: Option<u64>,
    carry: Option<Carry>,
}

impl Resume {
    /// Over a store whose `as_of` was `held` when opened.
    pub fn new(held: Option<u64>) -> Self {
        Resume { held, carry: held.map(|_| Carry::default()) }
    }

    /// The changes to write at tick `at`: `None` if the store holds the tick
    /// already (they are carried), else `changes` with the carried ones.
    pub fn changes(&mut self, at: u64, changes: Vec<Change>, store: &mut dyn TrendLookup) -> Result<Option<Vec<Change>>> {
        if self.held.is_some_and(|h| h >= at) {
            if let Some(c) = self.carry.as_mut() {
                c.absorb(changes);
            }
            return Ok(None);
        }
        match self.carry.take() {
            Some(c) => c.merge(at, changes, store).map(Some),
            None => Ok(Some(changes)),
        }
    }
}

/// The latest change of every key from ticks the store already held.
#[derive(Default)]
pub struct Carry {
    users: HashMap<String, FeatureChange>,
    trends: HashMap<(EntityKind, String), TrendChange>,
    lists: HashMap<String, TrendingChange>,
}

impl Carry {
    /// Keeps the changes of a skipped tick (later ticks replace earlier ones).
    pub fn absorb(&mut self, changes: Vec<Change>) {
        for c in changes {
            match c {
                Change::User(u) => {
                    self.users.insert(u.user_id.clone(), u);
                }
                Change::Trend(t) => {
                    self.trends.insert((t.kind, t.id.clone()), t);
                }
                Change::Trending(l) => {
                    self.lists.insert(l.list.clone(), l);
                }
                Change::Tick(_) => {}
            }
        }
    }

    /// The changes to write at tick `at`: the carried ones, then `changes`
    /// (which win for the same key); every trend change against the store.
    pub fn merge(mut self, at: u64, changes: Vec<Change>, store: &mut dyn TrendLookup) -> Result<Vec<Change>> {
        let mut out = Vec::with_capacity(changes.len() + self.users.len() + self.lists.len());
        for c in changes {
            match c {
                Change::User(u) => {
                    self.users.remove(&u.user_id);
                    out.push(Change::User(u));
                }
                Change::Trend(t) => {
                    self.trends.insert((t.kind, t.id.clone()), t);
                }
                Change::Trending(l) => {
                    self.lists.remove(&l.list);
                    out.push(Change::Trending(l));
                }
                Change::Tick(t) => out.push(Change::Tick(t)),
            }
        }
        out.extend(self.users.into_values().map(|mut u| {
            u.at = at;
            Change::User(u)
        }));
        out.extend(self.lists.into_values().map(|mut l| {
            l.at = at;
            Change::Trending(l)
        }));
        let trends: Vec<TrendChange> = self.trends.into_values().collect();
        let keys: Vec<(EntityKind, &str)> = trends.iter().map(|t| (t.kind, t.id.as_str())).collect();
        let stored = store.trends_of(&keys)?;
        for (mut t, prev) in trends.into_iter().zip(stored) {
            if prev != t.new {
                t.at = at;
                t.prev = prev;
                out.push(Change::Trend(t));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickflow_dataflows::messages::TrendValues;

    /// A store that only answers trend reads.
    struct Trends(HashMap<(EntityKind, String), TrendValues>);

    impl TrendLookup for Trends {
        fn trends_of(&mut self, keys: &[(EntityKind, &str)]) -> Result<Vec<Option<TrendValues>>> {
            Ok(keys.iter().map(|(k, id)| self.0.get(&(*k, id.to_string())).copied()).collect())
        }
    }

    fn values(count: u64) -> TrendValues {
        TrendValues { window_ms: 900_000, count, baseline_count: 10, score: 1.0 }
    }

    fn trend(at: u64, id: &str, prev: Option<u64>, new: Option<u64>) -> Change {
        Change::Trend(TrendChange { at, kind: EntityKind::Product, id: id.into(), prev: prev.map(values), new: new.map(values) })
    }

    fn user(at: u64, id: &str, f: &str) -> Change {
        Change::User(FeatureChange { at, user_id: id.into(), features: Some(f.into()) })
    }

    #[test]
    fn carried_changes_are_written_with_the_first_new_tick_and_deltas_start_from_the_store() {
        let mut store = Trends(HashMap::from([((EntityKind::Product, "p1".into()), values(3)), ((EntityKind::Product, "p2".into()), values(5))]));
        let mut carry = Carry::default();
        carry.absorb(vec![user(4, "u1", "a"), trend(4, "p1", None, Some(4)), trend(4, "p2", None, Some(6))]);
        carry.absorb(vec![user(8, "u1", "b"), trend(8, "p2", Some(6), Some(5))]);
        let out = carry.merge(12, vec![user(12, "u2", "c"), Change::Tick(12)], &mut store).unwrap();
        let users: Vec<(&str, u64, &str)> = out
            .iter()
            .filter_map(|c| match c {
                Change::User(u) => Some((u.user_id.as_str(), u.at, u.features.as_deref().unwrap_or(""))),
                _ => None,
            })
            .collect();
        assert!(users.contains(&("u1", 12, "b")) && users.contains(&("u2", 12, "c")), "{users:?}");
        let trends: Vec<&TrendChange> = out
            .iter()
            .filter_map(|c| match c {
                Change::Trend(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(trends.len(), 1, "p2 is back at the stored value: no delta");
        assert_eq!((trends[0].id.as_str(), trends[0].at, trends[0].prev, trends[0].new), ("p1", 12, Some(values(3)), Some(values(4))));
        assert!(out.iter().any(|c| matches!(c, Change::Tick(12))));
    }
}
