//! Kafka sinks: trend deltas (SPEC section 6, key `<entity_type>:<entity_id>`)
//! and dead letters (SPEC section 7, key = their `source`).
//!
//! Both go through a [`ReliableProducer`]: idempotent (so librdkafka's own
//! retries neither duplicate nor reorder), and a message whose delivery still
//! fails (the broker was away longer than `message.timeout.ms`) is kept and
//! sent again, in its original order, by [`ReliableProducer::flush`], which
//! returns only once every message is acknowledged. A broker that stays away
//! blocks the flush (logged every few seconds), never loses a message; an
//! error no retry can fix (a message too large, no permission) fails the run.

use super::{client_config, KafkaConfig};
use crate::sinks::records::{dead_letter_json, delta_json, delta_key, Reason};
use crate::sinks::{DeadLetters, TrendDeltas};
use anyhow::{anyhow, bail, Context, Result};
use clickflow_dataflows::messages::TrendChange;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Dead letters carry at most this much of the raw line, so that a huge
/// malformed message still fits a Kafka message; the detail says when it was cut.
pub const DEAD_LETTER_RAW_MAX: usize = 256 * 1024;

/// A message whose delivery failed, kept to be sent again.
struct Failed {
    seq: usize,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    error: KafkaError,
}

/// Collects failed deliveries.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Vec<Failed>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        if let Err((error, m)) = result {
            let failed = Failed { seq, key: m.key().map(<[u8]>::to_vec), payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(), error: error.clone() };
            self.failed.lock().unwrap_or_else(|p| p.into_inner()).push(failed);
        }
    }
}

/// Errors no retry can fix.
fn permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::Fatal
        )
    )
}

/// An idempotent producer to one topic that never drops a message.
pub struct ReliableProducer {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    brokers: String,
    seq: usize,
}

impl ReliableProducer {
    /// A producer to `topic`, with `kafka.producer` properties on top of clickflow's defaults.
    pub fn new(cfg: &KafkaConfig, topic: &str) -> Result<ReliableProducer> {
        let defaults = [("linger.ms", "5"), ("message.timeout.ms", "30000"), ("compression.type", "lz4")];
        let c = client_config(cfg, &defaults, &cfg.producer, &[("enable.idempotence", "true")]);
        let producer: ThreadedProducer<Deliveries> = c
            .create_with_context(Deliveries::default())
            .with_context(|| format!("cannot create the Kafka producer for {} (check the `kafka.producer` properties)", cfg.brokers))?;
        Ok(ReliableProducer { producer, topic: topic.to_owned(), brokers: cfg.brokers.clone(), seq: 0 })
    }

    /// Queues one message; waits while librdkafka's queue is full.
    pub fn send(&mut self, key: Option<&[u8]>, payload: &[u8]) -> Result<()> {
        self.seq += 1;
        self.send_seq(self.seq, key, payload)
    }

    fn send_seq(&self, seq: usize, key: Option<&[u8]>, payload: &[u8]) -> Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(&self.topic, seq).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(anyhow!(e)).with_context(|| format!("Kafka at {} rejected a message to `{}`", self.brokers, self.topic)),
            }
        }
    }

    /// Waits until every message sent is acknowledged, sending failed ones again.
    pub fn flush(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        let mut last_log = Instant::now();
        loop {
            let flushed = self.producer.flush(Duration::from_secs(2));
            let mut failed = std::mem::take(&mut *self.producer.context().failed.lock().unwrap_or_else(|p| p.into_inner()));
            if failed.is_empty() {
                if flushed.is_ok() {
                    return Ok(());
                }
                if last_log.elapsed() >= Duration::from_secs(5) {
                    last_log = Instant::now();
                    eprintln!(
                        "clickflow: waiting {:.0} s for Kafka at {} to acknowledge {} messages to `{}`",
                        started.elapsed().as_secs_f64(),
                        self.brokers,
                        self.producer.in_flight_count(),
                        self.topic
                    );
                }
                continue;
            }
            if let Some((msg, reason)) = self.producer.client().fatal_error() {
                bail!("the Kafka producer for `{}` on {} failed for good: {msg} ({reason:?})", self.topic, self.brokers);
            }
            if let Some(f) = failed.iter().find(|f| permanent(&f.error)) {
                bail!("Kafka at {} rejected a message to `{}`: {}", self.brokers, self.topic, f.error);
            }
            eprintln!(
                "clickflow: {} messages to `{}` on Kafka at {} not delivered ({}); sending them again in {} ms",
                failed.len(),
                self.topic,
                self.brokers,
                failed[0].error,
                backoff.as_millis()
            );
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
            failed.sort_by_key(|f| f.seq);
            for f in &failed {
                self.send_seq(f.seq, f.key.as_deref(), &f.payload)?;
            }
        }
    }
}

/// Trend deltas to `kafka.trend_deltas_topic`.
pub struct KafkaDeltas(ReliableProducer);

impl KafkaDeltas {
    /// The producer.
    pub fn new(cfg: &KafkaConfig) -> Result<Self> {
        Ok(KafkaDeltas(ReliableProducer::new(cfg, &cfg.trend_deltas_topic)?))
    }
}

impl TrendDeltas for KafkaDeltas {
    fn write(&mut self, changes: &[&TrendChange]) -> Result<()> {
        for c in changes {
            self.0.send(Some(delta_key(c).as_bytes()), delta_json(c).to_string().as_bytes())?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.0.flush()
    }
}

/// Dead letters to `kafka.dead_letter_topic`.
pub struct KafkaDeadLetters(ReliableProducer);

impl KafkaDeadLetters {
    /// The producer.
    pub fn new(cfg: &KafkaConfig) -> Result<Self> {
        Ok(KafkaDeadLetters(ReliableProducer::new(cfg, &cfg.dead_letter_topic)?))
    }
}

/// `raw` cut to [`DEAD_LETTER_RAW_MAX`] bytes, and the note for the detail if it was.
pub fn cut_raw(raw: &[u8]) -> (&[u8], Option<String>) {
    if raw.len() <= DEAD_LETTER_RAW_MAX {
        return (raw, None);
    }
    (&raw[..DEAD_LETTER_RAW_MAX], Some(format!(" (raw cut to its first {DEAD_LETTER_RAW_MAX} of {} bytes)", raw.len())))
}

impl DeadLetters for KafkaDeadLetters {
    fn write(&mut self, reason: Reason, detail: &str, source: &str, raw: &[u8]) -> Result<()> {
        let (raw, note) = cut_raw(raw);
        let detail = match note {
            Some(n) => format!("{detail}{n}"),
            None => detail.to_owned(),
        };
        self.0.send(Some(source.as_bytes()), dead_letter_json(reason, &detail, source, raw).to_string().as_bytes())
    }
    fn flush(&mut self) -> Result<()> {
        self.0.flush()
    }
}
