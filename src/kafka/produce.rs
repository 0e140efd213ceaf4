//! `clickflow produce`: every line of a JSON Lines file (plain or gzip'd),
//! in file order, as one message each to a Kafka topic, which is created
//! with `--partitions` partitions when missing. Messages are keyed by their
//! `user_id` (lines without one, invalid ones included, get no key), so a
//! multi-partition topic keeps each user's events in file order in one
//! partition. For tests, benchmarks and backfills.
//!
//! Options for a live feed: `rate` paces the messages (per second), and
//! `retime` sets each event's `ts` to the wall clock when it is sent (lines
//! that are not JSON objects go unchanged), so a replayed workload arrives
//! like live traffic for wall-clock mode.

use super::admin::{create_topic, metadata_client, partitions};
use super::producer::ReliableProducer;
use super::KafkaConfig;
use crate::metrics::now_ms;
use crate::sources::file::FileSource;
use crate::sources::LineSource;
use anyhow::{bail, Result};
use serde::Deserialize;
use std::path::Path;
use std::time::Instant;

/// What `produce` did.
#[derive(Debug, Clone, Copy)]
pub struct Produced {
    /// Messages sent (every line, blank ones included).
    pub messages: u64,
    /// Seconds it took, until every message was acknowledged.
    pub seconds: f64,
}

#[derive(Deserialize)]
struct Key<'a> {
    #[serde(borrow, default)]
    user_id: Option<std::borrow::Cow<'a, str>>,
}

/// The message key of a line: its `user_id`, if it has a string one.
pub fn user_key(line: &[u8]) -> Option<Vec<u8>> {
    let k: Key<'_> = serde_json::from_slice(line).ok()?;
    k.user_id.map(|u| u.into_owned().into_bytes())
}

/// How to produce.
#[derive(Debug, Clone, Default)]
pub struct ProduceOptions {
    /// Topic; default `kafka.topic`.
    pub topic: Option<String>,
    /// Partitions if the topic has to be created.
    pub partitions: i32,
    /// Key messages by `user_id`.
    pub keyed: bool,
    /// Messages per second (`None`: as fast as the broker takes them).
    pub rate: Option<f64>,
    /// Set every event's `ts` to the wall clock at sending.
    pub retime: bool,
    /// Stop after this many messages.
    pub limit: Option<u64>,
}


/// `line` with its `ts` set to `ts`, if it is a JSON object.
pub fn retimed(line: &[u8], ts: u64) -> Option<Vec<u8>> {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line).ok()?;
    v.insert("ts".into(), ts.into());
    serde_json::to_vec(&v).ok()
}

/// Produces `input` to the topic.
pub fn produce(cfg: &KafkaConfig, input: &Path, opts: &ProduceOptions) -> Result<Produced> {
    let (topic, new_partitions, keyed) = (opts.topic.as_deref(), opts.partitions, opts.keyed);
    let topic = topic.unwrap_or(&cfg.topic).to_owned();
    if new_partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    let mut source = FileSource::open(input)?;
    let client = metadata_client(cfg)?;
    match partitions(&client, cfg, &topic)? {
        Some(p) if p.len() as i32 != new_partitions => {
            eprintln!("clickflow: topic `{topic}` exists with {} partitions; producing to those", p.len());
        }
        Some(_) => {}
        None => create_topic(&client, cfg, &topic, new_partitions)?,
    }
    let mut producer = ReliableProducer::new(cfg, &topic)?;
    let started = Instant::now();
    let mut line = Vec::with_capacity(4096);
    let mut messages = 0u64;
    while opts.limit.is_none_or(|l| messages < l) && source.next_line(&mut line)? {
        if let Some(rate) = opts.rate {
            let due = started + std::time::Duration::from_secs_f64(messages as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let key = if keyed { user_key(&line) } else { None };
        match opts.retime.then(|| retimed(&line, now_ms())).flatten() {
            Some(l) => producer.send(key.as_deref(), &l)?,
            None => producer.send(key.as_deref(), &line)?,
        }
        messages += 1;
    }
    producer.flush()?;
    Ok(Produced { messages, seconds: started.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_user_id_when_there_is_one() {
        assert_eq!(user_key(br#"{"ts": 1, "user_id": "u\u00e91", "type": "view"}"#), Some("u\u{e9}1".as_bytes().to_vec()));
        assert_eq!(user_key(br#"{"ts": 1, "type": "view"}"#), None);
        assert_eq!(user_key(br#"{"user_id": 7}"#), None);
        assert_eq!(user_key(b"not json"), None);
    }

    #[test]
    fn retiming_sets_ts_and_keeps_the_rest() {
        let v: serde_json::Value = serde_json::from_slice(&retimed(br#"{"ts": "2024-01-01T00:00:00Z", "user_id": "u1", "type": "view"}"#, 42).unwrap()).unwrap();
        assert_eq!((v["ts"].as_u64(), v["user_id"].as_str(), v["type"].as_str()), (Some(42), Some("u1"), Some("view")));
        assert_eq!(retimed(b"[1, 2]", 42), None, "not an object: sent as it is");
    }
}
