//! The Kafka connector of one run: one metadata client for every topic the
//! run touches, and the assignment of the event topic's partitions to the
//! timely workers of the whole cluster.
//!
//! **Assignment.** Partition `i` of the topic's sorted partition list goes
//! to global worker `i % (processes × workers)`: every process computes the
//! same assignment from the same metadata, with no consumer-group
//! rebalancing inside a run. Each partition is one reader with its own
//! watermark (SPEC section 2).

use super::admin::{ensure_topic, input_partitions, metadata_client, watermarks};
use super::consumer::PartitionRead;
use super::KafkaConfig;
use crate::cluster::Cluster;
use anyhow::Result;
use rdkafka::consumer::BaseConsumer;

/// A run's link to Kafka's metadata.
pub struct Kafka {
    config: KafkaConfig,
    client: BaseConsumer,
}

/// The partitions (of the sorted list `partitions`) that global worker
/// `global` of `peers` reads.
pub fn assign(partitions: &[i32], peers: usize, global: usize) -> Vec<i32> {
    partitions.iter().enumerate().filter(|(i, _)| i % peers == global).map(|(_, &p)| p).collect()
}

impl Kafka {
    /// The metadata client; an unreachable broker fails later, naming it,
    /// on the first metadata request.
    pub fn connect(config: &KafkaConfig) -> Result<Kafka> {
        Ok(Kafka { config: config.clone(), client: metadata_client(config)? })
    }

    /// The `[kafka]` config.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// The partitions each local worker of this process reads, with where
    /// each starts and (`until_end`: the high-water mark at start) ends.
    pub fn worker_partitions(&self, cluster: &Cluster, until_end: bool) -> Result<Vec<Vec<PartitionRead>>> {
        let partitions = input_partitions(&self.client, &self.config)?;
        let marks = watermarks(&self.client, &self.config, &self.config.topic, &partitions)?;
        Ok((0..cluster.workers)
            .map(|local| {
                assign(&partitions, cluster.peers(), cluster.global(local))
                    .into_iter()
                    .map(|p| {
                        let (low, high) = marks[&p];
                        PartitionRead { partition: p, end: until_end.then_some(high), start: low, high }
                    })
                    .collect()
            })
            .collect())
    }

    /// Makes sure an output topic exists (creating it when missing and
    /// `kafka.create_topics` allows).
    pub fn ensure_topic(&self, topic: &str) -> Result<()> {
        ensure_topic(&self.client, &self.config, topic, self.config.topic_partitions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_go_round_robin_over_the_global_workers() {
        let parts = [0, 1, 2, 3, 4];
        assert_eq!(assign(&parts, 2, 0), [0, 2, 4]);
        assert_eq!(assign(&parts, 2, 1), [1, 3]);
        assert_eq!(assign(&parts, 4, 3), [3]);
        assert!(assign(&[0], 4, 2).is_empty(), "more workers than partitions: some read nothing");
        let all: Vec<i32> = (0..3).flat_map(|g| assign(&parts, 3, g)).collect();
        assert_eq!(all.len(), parts.len(), "each partition exactly once");
    }
}
