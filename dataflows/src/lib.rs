//! clickflow's computation, with no I/O: events in, store changes out.
//!
//! [`build`] assembles the whole dataflow of SPEC sections 2-6 in a timely
//! scope. Its input is the reader's stream of [`Ingest`] records: valid,
//! non-late events and output-tick markers (the reader owns validation and
//! the watermark, see [`clock`] and [`event`]). Its output is a stream of
//! [`Change`]s, each tagged with the output tick it belongs to, all on
//! worker 0 or each on the worker that made it ([`Routing`]); a sink writes a
//! tick's changes once its frontier has passed the tick, then the `as_of`
//! marker.
//!
//! ```text
//! ingest ─exchange(user)─> UserFeatures ──features─────────────────────────┐
//!                               │ └─site counts─> TrendWidth (w*) ─┬─ticks──┤
//!                               └─contributions─exchange(entity)─> Trends ─┤─> Change (worker 0)
//!                                                           └─lists─> TrendingMerge ┘
//! ```

pub mod bots;
pub mod calendar;
pub mod clock;
pub mod event;
pub mod intern;
pub mod messages;
pub mod params;
pub mod sessions;
pub mod slab;
pub mod spend;
pub mod trending;
pub mod trends;
pub mod user_features;
mod user_state;
pub mod windows;

pub use messages::{Change, Ingest};
pub use params::Params;

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::core::{Concatenate, Exchange as _};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Filter, Map, Partition};
use timely::dataflow::StreamVec;
use trends::TrendOut;
use user_features::UserOut;

/// Counts kept by the stages, shared by all workers of a process.
#[derive(Debug, Default)]
pub struct Counters {
    /// Valid, non-late events of users that are not bots.
    pub accepted: AtomicU64,
    /// Events of users flagged as bots (before and after the flag).
    pub bot_events: AtomicU64,
    /// Users flagged as bots.
    pub bots_flagged: AtomicU64,
    /// Users with a feature record.
    pub users_with_features: AtomicI64,
    /// Sessions in users' horizons.
    pub sessions: AtomicI64,
}

/// Where the store changes end up: the two store shapes of the program's
/// sinks (`central` and `distributed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Every change on worker 0 (one store writer for the cluster), with each tick's marker.
    Central,
    /// Each change on the worker that made it (the worker owning the user,
    /// the entity, or the trending lists: a writer per worker); every worker
    /// gets every tick's marker.
    Distributed,
}

/// Builds the dataflow; returns the store changes, routed as asked.
pub fn build<'s>(ingest: StreamVec<'s, u64, Ingest>, params: &Params, counters: Arc<Counters>, routing: Routing) -> StreamVec<'s, u64, Change> {
    let scope = ingest.scope();
    let peers = scope.peers() as u32;
    let users = user_features::user_features(ingest, params, counters);
    let mut parts = users.partition(3, |o| match o {
        UserOut::Feature(_) => (0, o),
        UserOut::Trend(_) => (1, o),
        UserOut::Site { .. } => (2, o),
    });
    let site = parts.pop().expect("three parts").flat_map(|o| match o {
        UserOut::Site { at, counts } => Some((at, counts)),
        _ => None,
    });
    let contributions = parts.pop().expect("three parts").flat_map(|o| match o {
        UserOut::Trend(c) => Some(c),
        _ => None,
    });
    let features = parts.pop().expect("three parts").flat_map(|o| match o {
        UserOut::Feature(f) => Some(Change::User(f)),
        _ => None,
    });
    let widths = trends::trend_width(site, params, peers);
    let ticks = match routing {
        Routing::Central => widths.clone().filter(|w| w.worker == 0).map(|w| Change::Tick(w.at)),
        // trend_width emits every worker's copy on one worker: send each home.
        Routing::Distributed => widths.clone().exchange(|w| u64::from(w.worker)).map(|w| Change::Tick(w.at)),
    };
    let trend_out = trends::trends(contributions, widths, params);
    let mut tparts = trend_out.partition(2, |o| match o {
        TrendOut::Change(_) => (0, o),
        TrendOut::List(_) => (1, o),
    });
    let lists = tparts.pop().expect("two parts").flat_map(|o| match o {
        TrendOut::List(l) => Some(l),
        _ => None,
    });
    let changes = tparts.pop().expect("two parts").flat_map(|o| match o {
        TrendOut::Change(c) => Some(Change::Trend(c)),
        _ => None,
    });
    let trending = trending::trending(lists, params.trending_k).map(Change::Trending);
    let all = scope.concatenate([features, changes, trending, ticks]);
    match routing {
        Routing::Distributed => all,
        Routing::Central => all.unary(Exchange::new(|_: &Change| 0), "ToSink", |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, data| {
                    output.session(&cap).give_container(data);
                })
            }
        }),
    }
}
