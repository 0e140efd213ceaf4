//! Topic metadata at start: a topic's partitions and high-water marks, and
//! output topics created when missing. Every failure names the brokers and
//! the topic.

use super::{block_on, client_config, create, unreachable_hint, KafkaConfig};
use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::time::Duration;

/// A consumer for metadata only (no group, never auto-creating topics).
pub fn metadata_client(cfg: &KafkaConfig) -> Result<BaseConsumer> {
    let c = client_config(cfg, &[], &BTreeMap::new(), &[("allow.auto.create.topics", "false")]);
    create(&c, cfg, "metadata client")
}

/// The partitions of `topic`, sorted; `None` if the topic does not exist.
pub fn partitions(client: &BaseConsumer, cfg: &KafkaConfig, topic: &str) -> Result<Option<Vec<i32>>> {
    let timeout = Duration::from_millis(cfg.connect_timeout.ms);
    let md = client.fetch_metadata(Some(topic), timeout).with_context(|| unreachable_hint(cfg))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        if code == RDKafkaErrorCode::UnknownTopicOrPartition || code == RDKafkaErrorCode::UnknownTopic {
            return Ok(None);
        }
        bail!("Kafka at {} cannot describe topic `{topic}`: {code}", cfg.brokers);
    }
    let mut parts: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    parts.sort_unstable();
    Ok(if parts.is_empty() { None } else { Some(parts) })
}

/// The partitions of the event topic; a missing topic is an error that says what to do.
pub fn input_partitions(client: &BaseConsumer, cfg: &KafkaConfig) -> Result<Vec<i32>> {
    partitions(client, cfg, &cfg.topic)?.ok_or_else(|| {
        anyhow!(
            "Kafka topic `{}` does not exist on {} (set `kafka.topic`, or create it: `clickflow produce --config FILE --input EVENTS.jsonl --partitions N`)",
            cfg.topic,
            cfg.brokers
        )
    })
}

/// Low and high watermarks of each partition.
pub fn watermarks(client: &BaseConsumer, cfg: &KafkaConfig, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, (i64, i64)>> {
    let timeout = Duration::from_millis(cfg.connect_timeout.ms);
    partitions
        .iter()
        .map(|&p| {
            let wm = client
                .fetch_watermarks(topic, p, timeout)
                .with_context(|| format!("cannot read the offsets of `{topic}` partition {p} on {}", cfg.brokers))?;
            Ok((p, wm))
        })
        .collect()
}

/// Makes sure `topic` exists: creates it with `partitions` partitions when
/// missing and `kafka.create_topics` allows, else fails naming it.
pub fn ensure_topic(client: &BaseConsumer, cfg: &KafkaConfig, topic: &str, partitions: i32) -> Result<()> {
    if self::partitions(client, cfg, topic)?.is_some() {
        return Ok(());
    }
    if !cfg.create_topics {
        bail!("Kafka topic `{topic}` does not exist on {} (create it, or set `kafka.create_topics = true`)", cfg.brokers);
    }
    create_topic(client, cfg, topic, partitions)
}

/// Creates `topic`; one that exists already is fine. `client` (from
/// [`metadata_client`]) waits for it to show up.
pub fn create_topic(client: &BaseConsumer, cfg: &KafkaConfig, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = create(&client_config(cfg, &[], &BTreeMap::new(), &[]), cfg, "admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_millis(cfg.connect_timeout.ms)));
    let results = block_on(admin.create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(cfg.topic_replication))], &opts))
        .with_context(|| format!("cannot create Kafka topic `{topic}` on {}", cfg.brokers))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create Kafka topic `{name}` on {}: {code}", cfg.brokers),
        }
    }
    // Wait until the broker describes it, so that the first produce finds it.
    for _ in 0..100 {
        if self::partitions(client, cfg, topic)?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("Kafka topic `{topic}` was created on {} but does not show up in its metadata", cfg.brokers)
}
