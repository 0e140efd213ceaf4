//! Where events come from, and the reader operator that turns their lines
//! into the dataflow's input.
//!
//! A [`LineSource`] yields raw lines. On the worker that reads it (a file is
//! read by worker 0 alone, SPEC section 2: a file is one reader), decoder
//! threads decode and validate the lines ([`decode`]); the reader operator
//! takes them back in file order, applies the watermark
//! ([`clickflow_dataflows::clock`]), dead-letters invalid and late lines,
//! and sends the rest. After each batch of lines it sends one
//! marker per worker for the output tick the watermark closed, then
//! downgrades its capability to the lowest tick a later event can have; at
//! the end it closes `A_end` and drops the capability.

pub mod decode;
pub mod file;
pub mod generator;

use crate::metrics::{record_error, FirstError, Metrics};
use crate::sinks::DeadLetters;
use anyhow::Result;
use clickflow_dataflows::clock::{Admit, Clock};
use clickflow_dataflows::event::UaPatterns;
use decode::{Decoded, Decoder};
use clickflow_dataflows::{Ingest, Params};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};

/// A sequence of raw input lines.
pub trait LineSource: Send {
    /// Puts the next line, without its `\n`, into `buf`; false at the end.
    fn next_line(&mut self, buf: &mut Vec<u8>) -> Result<bool>;
    /// What the lines are, for dead letters' `source` (`file.jsonl`, `generator`).
    fn name(&self) -> String;
    /// Progress as (done, total) in some unit; total 0 when unknown.
    fn progress(&self) -> (u64, u64);
}

/// The built-in generator as a line source.
pub struct GeneratorSource {
    generator: generator::Generator,
    line: u64,
    total: u64,
}

impl GeneratorSource {
    /// Wraps a generator.
    pub fn new(generator: generator::Generator) -> Self {
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

/// What the reader needs besides its source.
pub struct ReaderParts {
    /// The source, on the worker that reads it.
    pub source: Option<Box<dyn LineSource>>,
    /// Where invalid and late lines go.
    pub dead_letters: Option<Box<dyn DeadLetters>>,
    /// Lines per batch: each batch may close an output tick.
    pub batch_lines: usize,
    /// Decoder threads.
    pub decoders: usize,
    /// Run-wide counters.
    pub metrics: Arc<Metrics>,
    /// The first fatal error of the run.
    pub error: FirstError,
}

/// The reader operator.
pub fn reader<'s>(scope: Scope<'s, u64>, params: &Params, parts: ReaderParts) -> StreamVec<'s, u64, Ingest> {
    let peers = scope.peers() as u32;
    let patterns = UaPatterns::new(&params.user_agent_patterns);
    let mut clock = Clock::new(params);
    let ReaderParts { source: lines, mut dead_letters, batch_lines, decoders, metrics, error } = parts;
    source(scope, "Reader", move |cap, info: timely::dataflow::operators::generic::OperatorInfo| {
        let wake = scope.worker().sync_activator_for(info.address.to_vec());
        let activator = scope.activator_for(info.address.clone());
        let name = lines.as_ref().map(|l| l.name()).unwrap_or_default();
        let mut decoder = lines.map(|l| Decoder::start(l, patterns, decoders, wake));
        let mut cap = decoder.is_some().then_some(cap);
        let mut since_close = 0usize;
        move |output| {
            let (Some(c), Some(dec)) = (cap.as_mut(), decoder.as_mut()) else {
                cap = None;
                return;
            };
            let mut session = output.session(&*c);
            let mut done = false;
            let (mut read, mut invalid, mut late) = (0u64, 0u64, 0u64);
            // Take what is decoded, up to the end of the current batch.
            while since_close < batch_lines && !done {
                let Some(mut chunk) = dec.try_next() else { break };
                since_close += chunk.spans.len();
                for (i, decoded) in std::mem::take(&mut chunk.decoded).into_iter().enumerate() {
                    let verdict = match decoded {
                        Decoded::Blank => continue,
                        Decoded::Invalid(detail) => Err(("invalid", detail)),
                        Decoded::Event(event) => match clock.admit(event.ts) {
                            Admit::OnTime => Ok(event),
                            Admit::Late => Err((
                                "late",
                                format!(
                                    "ts {} is below the watermark {} (largest ts read {} minus the allowed lateness)",
                                    event.ts,
                                    clock.watermark().unwrap_or(0),
                                    clock.max_ts().unwrap_or(0)
                                ),
                            )),
                        },
                    };
                    read += 1;
                    match verdict {
                        Ok(event) => session.give(Ingest::Event(event)),
                        Err((reason, detail)) => {
                            if reason == "late" {
                                late += 1;
                            } else {
                                invalid += 1;
                            }
                            if let Some(dl) = dead_letters.as_mut() {
                                let position = format!("{name}:{}", chunk.first_line + i as u64);
                                if let Err(e) = dl.write(reason, &detail, &position, chunk.line(i)) {
                                    record_error(&error, e);
                                    done = true;
                                    break;
                                }
                            }
                        }
                    }
                }
                metrics.progress_done.store(chunk.progress.0, Ordering::Relaxed);
                metrics.progress_total.store(chunk.progress.1, Ordering::Relaxed);
                if let Some(e) = chunk.error.take() {
                    record_error(&error, e);
                }
                done |= chunk.last;
            }
            metrics.lines_read.fetch_add(read, Ordering::Relaxed);
            metrics.invalid.fetch_add(invalid, Ordering::Relaxed);
            metrics.late.fetch_add(late, Ordering::Relaxed);
            let batch_full = since_close >= batch_lines;
            let closed = if done {
                clock.close_end()
            } else if batch_full {
                since_close = 0;
                clock.close()
            } else {
                None
            };
            if let Some(at) = closed {
                for worker in 0..peers {
                    session.give(Ingest::Tick { at, worker });
                }
            }
            drop(session);
            if done {
                if let Some(dl) = dead_letters.as_mut() {
                    if let Err(e) = dl.flush() {
                        record_error(&error, e);
                    }
                }
                cap = None;
                decoder = None;
            } else {
                c.downgrade(&clock.frontier());
                if batch_full {
                    // More may be decoded already; decoders only wake us for new chunks.
                    activator.activate();
                }
            }
        }
    })
}
