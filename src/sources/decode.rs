//! Parallel decoding of one reader's lines, in file order.
//!
//! JSON decoding is the most expensive per-line step, and a file is one
//! reader whose lateness follows line order (SPEC section 2), so decoding is
//! split off the timely worker: a feeder thread cuts the source into chunks
//! of lines, `threads` decoder threads decode chunks in parallel
//! ([`decode_line`]), and the reader operator takes the decoded chunks back in
//! sequence order (a small reorder buffer) and applies the watermark, which is
//! cheap and strictly sequential. Decoder threads wake the reader through a
//! timely `SyncActivator`, so the reader never blocks its worker.
//!
//! Bounded channels keep at most a few chunks per decoder in flight.

use super::LineSource;
use clickflow_dataflows::event::{decode_line, is_blank, Event, UaPatterns};
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
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

/// A chunk of lines, decoded.
pub struct Chunk {
    /// Sequence number.
    pub seq: u64,
    /// Line number (1-based, blank lines included) of the chunk's first line.
    pub first_line: u64,
    /// The raw bytes of all lines.
    pub raw: Vec<u8>,
    /// Per line: its byte range in `raw`.
    pub spans: Vec<(usize, usize)>,
    /// Per line: the decoded result.
    pub decoded: Vec<Decoded>,
    /// Source progress (done, total) after this chunk.
    pub progress: (u64, u64),
    /// The source's error that ended it, if any (in the last chunk).
    pub error: Option<anyhow::Error>,
    /// Whether this is the last chunk.
    pub last: bool,
}

impl Chunk {
    /// The raw bytes of line `i`.
    pub fn line(&self, i: usize) -> &[u8] {
        let (s, e) = self.spans[i];
        &self.raw[s..e]
    }
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
    pub fn start(mut source: Box<dyn LineSource>, patterns: UaPatterns, threads: usize, wake: SyncActivator) -> Decoder {
        let threads = threads.max(1);
        let (result_tx, results) = sync_channel::<Chunk>(threads * 2 + 2);
        let mut work_txs: Vec<SyncSender<Chunk>> = Vec::new();
        let mut handles = Vec::new();
        let wake = std::sync::Arc::new(wake);
        for i in 0..threads {
            let (tx, rx) = sync_channel::<Chunk>(2);
            work_txs.push(tx);
            let out = result_tx.clone();
            let patterns = patterns.clone();
            let wake = wake.clone();
            let handle = std::thread::Builder::new()
                .name(format!("clickflow:decode-{i}"))
                .spawn(move || {
                    for mut chunk in rx {
                        chunk.decoded = (0..chunk.spans.len())
                            .map(|j| {
                                let line = chunk.line(j);
                                if is_blank(line) {
                                    Decoded::Blank
                                } else {
                                    match decode_line(line, &patterns) {
                                        Ok(e) => Decoded::Event(e),
                                        Err(e) => Decoded::Invalid(e.0),
                                    }
                                }
                            })
                            .collect();
                        if out.send(chunk).is_err() {
                            return;
                        }
                        let _ = wake.activate();
                    }
                })
                .expect("spawning a decoder thread");
            handles.push(handle);
        }
        drop(result_tx);
        let feeder = std::thread::Builder::new()
            .name("clickflow:read".into())
            .spawn(move || {
                let mut line = Vec::with_capacity(4096);
                let mut next_line = 1u64;
                for seq in 0u64.. {
                    let mut chunk = Chunk {
                        seq,
                        first_line: next_line,
                        raw: Vec::with_capacity(CHUNK_LINES * 256),
                        spans: Vec::with_capacity(CHUNK_LINES),
                        decoded: Vec::new(),
                        progress: (0, 0),
                        error: None,
                        last: false,
                    };
                    while chunk.spans.len() < CHUNK_LINES {
                        match source.next_line(&mut line) {
                            Ok(true) => {
                                let start = chunk.raw.len();
                                chunk.raw.extend_from_slice(&line);
                                chunk.spans.push((start, chunk.raw.len()));
                                next_line += 1;
                            }
                            Ok(false) => {
                                chunk.last = true;
                                break;
                            }
                            Err(e) => {
                                chunk.error = Some(e);
                                chunk.last = true;
                                break;
                            }
                        }
                    }
                    chunk.progress = source.progress();
                    let last = chunk.last;
                    if work_txs[(seq % work_txs.len() as u64) as usize].send(chunk).is_err() || last {
                        return;
                    }
                }
            })
            .expect("spawning the reader thread");
        handles.push(feeder);
        Decoder { results, reorder: BTreeMap::new(), next: 0, threads: handles }
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

