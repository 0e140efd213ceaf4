//! One dead-letter sink shared by the workers of a process: each worker
//! that reads input writes its dead letters through a clone.

use super::records::Reason;
use super::DeadLetters;
use anyhow::Result;
use std::sync::{Arc, Mutex};

/// A dead-letter sink behind a mutex, cloned into every reading worker.
#[derive(Clone)]
pub struct SharedDeadLetters(Arc<Mutex<Box<dyn DeadLetters>>>);

impl SharedDeadLetters {
    /// Shares `sink`.
    pub fn new(sink: Box<dyn DeadLetters>) -> Self {
        SharedDeadLetters(Arc::new(Mutex::new(sink)))
    }
}

impl DeadLetters for SharedDeadLetters {
    fn write(&mut self, reason: Reason, detail: &str, source: &str, raw: &[u8]) -> Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).write(reason, detail, source, raw)
    }
    fn flush(&mut self) -> Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}
