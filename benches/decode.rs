//! Decode throughput: `decode_line` over a JSON Lines file, one core.
//!
//! `cargo bench --bench decode -- FILE` prints lines/s and MB/s. The reader
//! decodes on one worker per file, so this bounds a single-file replay.

use clickflow_dataflows::event::{decode_line, is_blank, UaPatterns};
use clickflow_dataflows::Params;
use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

fn main() {
    let path = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_else(|| {
        eprintln!("usage: cargo bench --bench decode -- EVENTS.jsonl[.gz]");
        std::process::exit(2)
    });
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        eprintln!("cannot open {path}: {e}");
        std::process::exit(2)
    });
    let reader: Box<dyn Read> =
        if path.ends_with(".gz") { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
    let mut lines = Vec::new();
    for line in BufReader::new(reader).split(b'\n') {
        match line {
            Ok(l) => lines.push(l),
            Err(e) => {
                eprintln!("cannot read {path}: {e}");
                std::process::exit(2)
            }
        }
    }
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let patterns = UaPatterns::new(&Params::default().user_agent_patterns);
    for round in 0..3 {
        let start = Instant::now();
        let (mut ok, mut bad) = (0u64, 0u64);
        for l in &lines {
            if is_blank(l) {
                continue;
            }
            match decode_line(l, &patterns) {
                Ok(e) => ok += e.ts & 1 | 1,
                Err(_) => bad += 1,
            }
        }
        let s = start.elapsed().as_secs_f64();
        println!(
            "round {round}: {} lines in {s:.3}s: {:.0} lines/s, {:.0} MB/s ({ok} ok, {bad} invalid)",
            lines.len(),
            lines.len() as f64 / s,
            bytes as f64 / s / 1e6
        );
    }
}
