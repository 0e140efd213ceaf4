//! The tick plumbing both store shapes share: a sink operator that hands
//! over each output tick once it is closed ([`by_closed_tick`]), the trend
//! deltas of a tick ([`write_deltas`]), and the offsets committed so far
//! ([`Commits`]).

use super::{Committer, TrendDeltas};
use anyhow::Result;
use clickflow_dataflows::messages::{OffsetReport, TrendChange};
use clickflow_dataflows::Change;
use std::collections::BTreeMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract};
use timely::dataflow::operators::generic::{Operator, OutputBuilderSession};
use timely::dataflow::StreamVec;

/// The offsets committed so far: a tick's offsets are committed only for
/// the partitions whose offset moved.
#[derive(Default)]
pub struct Commits {
    committed: BTreeMap<i32, i64>,
}

impl Commits {
    /// Commits the partitions of `offsets` that moved.
    pub fn commit(&mut self, committer: &mut dyn Committer, offsets: &[(i32, i64)]) -> Result<()> {
        let moved: Vec<(i32, i64)> = offsets.iter().copied().filter(|(p, o)| self.committed.get(p).is_none_or(|c| o > c)).collect();
        if !moved.is_empty() {
            committer.commit(&moved)?;
            self.committed.extend(moved);
        }
        Ok(())
    }
}

/// The trend deltas among a tick's changes.
pub fn trend_deltas(changes: &[Change]) -> impl Iterator<Item = &TrendChange> {
    changes.iter().filter_map(|c| match c {
        Change::Trend(t) => Some(t),
        _ => None,
    })
}

/// Writes one tick's trend deltas in key order (SPEC section 6) and makes them durable.
pub fn write_deltas<'a>(sink: &mut dyn TrendDeltas, deltas: impl IntoIterator<Item = &'a TrendChange>) -> Result<()> {
    let mut deltas: Vec<&TrendChange> = deltas.into_iter().collect();
    deltas.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
    sink.write(&deltas)?;
    sink.flush()
}

/// A sink of `items` (each of the tick `tick_of` says) and offset reports:
/// calls `closed(at, items, offsets)` for each tick, in tick order, once
/// both inputs' frontiers have passed it. The central store's sink and the
/// distributed store's marker.
pub fn by_closed_tick<'s, A, P>(
    items: StreamVec<'s, u64, A>,
    pact: P,
    reports: StreamVec<'s, u64, OffsetReport>,
    name: &str,
    tick_of: impl Fn(&A) -> u64 + 'static,
    mut closed: impl FnMut(u64, Vec<A>, Vec<(i32, i64)>) + 'static,
) where
    A: Clone + 'static,
    P: ParallelizationContract<u64, Vec<A>>,
{
    type Tick<A> = (Vec<A>, Vec<(i32, i64)>);
    let mut stash: BTreeMap<u64, Tick<A>> = BTreeMap::new();
    items.binary_frontier(reports, pact, Exchange::new(|_: &OffsetReport| 0), name, |_cap, _info| {
        move |(items, frontier1), (reports, frontier2), _output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<()>>>| {
            items.for_each(|_cap, data| {
                for item in data.drain(..) {
                    stash.entry(tick_of(&item)).or_default().0.push(item);
                }
            });
            reports.for_each(|_cap, data| {
                for r in data.drain(..) {
                    stash.entry(r.at).or_default().1.push((r.partition, r.offset));
                }
            });
            while let Some(entry) = stash.first_entry() {
                if frontier1.less_equal(entry.key()) || frontier2.less_equal(entry.key()) {
                    break;
                }
                let (at, (items, offsets)) = entry.remove_entry();
                closed(at, items, offsets);
            }
        }
    });
}
