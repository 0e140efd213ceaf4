//! `[kafka]`: the brokers, the event topic, the output topics and extra
//! librdkafka settings.

use crate::units::Duration;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[kafka]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic events are read from (`input.kind = "kafka"`).
    pub topic: String,
    /// The consumer group under which offsets are committed once the store
    /// holds the ticks they fed (partitions are assigned by clickflow, not by
    /// the group).
    pub group_id: String,
    /// Trend deltas go here when `output.trend_deltas = "kafka"`.
    pub trend_deltas_topic: String,
    /// Dead letters go here when `output.dead_letters = "kafka"`.
    pub dead_letter_topic: String,
    /// Create missing output topics at start (else a missing one is an error).
    pub create_topics: bool,
    /// Partitions of output topics clickflow creates.
    pub topic_partitions: i32,
    /// Replication factor of output topics clickflow creates (-1: the broker's default).
    pub topic_replication: i32,
    /// How long to wait for the brokers at start before giving up.
    pub connect_timeout: Duration,
    /// Extra librdkafka consumer properties (`"fetch.max.bytes" = "52428800"`).
    pub consumer: BTreeMap<String, String>,
    /// Extra librdkafka producer properties (`"linger.ms" = "5"`).
    pub producer: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "clickflow.events".into(),
            group_id: "clickflow".into(),
            trend_deltas_topic: "clickflow.trend-deltas".into(),
            dead_letter_topic: "clickflow.dead-letter".into(),
            create_topics: true,
            topic_partitions: 1,
            topic_replication: 1,
            connect_timeout: Duration { ms: 10_000 },
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
        }
    }
}

/// Properties clickflow sets itself, and the key to use instead.
const MANAGED: [(&str, &str); 8] = [
    ("bootstrap.servers", "kafka.brokers"),
    ("metadata.broker.list", "kafka.brokers"),
    ("group.id", "kafka.group_id"),
    ("enable.auto.commit", "nothing: offsets are committed after the store holds their ticks"),
    ("enable.auto.offset.store", "nothing: offsets are committed after the store holds their ticks"),
    ("enable.partition.eof", "nothing: clickflow needs partition ends for --until-end"),
    ("enable.idempotence", "nothing: the producers are always idempotent"),
    ("auto.offset.reset", "nothing: partitions are read from the earliest offset, which rebuilds the state"),
];

fn check_topic(key: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." {
        return Err(format!("`{key}` {name:?} is not a valid Kafka topic name (1 to 249 characters)"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("`{key}` {name:?} is not a valid Kafka topic name ({c:?}: only letters, digits, '.', '_' and '-')"));
    }
    Ok(())
}

impl KafkaConfig {
    /// Checks values serde cannot; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("`kafka.brokers` is empty: give host:port[,host:port...]".into());
        }
        check_topic("kafka.topic", &self.topic)?;
        check_topic("kafka.trend_deltas_topic", &self.trend_deltas_topic)?;
        check_topic("kafka.dead_letter_topic", &self.dead_letter_topic)?;
        if self.group_id.is_empty() {
            return Err("`kafka.group_id` is empty".into());
        }
        if self.topic_partitions < 1 {
            return Err(format!("`kafka.topic_partitions` must be at least 1, not {}", self.topic_partitions));
        }
        if self.topic_replication < 1 && self.topic_replication != -1 {
            return Err(format!("`kafka.topic_replication` must be at least 1, or -1 for the broker's default, not {}", self.topic_replication));
        }
        if self.connect_timeout.ms == 0 {
            return Err("`kafka.connect_timeout` must be longer than 0".into());
        }
        for (section, props) in [("consumer", &self.consumer), ("producer", &self.producer)] {
            for key in props.keys() {
                if let Some((_, instead)) = MANAGED.iter().find(|(k, _)| k == key) {
                    return Err(format!("`kafka.{section}.\"{key}\"` is set by clickflow; use {instead}"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_key() {
        let mut c = KafkaConfig::default();
        assert!(c.check().is_ok());
        c.topic = "events!".into();
        assert!(c.check().unwrap_err().contains("`kafka.topic`"));
        let mut c = KafkaConfig::default();
        c.consumer.insert("group.id".into(), "x".into());
        assert!(c.check().unwrap_err().contains("`kafka.consumer.\"group.id\"`"));
        let c = KafkaConfig { topic_partitions: 0, ..KafkaConfig::default() };
        assert!(c.check().unwrap_err().contains("`kafka.topic_partitions`"));
    }
}
