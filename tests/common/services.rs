//! Helpers for tests against the real services `scripts/services.sh start`
//! runs on 127.0.0.1: Redis (URL from `CLICKFLOW_REDIS_URL`, else
//! `.services/env`, else redis://127.0.0.1:16379/) and the Kafka-protocol
//! broker (`CLICKFLOW_KAFKA_BROKERS`, else `.services/env`, else
//! 127.0.0.1:19092).
//!
//! * Redis: [`redis_url`], [`connect_redis`], [`clear_redis`], [`read_redis`]
//!   (the store as a [`StoreSnapshot`]), [`expected_for_redis`], [`dump_redis`];
//! * Kafka: [`kafka_brokers`], [`unique`] names, [`read_topic`],
//!   [`produce_raw`] of [`Msg`]s, [`committed`], [`high_watermarks`];
//! * a run's Kafka and Redis names and config: [`Names`], [`config_text`],
//!   [`write_config`], [`produce_case`].

use super::{describe_output, run_clickflow, Case, StoreSnapshot, TrendRow};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer, DefaultProducerContext};
use rdkafka::{Message, Offset, TopicPartitionList};
use redis::Commands;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn from_env_file(var: &str) -> Option<String> {
    if let Ok(v) = std::env::var(var) {
        return Some(v);
    }
    let dir = std::env::var_os("CLICKFLOW_SERVICES_DIR").map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".services"), PathBuf::from);
    let env = dir.join("env");
    let prefix = format!("{var}=");
    std::fs::read_to_string(env).ok()?.lines().find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned))
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

/// The test Redis.
pub fn redis_url() -> String {
    from_env_file("CLICKFLOW_REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:16379/".into())
}

/// A connection; panics with what to do when there is no server.
pub fn connect_redis(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("no Redis at {url} ({e}): run `scripts/services.sh start` first"))
}

/// Deletes every key under `prefix`.
pub fn clear_redis(conn: &mut redis::Connection, prefix: &str) {
    let keys: Vec<String> = conn.keys(format!("{prefix}*")).unwrap();
    for k in keys {
        let _: () = conn.del(k).unwrap();
    }
}

fn json_field(v: &str) -> Value {
    serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()))
}

/// Reads everything under `prefix` into the harness's snapshot form. Trending
/// sorted sets carry no counts or tie order: entries come back by score
/// (descending), then id, with count 0, and are compared as such.
pub fn read_redis(conn: &mut redis::Connection, prefix: &str) -> StoreSnapshot {
    let mut snap = StoreSnapshot::default();
    let meta: Option<String> = conn.hget(format!("{prefix}meta"), "as_of").unwrap();
    snap.as_of = meta.map(|v| v.parse().unwrap());
    let keys: Vec<String> = conn.keys(format!("{prefix}*")).unwrap();
    for key in keys {
        let rest = &key[prefix.len()..];
        if let Some(user) = rest.strip_prefix("user:") {
            let fields: BTreeMap<String, String> = conn.hgetall(&key).unwrap();
            let mut obj = serde_json::Map::new();
            for (k, v) in fields {
                if k != "as_of" {
                    obj.insert(k, json_field(&v));
                }
            }
            for nullable in ["last_cart_session_ts", "last_purchase_ts", "cart_session_gap_ms"] {
                obj.entry(nullable).or_insert(Value::Null);
            }
            snap.users.insert(user.to_owned(), Value::Object(obj));
        } else if let Some(trend) = rest.strip_prefix("trend:") {
            let f: BTreeMap<String, String> = conn.hgetall(&key).unwrap();
            snap.trends.insert(
                trend.to_owned(),
                TrendRow { window_ms: f["window_ms"].parse().unwrap(), count: f["count"].parse().unwrap(), baseline_count: f["baseline_count"].parse().unwrap(), score: f["score"].parse().unwrap() },
            );
        } else if let Some(list) = rest.strip_prefix("trending:") {
            let entries: Vec<(String, f64)> = conn.zrevrange_withscores(&key, 0, -1).unwrap();
            snap.trending.insert(list.to_owned(), by_score(entries.into_iter().map(|(id, s)| (id, s, 0)).collect()));
        }
    }
    snap
}

fn by_score(mut entries: Vec<(String, f64, u64)>) -> Vec<(String, f64, u64)> {
    entries.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    entries
}

/// expected.json with trending lists in the form Redis can hold.
pub fn expected_for_redis(case: &Case) -> Value {
    let mut want = case.expected();
    if let Some(Value::Object(lists)) = want.get_mut("trending") {
        for entries in lists.values_mut() {
            let v: Vec<(String, f64, u64)> = entries.as_array().unwrap().iter().map(|e| (e[0].as_str().unwrap().to_owned(), e[1].as_f64().unwrap(), 0)).collect();
            *entries = Value::Array(by_score(v).into_iter().map(|(id, s, c)| serde_json::json!([id, s, c])).collect());
        }
    }
    want
}

/// `<prefix>meta as_of` (`None`: no tick written yet).
pub fn redis_as_of(conn: &mut redis::Connection, prefix: &str) -> Option<u64> {
    conn.hget::<_, _, Option<u64>>(format!("{prefix}meta"), "as_of").unwrap_or_else(|e| panic!("cannot read {prefix}meta as_of: {e}"))
}

/// Every key under `prefix` with its full value, for exact equality.
pub fn dump_redis(conn: &mut redis::Connection, prefix: &str) -> BTreeMap<String, String> {
    let keys: Vec<String> = conn.keys(format!("{prefix}*")).unwrap();
    let mut out = BTreeMap::new();
    for k in keys {
        let kind: String = redis::cmd("TYPE").arg(&k).query(conn).unwrap();
        let v = match kind.as_str() {
            "hash" => format!("{:?}", conn.hgetall::<_, BTreeMap<String, String>>(&k).unwrap()),
            _ => format!("{:?}", conn.zrange_withscores::<_, Vec<(String, f64)>>(&k, 0, -1).unwrap()),
        };
        out.insert(k, v);
    }
    out
}

// ---------------------------------------------------------------------------
// Kafka
// ---------------------------------------------------------------------------

/// The test broker.
pub fn kafka_brokers() -> String {
    from_env_file("CLICKFLOW_KAFKA_BROKERS").unwrap_or_else(|| "127.0.0.1:19092".into())
}

/// A name no other test run uses: `<label>-<pid>-<nanos>`, Kafka-safe.
pub fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let safe: String = label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' }).collect();
    format!("{safe}-{}-{nanos}", std::process::id())
}

/// One message read back.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value (empty for null).
    pub payload: Vec<u8>,
}

fn consumer(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap_or_else(|e| panic!("no Kafka consumer for {brokers}: {e}"))
}

/// The partitions of `topic` (empty if it does not exist).
pub fn topic_partitions(brokers: &str, topic: &str) -> Vec<i32> {
    let c = consumer(brokers);
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap_or_else(|e| panic!("no Kafka at {brokers} ({e}): run `scripts/services.sh start` first"));
    md.topics().iter().filter(|t| t.name() == topic && t.error().is_none()).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect()
}

/// Every message of `topic`, partition by partition in offset order.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<Record> {
    let parts = topic_partitions(brokers, topic);
    let marks = high_watermarks(brokers, topic);
    let c = consumer(brokers);
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0;
    for &p in &parts {
        if marks.get(&p).copied().unwrap_or(0) > 0 {
            tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
            remaining += 1;
        }
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return out;
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut finished = std::collections::BTreeSet::new();
    while finished.len() < remaining {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(Record { partition: m.partition(), offset: m.offset(), key: m.key().map(<[u8]>::to_vec), payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default() });
                if m.offset() + 1 >= marks[&m.partition()] {
                    finished.insert(m.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) if out.iter().filter(|r| r.partition == p).map(|r| r.offset + 1).max().unwrap_or(0) >= marks[&p] => {
                finished.insert(p);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// The values of every message of `topic` as text lines, in partition and offset order.
pub fn topic_lines(brokers: &str, topic: &str) -> String {
    read_topic(brokers, topic).iter().map(|r| String::from_utf8_lossy(&r.payload).into_owned() + "\n").collect()
}

/// High-water mark per partition.
pub fn high_watermarks(brokers: &str, topic: &str) -> BTreeMap<i32, i64> {
    let c = consumer(brokers);
    topic_partitions(brokers, topic).into_iter().map(|p| (p, c.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1)).collect()
}

/// The offsets `group` has committed for `topic`, per partition (absent: none).
pub fn committed(brokers: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in topic_partitions(brokers, topic) {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// One message to produce.
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    /// `None`: by key, or any.
    pub partition: Option<i32>,
    /// The key.
    pub key: Option<&'a [u8]>,
    /// `None`: a null value.
    pub payload: Option<&'a [u8]>,
}

impl<'a> Msg<'a> {
    /// A message with this value, no key, to any partition.
    pub fn value(payload: &'a [u8]) -> Self {
        Msg { partition: None, key: None, payload: Some(payload) }
    }

    /// A message with a null value.
    pub fn null() -> Self {
        Msg { partition: None, key: None, payload: None }
    }

    /// The same message, to `partition`.
    pub fn to(self, partition: i32) -> Self {
        Msg { partition: Some(partition), ..self }
    }
}

/// Produces raw messages to `topic`, created with `partitions` first.
pub fn produce_raw(brokers: &str, topic: &str, partitions: i32, messages: &[Msg<'_>]) {
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let new = rdkafka::admin::NewTopic::new(topic, partitions, rdkafka::admin::TopicReplication::Fixed(1));
    let result = futures_block_on(admin.create_topics(&[new], &rdkafka::admin::AdminOptions::new()));
    result.unwrap_or_else(|e| panic!("cannot create {topic}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while topic_partitions(brokers, topic).len() < partitions as usize {
        assert!(Instant::now() < deadline, "{topic} did not show up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "10000000")
        .create()
        .unwrap();
    for m in messages {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(part) = m.partition {
            r = r.partition(part);
        }
        if let Some(k) = m.key {
            r = r.key(k);
        }
        if let Some(v) = m.payload {
            r = r.payload(v);
        }
        p.send(r).map_err(|(e, _)| e).unwrap_or_else(|e| panic!("producing to {topic}: {e}"));
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Waits for a future on this thread (rdkafka's admin futures are driven by its own thread).
fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(100)),
        }
    }
}

/// A Redis server of a test's own, on a free port, without persistence
/// (a restart comes back empty); killed on drop.
pub struct OwnRedis {
    child: std::process::Child,
    port: u16,
    /// Its URL.
    pub url: String,
}

impl OwnRedis {
    fn spawn(port: u16) -> std::process::Child {
        std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/services.sh installs it)")
    }

    /// Starts one and waits until it answers.
    pub fn start() -> OwnRedis {
        let port = super::free_port();
        let redis = OwnRedis { child: Self::spawn(port), port, url: format!("redis://127.0.0.1:{port}/") };
        redis.connect();
        redis
    }

    /// A connection, once the server answers (10 s at most).
    pub fn connect(&self) -> redis::Connection {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection()) {
                return c;
            }
            assert!(Instant::now() < deadline, "redis on port {} did not start", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Once `<prefix>meta as_of` is set (a first tick is in), kills the
    /// server, starts it again empty after `down`, and returns `run`'s output.
    pub fn restart_under(&mut self, run: std::process::Child, prefix: &str, down: Duration) -> std::process::Output {
        let mut conn = self.connect();
        let deadline = Instant::now() + Duration::from_secs(120);
        while redis_as_of(&mut conn, prefix).is_none() {
            assert!(Instant::now() < deadline, "no tick written");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::thread::sleep(down);
        self.child = Self::spawn(self.port);
        self.connect();
        run.wait_with_output().unwrap()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// A run against both
// ---------------------------------------------------------------------------

/// The topics, group and Redis prefix of one test run.
pub struct Names {
    /// The event topic.
    pub topic: String,
    /// The trend-delta topic.
    pub deltas: String,
    /// The dead-letter topic.
    pub dead: String,
    /// The consumer group.
    pub group: String,
    /// The Redis key prefix.
    pub prefix: String,
}

impl Names {
    /// Fresh names for `label`.
    pub fn new(label: &str) -> Names {
        let base = unique(&format!("cf-{label}"));
        Names { topic: base.clone(), deltas: format!("{base}.deltas"), dead: format!("{base}.dead"), group: format!("{base}.group"), prefix: format!("{base}:") }
    }
}

/// `base` (a case's config text) plus the Kafka / Redis sections for `names`.
pub fn config_text(base: &str, names: &Names, redis: &str, input_extra: &str) -> String {
    format!(
        "{base}\n[input]\nkind = \"kafka\"\n{input_extra}\n\n[kafka]\nbrokers = \"{}\"\ntopic = \"{}\"\ngroup_id = \"{}\"\ntrend_deltas_topic = \"{}\"\ndead_letter_topic = \"{}\"\n\n\
         [output]\ntrend_deltas = \"kafka\"\ndead_letters = \"kafka\"\n\n[store]\nkind = \"redis\"\n\n[redis]\nurl = \"{redis}\"\nprefix = \"{}\"\n",
        kafka_brokers(),
        names.topic,
        names.group,
        names.deltas,
        names.dead,
        names.prefix
    )
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `clickflow produce` of the case's events to a fresh topic with `partitions` partitions.
pub fn produce_case(case: &Case, cfg: &Path, partitions: i32) {
    let o = run_clickflow(["produce", "--config", cfg.to_str().unwrap(), "--input", case.events.to_str().unwrap(), "--partitions", &partitions.to_string()]);
    assert!(o.status.success(), "produce {}: {}", case.name, describe_output(&o, 2000));
}

