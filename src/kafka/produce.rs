//! `clickflow produce`: every line of a JSON Lines file (plain or gzip'd),
//! in file order, as one message each to a Kafka topic, which is created
//! with `--partitions` partitions when missing. Messages are keyed by their
//! `user_id` (lines without one, invalid ones included, get no key), so a
//! multi-partition topic keeps each user's events in file order in one
//! partition. For tests, benchmarks and backfills.

use super::admin::{create_topic, metadata_client, partitions};
use super::producer::ReliableProducer;
use super::KafkaConfig;
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

/// Produces `input` to `topic` (default `kafka.topic`).
pub fn produce(cfg: &KafkaConfig, input: &Path, topic: Option<&str>, new_partitions: i32, keyed: bool) -> Result<Produced> {
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
        None => create_topic(cfg, &topic, new_partitions)?,
    }
    let mut producer = ReliableProducer::new(cfg, &topic)?;
    let started = Instant::now();
    let mut line = Vec::with_capacity(4096);
    let mut messages = 0u64;
    while source.next_line(&mut line)? {
        let key = if keyed { user_key(&line) } else { None };
        producer.send(key.as_deref(), &line)?;
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
}
