//! The [`Generator`] state machine: actors scheduled by the time of their
//! next event, each advanced by one event at a time, and the held-back lines
//! of *Disorder*.
//!
//! [`Generator::new`] validates the config and builds everything the run
//! draws from, consuming the one `SmallRng` in a fixed order: catalog,
//! spikes, cast, first events. [`Generator::next_line`] then pops the actor
//! with the earliest next event (ties: lower index), draws that event's
//! fields, formats it (or holds it back), and reschedules the actor; the
//! state is O(actors) plus the held-back lines.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use super::actors::{Actor, Cast, Kind};
use super::catalog::{self, Catalog, DayCycle, SpikeTimeline, UserAgents};
use super::format::{
    Event, Formatter, CART, CAT_NULL, CLICK, DEV_EMPTY, DEV_NONE, DEV_NULL, NONE, NO_PRICE, NO_UA,
    PURCHASE, TS_BAD_SPACE, TS_INT, TS_LOWER, TS_OFFSET, TS_OMIT, TS_Z, VIEW,
};
use super::GeneratorConfig;

/// Minimum quiet time between two sessions of one actor.
const MIN_SESSION_GAP_MS: u64 = 60_000;
/// UTC offsets (minutes) of the `+hh:mm` timestamps.
const OFFSETS_MIN: [i32; 6] = [60, 120, -300, 330, -480, 540];

/// A streaming generator: yields lines in (roughly) event-time order, as a file replay would read them.
pub struct Generator {
    cfg: GeneratorConfig,
    rng: SmallRng,
    end_ts: u64,
    actors: Vec<Actor>,
    /// Actors by (next event ts, actor index).
    schedule: Schedule,
    /// Held-back lines: (release ts, seq, slot in `slots`).
    pending: BinaryHeap<Reverse<(u64, u64, usize)>>,
    slots: Vec<Vec<u8>>,
    free_slots: Vec<usize>,
    seq: u64,
    catalog: Catalog,
    format: Formatter,
    /// Per minute of the UTC day: session acceptance probability (day/night).
    accept: Vec<f64>,
    /// Inverse CDF of the in-session gap, 4097 knots.
    gap_table: Vec<f64>,
    spikes: SpikeTimeline,
    estimated: u64,
}

impl Generator {
    /// Creates a generator for `config`. Errors (as `String`, naming the field in backticks) on invalid parameters such as `bot_share` outside 0..=1 or `users` = 0.
    pub fn new(config: GeneratorConfig) -> Result<Generator, String> {
        config.validate()?;
        // The output is a function of the order in which this one rng is
        // consumed: catalog, spikes, cast, first events.
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let weights = catalog::product_weights(config.products as usize);
        let catalog = Catalog::new(&config, &weights, &mut rng);
        let spikes = catalog::spikes(&config, &weights, &catalog.rank_product, &mut rng);
        let uas = UserAgents::new();
        let day = DayCycle::new();
        let cast = Cast::new(&config, &mut rng, &uas, day.peak);
        let format = Formatter::new(
            config.users.max(config.bots()),
            config.products,
            &catalog::category_names(config.categories as usize),
            &uas.all,
        );
        let mut gen = Generator {
            end_ts: config.end_ts(),
            cfg: config,
            rng,
            schedule: Schedule {
                heap: BinaryHeap::with_capacity(cast.actors.len()),
            },
            actors: cast.actors,
            pending: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            seq: 0,
            catalog,
            format,
            accept: day.accept,
            gap_table: catalog::gap_table(),
            spikes: SpikeTimeline::new(spikes),
            estimated: cast.estimated.round() as u64,
        };
        gen.schedule_first_events(cast.volume_from);
        Ok(gen)
    }

    /// Schedules every actor's first event: a volume bot's within 30 s of
    /// the start of its active period (`volume_from`, by actor index), anyone
    /// else's first session.
    fn schedule_first_events(&mut self, volume_from: Vec<(usize, u64)>) {
        let start_ts = self.cfg.start_ts;
        let mut volume_from = volume_from.into_iter().peekable();
        for i in 0..self.actors.len() {
            let mut a = self.actors[i];
            let first = if let Some((_, from)) = volume_from.next_if(|&(j, _)| j == i) {
                Some(from + self.rng.random_range(0..30_000)).filter(|&t| t < a.active_end)
            } else {
                self.start_session(&mut a, start_ts)
            };
            self.actors[i] = a;
            if let Some(t) = first {
                self.schedule.push(t, i as u32);
            }
        }
    }

    /// Appends the next line (without the trailing newline) to `buf` and returns true; false when the workload is exhausted.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> bool {
        loop {
            let head = self.schedule.peek().map(|(t, _)| t);
            if let Some(&Reverse((release, _, slot))) = self.pending.peek() {
                if head.is_none_or(|t| release <= t) {
                    self.pending.pop();
                    buf.extend_from_slice(&self.slots[slot]);
                    self.free_slots.push(slot);
                    return true;
                }
            }
            let Some(ev) = self.next_event() else {
                return false;
            };
            if self.cfg.disorder_share > 0.0 && self.unit() < self.cfg.disorder_share {
                let delay = if self.unit() < 0.1 {
                    10_000 + self.below(50_001) as u64
                } else {
                    1_000 + self.below(3_001) as u64
                };
                let slot = self.free_slots.pop().unwrap_or_else(|| {
                    self.slots.push(Vec::new());
                    self.slots.len() - 1
                });
                let mut line = std::mem::take(&mut self.slots[slot]);
                line.clear();
                self.format.write_line(&mut line, &ev);
                self.slots[slot] = line;
                self.pending.push(Reverse((ev.ts + delay, ev.seq, slot)));
                continue;
            }
            self.format.write_line(buf, &ev);
            return true;
        }
    }

    /// An estimate of the total number of lines this config produces (for progress bars).
    pub fn estimated_lines(&self) -> u64 {
        self.estimated
    }

    #[inline]
    fn unit(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// Uniform in `0..n` (n > 0; multiply-shift, bias < 2^-32 · n).
    #[inline]
    fn below(&mut self, n: u32) -> u32 {
        ((self.rng.next_u32() as u64 * n as u64) >> 32) as u32
    }

    /// Starts the actor's next session at or after `from`; returns its first event time.
    fn start_session(&mut self, a: &mut Actor, from: u64) -> Option<u64> {
        if !a.cand_gap_ms.is_finite() {
            return None;
        }
        let mut t = from as f64;
        let diurnal = matches!(a.kind, Kind::Human | Kind::NearMiss);
        let start = loop {
            t += -(1.0 - self.unit()).ln() * a.cand_gap_ms;
            if t >= self.end_ts as f64 {
                return None;
            }
            let ts = t as u64;
            if !diurnal || self.unit() < self.accept[((ts / 60_000) % 1440) as usize] {
                break ts;
            }
        };
        a.cur = NONE;
        a.cart = NONE;
        a.rapid = false;
        let len = match a.kind {
            Kind::NearMiss if self.unit() < 0.3 => {
                a.rapid = true;
                19
            }
            Kind::Human | Kind::NearMiss => {
                let g = ((1.0 - self.unit()).ln() / a.ln_q) as u32;
                g.saturating_add(1).min(40)
            }
            Kind::UaBot => 5 + self.below(36),
            _ => 25 + self.below(36),
        };
        a.remaining = len - 1;
        Some(start)
    }

    #[inline]
    fn session_gap(&mut self) -> u64 {
        let x = self.unit() * 4096.0;
        let i = (x as usize).min(4095);
        let f = x - i as f64;
        let g = self.gap_table[i] + (self.gap_table[i + 1] - self.gap_table[i]) * f;
        g as u64
    }

    /// Produces the next event in ts order (before disorder), advancing its actor.
    fn next_event(&mut self) -> Option<Event> {
        let (ts, idx) = self.schedule.peek()?;
        let mut a = self.actors[idx as usize];
        if ts >= self.spikes.check_ts {
            self.spikes.advance(ts);
        }
        let mut ev = Event {
            seq: self.seq,
            ts,
            prefix: a.prefix,
            etype: VIEW,
            layout: a.layout,
            ts_form: TS_INT,
            device: DEV_NONE,
            ua: NO_UA,
            trunc: 0,
            off_min: 0,
            user: a.id,
            product: NONE,
            category: NONE,
            price: NO_PRICE,
        };
        self.seq += 1;
        match a.kind {
            Kind::Human | Kind::NearMiss => self.human_event(&mut a, &mut ev),
            Kind::UaBot => {
                let p = self.below(self.catalog.rank_product.len() as u32);
                self.product_fields(&mut ev, p);
                ev.device = if self.unit() < 0.3 { 1 } else { DEV_NONE };
                ev.ua = a.ua;
            }
            Kind::BurstBot => {
                let r = self.unit();
                ev.etype = if r < 0.55 {
                    VIEW
                } else if r < 0.93 {
                    CART
                } else {
                    PURCHASE
                };
                let top = self.catalog.rank_product.len().min(50) as u32;
                let rank = self.below(top) as usize;
                let p = self.catalog.rank_product[rank];
                self.product_fields(&mut ev, p);
                ev.device = if self.unit() < 0.5 { 1 } else { DEV_NONE };
                ev.ua = a.ua;
            }
            Kind::VolumeBot => {
                ev.etype = if self.unit() < 0.04 { CART } else { VIEW };
                let p = self.pick_product();
                self.product_fields(&mut ev, p);
                ev.device = a.device;
                if self.unit() < 0.95 {
                    ev.ua = a.ua;
                }
            }
        }
        let r = self.unit();
        if r < 0.02 {
            let r = r * 50.0;
            if r < 0.8 {
                ev.ts_form = TS_Z;
            } else if r < 0.95 {
                ev.ts_form = TS_OFFSET;
                ev.off_min = OFFSETS_MIN[self.below(OFFSETS_MIN.len() as u32) as usize];
            } else {
                ev.ts_form = TS_LOWER;
            }
        }
        if self.cfg.invalid_share > 0.0 && self.unit() < self.cfg.invalid_share {
            self.make_invalid(&mut ev);
        }

        let next = self.next_time(&mut a, ts);
        self.actors[idx as usize] = a;
        match next {
            Some(t) => self.schedule.replace_top(t, idx),
            None => self.schedule.pop_top(),
        }
        Some(ev)
    }

    /// When `a`, whose event at `ts` was just made, acts next (None: never
    /// again in this run).
    fn next_time(&mut self, a: &mut Actor, ts: u64) -> Option<u64> {
        match a.kind {
            Kind::VolumeBot => {
                Some(ts + 20_000 + self.below(20_001) as u64).filter(|&t| t < a.active_end)
            }
            _ if a.remaining > 0 => {
                a.remaining -= 1;
                Some(
                    ts + match a.kind {
                        Kind::Human | Kind::NearMiss if a.rapid => 300 + self.below(201) as u64,
                        Kind::Human | Kind::NearMiss => self.session_gap(),
                        Kind::UaBot => 1_000 + self.below(5_001) as u64,
                        _ => 80 + self.below(221) as u64,
                    },
                )
            }
            _ => self.start_session(a, ts + MIN_SESSION_GAP_MS),
        }
        .filter(|&t| t < self.end_ts)
    }

    /// A human's event: the *Funnel* over the session's products, then the
    /// device and the user agent.
    fn human_event(&mut self, a: &mut Actor, ev: &mut Event) {
        let r = self.unit();
        ev.etype = if r < 0.02 {
            PURCHASE
        } else if r < 0.10 {
            CART
        } else {
            VIEW
        };
        let product = match ev.etype {
            VIEW => {
                if self.unit() < 0.055 {
                    NONE
                } else {
                    let r = self.unit();
                    let p = if a.cur == NONE || r < 0.7 {
                        self.pick_product()
                    } else if r < 0.9 {
                        a.cur
                    } else {
                        let list = &self.catalog.category_products
                            [self.catalog.products[a.cur as usize].0 as usize];
                        let u = self.rng.random::<f64>();
                        list[((u * u * list.len() as f64) as usize).min(list.len() - 1)]
                    };
                    a.cur = p;
                    p
                }
            }
            CART => {
                if a.cur == NONE {
                    a.cur = self.pick_product();
                }
                a.cart = a.cur;
                a.cur
            }
            _ => {
                if a.cart != NONE {
                    a.cart
                } else {
                    if a.cur == NONE {
                        a.cur = self.pick_product();
                    }
                    a.cur
                }
            }
        };
        self.product_fields(ev, product);
        let r = self.unit();
        ev.device = if r < 0.015 {
            DEV_NONE
        } else if r < 0.02 {
            DEV_NULL
        } else if r < 0.025 {
            DEV_EMPTY
        } else {
            let d = if r < 0.975 {
                a.device
            } else {
                self.below(3) as u8
            };
            if self.unit() < 0.03 {
                d + 3
            } else {
                d
            }
        };
        if a.ua != NO_UA && self.unit() < 0.95 {
            ev.ua = a.ua;
        }
    }

    /// Fills `product`, `category` and `price` for `product` (or a landing page if NONE).
    fn product_fields(&mut self, ev: &mut Event, product: u32) {
        if product == NONE {
            if self.unit() < 0.6 {
                ev.category = self.catalog.category_alias.sample(self.rng.next_u64());
            }
            return;
        }
        ev.product = product;
        let (category, list) = self.catalog.products[product as usize];
        let r = self.unit();
        ev.category = if r < 0.91 {
            category
        } else if r < 0.97 {
            NONE
        } else {
            CAT_NULL
        };
        let list = list as i64;
        let r = self.unit();
        if ev.etype == PURCHASE {
            ev.price = if r < 0.1 {
                (list * (80 + (r * 150.0) as i64) / 100).max(1)
            } else {
                list
            };
        } else if r < 0.5 {
            ev.price = list;
        }
    }

    /// A product by popularity, with active trending spikes boosted.
    #[inline]
    fn pick_product(&mut self) -> u32 {
        for i in 0..self.spikes.active.len() {
            let s = self.spikes.active[i];
            if self.unit() < s.q {
                return s.product;
            }
        }
        self.catalog.product_alias.sample(self.rng.next_u64())
    }

    /// Breaks `ev` in one of the five ways of *Invalid lines*, evenly.
    fn make_invalid(&mut self, ev: &mut Event) {
        match self.below(5) {
            0 => ev.trunc = 1 + self.below(65_535) as u16,
            1 => ev.ts_form = TS_OMIT,
            2 => ev.etype = CLICK,
            3 => {
                ev.etype = PURCHASE;
                let p = if ev.price > 0 {
                    ev.price
                } else {
                    100 + self.below(20_000) as i64
                };
                ev.price = -p;
            }
            _ => ev.ts_form = TS_BAD_SPACE + self.below(5) as u8,
        }
    }
}

/// Actors by (next event ts, actor index), earliest first. (A timing wheel
/// in front of the heap was tried: no faster even with 10^6 actors.)
struct Schedule {
    heap: BinaryHeap<Reverse<(u64, u32)>>,
}

impl Schedule {
    fn push(&mut self, ts: u64, i: u32) {
        self.heap.push(Reverse((ts, i)));
    }

    fn peek(&self) -> Option<(u64, u32)> {
        self.heap.peek().map(|r| r.0)
    }

    /// Reschedules the top entry to `ts` (one sift instead of pop + push).
    fn replace_top(&mut self, ts: u64, i: u32) {
        if let Some(mut top) = self.heap.peek_mut() {
            *top = Reverse((ts, i));
        }
    }

    fn pop_top(&mut self) {
        self.heap.pop();
    }
}
