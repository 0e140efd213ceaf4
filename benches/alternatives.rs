//! State layouts measured against each other on the same events (issue 2).
//!
//! * `custom`: clickflow's user stage — per-user event deques with one
//!   cursor per window, sessions, bots and full feature records at each
//!   output tick (a custom timely-style operator's state, driven directly).
//! * `differential`: windowed per-user counts by *delayed retraction* in
//!   differential dataflow: each event inserts `(user, window)` at the tick
//!   it enters and retracts it at the tick it leaves, and `count_total`
//!   maintains the counts — only the four event counts, no sessions or
//!   records, so it does strictly less work than `custom`.
//!
//! `cargo bench --bench alternatives -- EVENTS.jsonl [TICK_EVERY_LINES]`
//! prints events/s for each, single-threaded.

use clickflow_dataflows::event::{decode_line, Event, UaPatterns};
use clickflow_dataflows::messages::route_hash;
use clickflow_dataflows::user_features::{UserOut, UserStage};
use clickflow_dataflows::{Counters, Params};
use differential_dataflow::input::Input;
use differential_dataflow::operators::CountTotal;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::Instant;

fn load(path: &str, params: &Params) -> Vec<Event> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        eprintln!("cannot open {path}: {e}");
        std::process::exit(2)
    });
    let patterns = UaPatterns::new(&params.user_agent_patterns);
    let mut events: Vec<Event> = BufReader::new(file).split(b'\n').map_while(Result::ok).filter_map(|l| decode_line(&l, &patterns).ok()).collect();
    // Both layouts get events in ts order (the reader's watermark work is not measured here).
    events.sort_by_key(|e| e.ts);
    events
}

fn custom(events: &[Event], params: &Params, every: usize) -> f64 {
    let mut stage = UserStage::new(params.clone(), Arc::new(Counters::default()));
    let mut records = 0u64;
    let start = Instant::now();
    for chunk in events.chunks(every) {
        for e in chunk {
            stage.receive(e.clone());
        }
        let at = params.tick_after(chunk.last().map_or(0, |e| e.ts));
        stage.close_tick(at, &mut |o| records += u64::from(matches!(o, UserOut::Feature(_))));
    }
    let s = start.elapsed().as_secs_f64();
    println!("custom:       {:>10.0} events/s  ({records} records, full features)", events.len() as f64 / s);
    s
}

fn differential(events: Vec<Event>, params: &Params, every: usize) -> f64 {
    let windows: Vec<u64> = params.windows.iter().map(|w| w.ms).collect();
    let tick = params.tick_ms;
    let n = events.len();
    let result = timely::execute(timely::Config::thread(), move |worker| {
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, counts) = scope.new_collection::<(u64, u8), isize>();
            let (probe, _) = counts.count_total().probe();
            (input, probe)
        });
        let start = Instant::now();
        for chunk in events.chunks(every) {
            for e in chunk {
                let user = route_hash(&e.user_id);
                let enter = (e.ts / tick + 1) * tick;
                for (w, &width) in windows.iter().enumerate() {
                    let leave = ((e.ts + width) / tick + 1) * tick;
                    input.update_at((user, w as u8), enter, 1);
                    input.update_at((user, w as u8), leave, -1);
                }
            }
            let at = (chunk.last().map_or(0, |e| e.ts) / tick + 1) * tick;
            input.advance_to(at);
            input.flush();
            worker.step_while(|| probe.less_than(input.time()));
        }
        start.elapsed().as_secs_f64()
    })
    .expect("timely runs");
    let s = result.join().into_iter().next().and_then(Result::ok).unwrap_or(f64::NAN);
    println!("differential: {:>10.0} events/s  (four window counts per user only)", n as f64 / s);
    s
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: cargo bench --bench alternatives -- EVENTS.jsonl [TICK_EVERY_LINES]");
        std::process::exit(2)
    };
    let every: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(65_536);
    let params = Params::default();
    let events = load(path, &params);
    println!("{} events, an output tick every {every}", events.len());
    custom(&events, &params, every);
    differential(events, &params, every);
}
