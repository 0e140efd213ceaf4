//! Where events come from: files, the built-in generator
//! ([`crate::workload`]) and Kafka ([`crate::kafka`]), and the reader
//! operator ([`reader`]) that turns their lines into the dataflow's input.
//!
//! Every source is cut into chunks of one reader's lines by a
//! [`decode::ChunkSource`] on a feeder thread and decoded in parallel
//! ([`decode`]). A file (or the generator) is one reader, read by worker 0
//! alone (SPEC section 2: a file is one reader); a Kafka topic's partitions
//! are spread over all workers, each partition one reader.

pub mod decode;
pub mod file;
pub mod offsets;
pub mod reader;

use crate::workload::Generator;
use anyhow::Result;
use decode::{Chunk, ChunkSource, CHUNK_LINES};

pub use reader::{reader, Alignment, Pace, ReaderInfo, ReaderParts, WorkerInput};

/// A sequence of raw input lines.
pub trait LineSource: Send + 'static {
    /// Puts the next line, without its `\n`, into `buf`; false at the end.
    fn next_line(&mut self, buf: &mut Vec<u8>) -> Result<bool>;
    /// What the lines are, for dead letters' `source` (`file.jsonl`, `generator`).
    fn name(&self) -> String;
    /// Progress as (done, total) in some unit; total 0 when unknown.
    fn progress(&self) -> (u64, u64);
}

/// The built-in generator as a line source.
pub struct GeneratorSource {
    generator: Generator,
    line: u64,
    total: u64,
}

impl GeneratorSource {
    /// Wraps a generator.
    pub fn new(generator: Generator) -> Self {
        let total = generator.estimated_lines();
        GeneratorSource { generator, line: 0, total }
    }
}

impl LineSource for GeneratorSource {
    fn next_line(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        buf.clear();
        let more = self.generator.next_line(buf);
        self.line += u64::from(more);
        Ok(more)
    }
    fn name(&self) -> String {
        "generator".into()
    }
    fn progress(&self) -> (u64, u64) {
        (self.line, self.total)
    }
}

/// A line source cut into chunks of [`CHUNK_LINES`] lines: one reader.
pub struct LineChunks {
    source: Box<dyn LineSource>,
    next_line: u64,
    buf: Vec<u8>,
    finished: bool,
}

impl LineChunks {
    /// Chunks of `source`.
    pub fn new(source: Box<dyn LineSource>) -> Self {
        LineChunks { source, next_line: 1, buf: Vec::with_capacity(4096), finished: false }
    }
}

impl ChunkSource for LineChunks {
    fn next_chunk(&mut self) -> Option<Chunk> {
        if self.finished {
            return None;
        }
        let mut chunk = Chunk { first_line: self.next_line, raw: Vec::with_capacity(CHUNK_LINES * 256), spans: Vec::with_capacity(CHUNK_LINES), ..Chunk::default() };
        while chunk.spans.len() < CHUNK_LINES {
            match self.source.next_line(&mut self.buf) {
                Ok(true) => {
                    chunk.push(&self.buf, None);
                    self.next_line += 1;
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
        chunk.progress = Some(self.source.progress());
        self.finished = chunk.last;
        Some(chunk)
    }
}
