//! What the tests of both crates share: `tests/` of the `clickflow` program
//! (conformance, CLI, Redis, Kafka, clusters, real data) and `tests/` of
//! `clickflow-dataflows` (the oracle and the reference test).
//!
//! * conformance cases: [`cases`], [`Case`], [`largest_case`], [`case_named`]
//!   (the repository's copies and `../shared/conformance`, see [`discover`]);
//! * files: [`read_maybe_gz`], [`read_maybe_gz_bytes`], [`json_lines`];
//! * the store as a value: [`StoreSnapshot`], [`TrendRow`],
//!   [`snapshot_from_expected`];
//! * SPEC section 8: [`close`], [`compare_snapshots`], [`compare`],
//!   [`compare_uncapped`], [`compare_user`], [`compare_trend_maps`], and
//!   [`cap`] for mismatch lists.
//!
//! It depends on neither clickflow crate: each store reader and the oracle
//! map what they hold to a [`StoreSnapshot`]. Helpers that read files panic
//! with a message naming the file; comparisons return human-readable
//! mismatch lists (empty = pass).

mod cases;
mod compare;
mod files;
mod snapshot;

pub use cases::{case_named, cases, discover, largest_case, repo_cases_dir, shared_cases_dir, shared_dir, Case};
pub use compare::{cap, cap_at, clip, close, compare, compare_snapshots, compare_trend_maps, compare_uncapped, compare_user, is_tolerant_feature, show, MAX_MISMATCHES};
pub use files::{json_lines, read_maybe_gz, read_maybe_gz_bytes};
pub use snapshot::{snapshot_from_expected, StoreSnapshot, TrendRow};
