//! The Kafka connector (rdkafka, bundled librdkafka): events in, trend
//! deltas and dead letters out, offsets committed after the store.
//!
//! * [`connector`]: one metadata client per run, and the assignment of the
//!   topic's partitions to the cluster's workers (partition `i` of the sorted
//!   list to global worker `i % workers`; no group rebalancing inside a run).
//! * [`consumer`]: the source. Each partition is one reader with its own
//!   watermark (SPEC section 2). Partitions are read from
//!   the earliest retained offset, which rebuilds the 30-day state; ticks the
//!   store already holds are not written again. `--until-end` stops each
//!   partition at the high-water mark it had at start.
//! * [`producer`]: idempotent producers for the trend-delta and dead-letter
//!   topics; a delivery that fails after librdkafka's own retries is sent
//!   again, and a flush returns only once every message is acknowledged.
//! * [`admin`]: partitions, high-water marks, creating output topics.
//! * [`produce`]: `clickflow produce`, a file into a topic (tests, benches,
//!   backfills).
//!
//! Consumer offsets are committed by the store writer, after each tick is in
//! the store and the tick's trend deltas and dead letters are flushed: they
//! tell how far the store is (consumer lag), never ahead of it.

pub mod admin;
pub mod config;
pub mod connector;
pub mod consumer;
pub mod produce;
pub mod producer;

pub use config::KafkaConfig;

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};

/// A client config, in layers: the brokers; clickflow's `defaults`; the
/// user's `extra` properties (`kafka.consumer` / `kafka.producer`) over them;
/// last, what clickflow must set itself (`forced`, which the config check
/// keeps the user from setting).
pub fn client_config(cfg: &KafkaConfig, defaults: &[(&str, &str)], extra: &BTreeMap<String, String>, forced: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in extra {
        c.set(k, v);
    }
    for (k, v) in forced {
        c.set(*k, *v);
    }
    c
}

/// Creates a client, naming the brokers and the bad property on failure.
pub fn create<T: rdkafka::config::FromClientConfig>(config: &ClientConfig, cfg: &KafkaConfig, what: &str) -> Result<T> {
    config.create().with_context(|| format!("cannot create the Kafka {what} for {} (check the `kafka.consumer` / `kafka.producer` properties)", cfg.brokers))
}

/// Runs an rdkafka admin future to completion on this thread (rdkafka's own
/// background thread drives it; this only waits).
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// The hint for a broker that does not answer.
pub fn unreachable_hint(cfg: &KafkaConfig) -> String {
    format!("cannot reach Kafka at {} (is it running? `scripts/services.sh start` starts one for tests; `kafka.brokers` sets the address)", cfg.brokers)
}
