//! The Kafka source: one consumer per worker over the partitions assigned to
//! it, cut into chunks of one partition's messages (each message value is
//! one event line; an empty or null value is skipped like a blank line), and
//! the committer of offsets once the store holds their ticks.
//!
//! Partitions are assigned explicitly (`assign`, no group subscription, so
//! no rebalancing inside a run) and read from the earliest retained offset.
//! With an end (`--until-end`), a partition is done at the high-water mark it
//! had at start; later messages are left for the next run. A chunk is cut
//! when it has [`CHUNK_LINES`] messages, when its partition reaches its end
//! or its end of data, or after [`MAX_CHUNK_AGE`], so a live event waits at
//! most that long in the consumer.
//!
//! **Watermark alignment** (Flink's `maxAllowedWatermarkDrift`). Each
//! partition has its own queue, polled in turn. A partition whose watermark
//! is more than `input.max_drift` ahead of the lowest active reader anywhere
//! is not polled until the others catch up ([`Alignment`], set by the reader
//! operator): otherwise one fast partition's events pile up, unsealed, in the
//! user stage while a slow one holds the clock back. The partition holding
//! the clock back is never ahead, so reading always progresses; what waits
//! is bounded by librdkafka's prefetch (`queued.max.messages.kbytes`).

use super::{client_config, create, KafkaConfig};
use crate::sinks::Committer;
use crate::sources::decode::{Chunk, ChunkSource, CHUNK_LINES};
use anyhow::{anyhow, bail, Context, Result};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use crate::sources::reader::Alignment;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a message waits in a partial chunk.
pub const MAX_CHUNK_AGE: Duration = Duration::from_millis(10);

/// One partition a worker reads.
#[derive(Debug, Clone, Copy)]
pub struct PartitionRead {
    /// The partition.
    pub partition: i32,
    /// Read up to (not including) this offset, then stop (`--until-end`).
    pub end: Option<i64>,
    /// The earliest offset at start (a partition with `end <= start` is empty).
    pub start: i64,
    /// The high-water mark at start: once every message below it is read,
    /// the partition has caught up (SPEC section 2, wall-clock mode).
    pub high: i64,
}

impl PartitionRead {
    /// Whether the partition held nothing at start: caught up at once.
    pub fn empty_at_start(&self) -> bool {
        self.high <= self.start
    }
}

/// A consumer config with clickflow's settings.
fn consumer_config(cfg: &KafkaConfig) -> rdkafka::config::ClientConfig {
    let defaults = [
        ("fetch.wait.max.ms", "100"),
        // Brokers that ignore fetch.max.bytes (noida-db answers with a whole
        // partition's backlog) would otherwise be refused over and over.
        ("receive.message.max.bytes", "1000000000"),
        ("queued.max.messages.kbytes", "65536"),
    ];
    let forced = [
        ("group.id", cfg.group_id.as_str()),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "true"),
        ("auto.offset.reset", "earliest"),
    ];
    client_config(cfg, &defaults, &cfg.consumer, &forced)
}

struct Part {
    read: PartitionRead,
    chunk: Chunk,
    since: Option<Instant>,
    done: bool,
    /// Every message below `read.high` has been read.
    caught_up: bool,
    /// A chunk has told the reader so.
    told_caught_up: bool,
}

/// The partitions' chunks under construction, and the cut ones.
struct Parts {
    parts: Vec<Part>,
    index: HashMap<i32, usize>,
    ready: VecDeque<Chunk>,
}

/// One worker's partitions as a chunk source.
pub struct KafkaChunks {
    consumer: Arc<BaseConsumer>,
    /// Per reader, its partition's own queue.
    queues: Vec<PartitionQueue<rdkafka::consumer::DefaultConsumerContext>>,
    alignment: Arc<Alignment>,
    turn: usize,
    topic: String,
    brokers: String,
    state: Parts,
    stop: Arc<AtomicBool>,
    last_warning: Option<Instant>,
}

impl KafkaChunks {
    /// A consumer assigned `parts` of `kafka.topic`; chunks name them by
    /// their index in `parts`. Stops early when `stop` is set.
    pub fn new(cfg: &KafkaConfig, parts: &[PartitionRead], stop: Arc<AtomicBool>, alignment: Arc<Alignment>) -> Result<KafkaChunks> {
        let consumer: Arc<BaseConsumer> = Arc::new(create(&consumer_config(cfg), cfg, "consumer")?);
        let mut tpl = TopicPartitionList::new();
        for p in parts {
            tpl.add_partition_offset(&cfg.topic, p.partition, Offset::Beginning)
                .with_context(|| format!("cannot assign `{}` partition {}", cfg.topic, p.partition))?;
        }
        consumer.assign(&tpl).with_context(|| format!("cannot assign the partitions of `{}` on {}", cfg.topic, cfg.brokers))?;
        let queues = parts
            .iter()
            .map(|p| consumer.split_partition_queue(&cfg.topic, p.partition).with_context(|| format!("cannot give `{}` partition {} its own queue", cfg.topic, p.partition)))
            .collect::<Result<Vec<_>>>()?;
        let mut state = Parts {
            parts: parts.iter().map(|&read| Part { read, chunk: Chunk::default(), since: None, done: false, caught_up: read.empty_at_start(), told_caught_up: read.empty_at_start() }).collect(),
            index: parts.iter().enumerate().map(|(i, p)| (p.partition, i)).collect(),
            ready: VecDeque::new(),
        };
        for r in 0..state.parts.len() {
            if state.parts[r].read.end.is_some_and(|end| end <= state.parts[r].read.start) {
                state.cut(r, true);
            }
        }
        Ok(KafkaChunks { consumer, queues, alignment, turn: 0, topic: cfg.topic.clone(), brokers: cfg.brokers.clone(), state, stop, last_warning: None })
    }

    /// No more data in `partition` for now: cut its chunk; with an end, it
    /// may be done (past the last message, e.g. behind a transaction marker);
    /// past the high-water mark at start, it has caught up (the messages
    /// below it may be gone: deleted by retention, or transaction markers).
    fn at_eof(&mut self, partition: i32) {
        let Some(&r) = self.state.index.get(&partition) else { return };
        let position = self.position(partition);
        let read = &self.state.parts[r].read;
        let done = read.end.is_some_and(|end| position.is_some_and(|pos| pos >= end));
        if position.is_some_and(|pos| pos >= read.high) {
            self.state.parts[r].caught_up = true;
        }
        self.state.cut(r, done);
    }

    fn position(&self, partition: i32) -> Option<i64> {
        let tpl = self.consumer.position().ok()?;
        match tpl.find_partition(&self.topic, partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    fn warn(&mut self, e: &KafkaError) {
        if self.last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            self.last_warning = Some(Instant::now());
            eprintln!("clickflow: Kafka consumer of `{}` at {}: {e} (retrying)", self.topic, self.brokers);
        }
    }
}

impl Parts {
    /// Moves partition `r`'s chunk to the ready queue (`last`: it is done).
    /// An empty chunk goes only to end the partition or to tell the reader
    /// that it has caught up.
    fn cut(&mut self, r: usize, last: bool) {
        let part = &mut self.parts[r];
        let news = part.caught_up && !part.told_caught_up;
        if part.done || (part.chunk.spans.is_empty() && !last && !news) {
            return;
        }
        let mut chunk = std::mem::take(&mut part.chunk);
        chunk.reader = r;
        chunk.last = last;
        chunk.caught_up = part.caught_up;
        part.told_caught_up = part.caught_up;
        part.done = last;
        part.since = None;
        self.ready.push_back(chunk);
    }

    fn take(&mut self, partition: i32, offset: i64, payload: Option<&[u8]>) {
        let Some(&r) = self.index.get(&partition) else { return };
        let part = &mut self.parts[r];
        if part.done {
            return;
        }
        let end = part.read.end;
        if end.is_some_and(|e| offset >= e) {
            self.cut(r, true);
            return;
        }
        if part.chunk.spans.is_empty() {
            part.chunk.raw.reserve(CHUNK_LINES * 256);
            part.since = Some(Instant::now());
        }
        part.chunk.push(payload.unwrap_or_default(), Some(offset));
        part.caught_up |= offset + 1 >= part.read.high;
        let news = part.caught_up && !part.told_caught_up;
        let full = part.chunk.spans.len() >= CHUNK_LINES;
        let at_end = end.is_some_and(|e| offset + 1 >= e);
        if full || at_end || news {
            self.cut(r, at_end);
        }
    }

    /// Gives up on every partition with `error` (a fatal consumer error).
    fn fail(&mut self, error: anyhow::Error) {
        let mut error = Some(error);
        for r in 0..self.parts.len() {
            if !self.parts[r].done {
                self.cut(r, true);
                if let (Some(e), Some(chunk)) = (error.take(), self.ready.back_mut()) {
                    chunk.error = Some(e);
                }
            }
        }
    }
}

/// What one poll gave.
enum Polled {
    Nothing,
    Message,
    Eof(i32),
    Error(KafkaError),
}

impl KafkaChunks {
    fn handle(&mut self, polled: Polled) {
        match polled {
            Polled::Nothing | Polled::Message => {}
            Polled::Eof(p) => self.at_eof(p),
            Polled::Error(e @ KafkaError::MessageConsumptionFatal(_)) => {
                let context = format!("reading `{}` from Kafka at {} failed for good", self.topic, self.brokers);
                self.state.fail(anyhow!(e).context(context));
            }
            Polled::Error(e) => self.warn(&e),
        }
    }

    /// Takes what partition queue `r` has ready, up to a chunk; whether it had anything.
    fn drain(&mut self, r: usize) -> bool {
        let mut any = false;
        for _ in 0..CHUNK_LINES {
            let polled = match self.queues[r].poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => {
                    self.state.take(m.partition(), m.offset(), m.payload());
                    Polled::Message
                }
                Some(Err(KafkaError::PartitionEOF(p))) => Polled::Eof(p),
                Some(Err(e)) => Polled::Error(e),
            };
            any = true;
            let stop = !matches!(polled, Polled::Message);
            self.handle(polled);
            if stop || !self.state.ready.is_empty() || self.state.parts[r].done {
                break;
            }
        }
        any
    }
}

impl ChunkSource for KafkaChunks {
    fn next_chunk(&mut self) -> Option<Chunk> {
        loop {
            if let Some(c) = self.state.ready.pop_front() {
                return Some(c);
            }
            if self.state.parts.iter().all(|p| p.done) || self.stop.load(Ordering::Relaxed) {
                return None;
            }
            let n = self.state.parts.len();
            // Each partition that is not too far ahead, in turn.
            let mut got = false;
            for k in 0..n {
                let r = (self.turn + k) % n;
                if !self.state.parts[r].done && !self.alignment.is_ahead(r) {
                    got |= self.drain(r);
                }
            }
            self.turn = (self.turn + 1) % n.max(1);
            // The main queue: callbacks, errors, and anything fetched before the split.
            let wait = if got { Duration::ZERO } else { Duration::from_millis(1) };
            let polled = match self.consumer.poll(wait) {
                None => Polled::Nothing,
                Some(Ok(m)) => {
                    self.state.take(m.partition(), m.offset(), m.payload());
                    Polled::Message
                }
                Some(Err(KafkaError::PartitionEOF(p))) => Polled::Eof(p),
                Some(Err(e)) => Polled::Error(e),
            };
            self.handle(polled);
            for r in 0..n {
                if self.state.parts[r].since.is_some_and(|t| t.elapsed() >= MAX_CHUNK_AGE) {
                    self.state.cut(r, false);
                }
            }
        }
    }
}

/// Commits offsets under `kafka.group_id`; retries while the brokers are away.
pub struct OffsetCommitter {
    consumer: BaseConsumer,
    topic: String,
    brokers: String,
}

impl OffsetCommitter {
    /// A committer for `kafka.topic`.
    pub fn new(cfg: &KafkaConfig) -> Result<OffsetCommitter> {
        let consumer: BaseConsumer = create(&consumer_config(cfg), cfg, "offset committer")?;
        Ok(OffsetCommitter { consumer, topic: cfg.topic.clone(), brokers: cfg.brokers.clone() })
    }
}

impl Committer for OffsetCommitter {
    fn commit(&mut self, offsets: &[(i32, i64)]) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for &(p, o) in offsets {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(o))?;
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // Errors no retry mends; anything else (brokers away, the
                    // coordinator moving) is retried.
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::GroupAuthorizationFailed
                                | RDKafkaErrorCode::TopicAuthorizationFailed
                                | RDKafkaErrorCode::InvalidGroupId
                                | RDKafkaErrorCode::UnknownTopicOrPartition
                                | RDKafkaErrorCode::UnknownTopic
                                | RDKafkaErrorCode::UnknownPartition
                                | RDKafkaErrorCode::InvalidArgument
                                | RDKafkaErrorCode::OffsetMetadataTooLarge
                                | RDKafkaErrorCode::InvalidCommitOffsetSize
                                | RDKafkaErrorCode::UnsupportedVersion
                        )
                    ) {
                        bail!("Kafka at {} refused the offset commit for `{}`: {e}", self.brokers, self.topic);
                    }
                    eprintln!("clickflow: cannot commit offsets of `{}` to Kafka at {} ({e}); retrying in {} ms", self.topic, self.brokers, backoff.as_millis());
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
