//! Parallel decoding of a worker's input, in read order.
//!
//! JSON decoding is the most expensive per-line step, and lateness follows
//! each reader's read order (SPEC section 2), so decoding is split off the
//! timely worker: a feeder thread cuts the input into chunks of lines (a
//! [`ChunkSource`]: a file's lines, or one Kafka partition's messages per
//! chunk), `threads` decoder threads decode chunks in parallel
//! ([`decode_line`]), and the reader operator takes the decoded chunks back in
//! sequence order (a small reorder buffer) and applies the watermark, which is
//! cheap and strictly sequential. Decoder threads wake the reader through a
//! timely `SyncActivator`, so the reader never blocks its worker.
//!
//! Bounded channels keep at most a few chunks per decoder in flight.

use clickflow_dataflows::event::{decode_line, is_blank, Event, UaPatterns};
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use timely::scheduling::SyncActivator;

/// Lines per decode chunk.
pub const CHUNK_LINES: usize = 4096;

/// One decoded line.
pub enum Decoded {
    /// Empty or white space: skipped, not counted.
    Blank,
    /// A valid event.
    Event(Event),
    /// Invalid, with the detail for its dead letter.
    Invalid(String),
}

/// A chunk of one reader's lines, decoded.
#[derive(Default)]
pub struct Chunk {
    /// Which of the worker's readers the lines are from.
    pub reader: usize,
    /// Sequence number, set by the feeder.
    pub seq: u64,
    /// Line number (1-based, blank lines included) of the chunk's first line.
    pub first_line: u64,
    /// Per line, its offset in a partition (Kafka); empty for files.
    pub offsets: Vec<i64>,
    /// The raw bytes of all lines.
    pub raw: Vec<u8>,
    /// Per line: its byte range in `raw`.
    pub spans: Vec<(usize, usize)>,
    /// Per line: the decoded result.
    pub decoded: Vec<Decoded>,
    /// Source progress (done, total) after this chunk; `None`: count its lines.
    pub progress: Option<(u64, u64)>,
    /// The source's error that ended it, if any.
    pub error: Option<anyhow::Error>,
    /// Whether this is the reader's last chunk.
    pub last: bool,
    /// Whether the reader has now read everything its partition held when
    /// the run started (SPEC section 2: from here on, the wall-clock floor
    /// applies to it).
    pub caught_up: bool,
}

impl Chunk {
    /// The raw bytes of line `i`.
    pub fn line(&self, i: usize) -> &[u8] {
        let (s, e) = self.spans[i];
        &self.raw[s..e]
    }

    /// Appends a line (and its offset, for partitioned sources).
    pub fn push(&mut self, line: &[u8], offset: Option<i64>) {
        let start = self.raw.len();
        self.raw.extend_from_slice(line);
        self.spans.push((start, self.raw.len()));
        if let Some(o) = offset {
            self.offsets.push(o);
        }
    }

    /// Where line `i` came from, for its dead letter: `name:line` or `name:offset`.
    pub fn position(&self, name: &str, i: usize) -> String {
        match self.offsets.get(i) {
            Some(o) => format!("{name}:{o}"),
            None => format!("{name}:{}", self.first_line + i as u64),
        }
    }

    fn decode(&mut self, patterns: &UaPatterns) {
        self.decoded = (0..self.spans.len())
            .map(|j| {
                let line = self.line(j);
                if is_blank(line) {
                    Decoded::Blank
                } else {
                    match decode_line(line, patterns) {
                        Ok(e) => Decoded::Event(e),
                        Err(e) => Decoded::Invalid(e.0),
                    }
                }
            })
            .collect();
    }
}

/// Cuts a worker's input into chunks, on the feeder thread.
pub trait ChunkSource: Send + 'static {
    /// The next chunk, undecoded (its `seq` is set by the caller); `None`
    /// when every reader has had its last chunk, or the source gave up.
    fn next_chunk(&mut self) -> Option<Chunk>;
}

/// The running pipeline: chunks come out of [`Decoder::try_next`] in order.
pub struct Decoder {
    results: Receiver<Chunk>,
    reorder: BTreeMap<u64, Chunk>,
    next: u64,
    threads: Vec<JoinHandle<()>>,
}

impl Decoder {
    /// Starts the feeder and `threads` decoder threads over `source`.
    pub fn start(mut source: Box<dyn ChunkSource>, patterns: UaPatterns, threads: usize, wake: SyncActivator) -> std::io::Result<Decoder> {
        let threads = threads.max(1);
        let (result_tx, results) = sync_channel::<Chunk>(threads * 2 + 2);
        let mut work_txs: Vec<SyncSender<Chunk>> = Vec::new();
        let mut handles = Vec::new();
        let wake = Arc::new(wake);
        for i in 0..threads {
            let (tx, rx) = sync_channel::<Chunk>(2);
            work_txs.push(tx);
            let out = result_tx.clone();
            let patterns = patterns.clone();
            let wake = wake.clone();
            let handle = std::thread::Builder::new().name(format!("clickflow:decode-{i}")).spawn(move || {
                for mut chunk in rx {
                    chunk.decode(&patterns);
                    if out.send(chunk).is_err() {
                        return;
                    }
                    let _ = wake.activate();
                }
            })?;
            handles.push(handle);
        }
        drop(result_tx);
        let feeder = std::thread::Builder::new().name("clickflow:read".into()).spawn(move || {
            for seq in 0u64.. {
                let Some(mut chunk) = source.next_chunk() else { return };
                chunk.seq = seq;
                if work_txs[(seq % work_txs.len() as u64) as usize].send(chunk).is_err() {
                    return;
                }
            }
        })?;
        handles.push(feeder);
        Ok(Decoder { results, reorder: BTreeMap::new(), next: 0, threads: handles })
    }

    /// The next chunk in order, if decoded already.
    pub fn try_next(&mut self) -> Option<Chunk> {
        while let Ok(chunk) = self.results.try_recv() {
            self.reorder.insert(chunk.seq, chunk);
        }
        let chunk = self.reorder.remove(&self.next)?;
        self.next += 1;
        Some(chunk)
    }

    /// Whether every chunk the source will ever give has been taken.
    pub fn exhausted(&mut self) -> bool {
        while let Ok(chunk) = self.results.try_recv() {
            self.reorder.insert(chunk.seq, chunk);
        }
        self.reorder.is_empty() && matches!(self.results.try_recv(), Err(std::sync::mpsc::TryRecvError::Disconnected))
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // Unblock the threads (their channels close with us) and wait for them.
        let results = std::mem::replace(&mut self.results, sync_channel(0).1);
        drop(results);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}
