//! The cast: every human and bot, with the parameters that make it behave
//! as the module doc's *Humans* and *Bots* describe.
//!
//! Humans get a lognormal activity weight, a device, a user agent (web SDK)
//! or none (app SDK) and a geometric session length; a few are near misses.
//! Bots are split round robin over the three kinds. Building the cast draws
//! from the generator's `SmallRng`: all humans' weights, the near misses,
//! then each human and each bot in id order. [`Cast::estimated`] sums the
//! expected events for the progress estimate.

use rand::rngs::SmallRng;
use rand::Rng;

use super::catalog::{normal, UserAgents};
use super::format::{LAYOUT_PY, LAYOUT_WEB, NONE, NO_UA};
use super::{GeneratorConfig, DAY_MS};

/// What drives an actor (SPEC section 3 for the bot kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Human,
    NearMiss,
    UaBot,
    BurstBot,
    VolumeBot,
}

/// Per-actor state (kept small: one per user and bot).
#[derive(Clone, Copy, Debug)]
pub(super) struct Actor {
    pub(super) kind: Kind,
    /// `b'u'` or `b'b'`.
    pub(super) prefix: u8,
    /// Preferred device (0 mobile, 1 desktop, 2 tablet).
    pub(super) device: u8,
    /// Index into [`UserAgents::all`] or [`NO_UA`].
    pub(super) ua: u8,
    pub(super) layout: u8,
    /// Near-miss "19 events in 9 s" session in progress.
    pub(super) rapid: bool,
    /// Number in the id.
    pub(super) id: u32,
    /// Events still to come in the current session / crawl / burst.
    pub(super) remaining: u32,
    /// Session state: current and last carted product.
    pub(super) cur: u32,
    pub(super) cart: u32,
    /// Mean gap between candidate session starts (ms; humans thinned by the
    /// day/night cycle).
    pub(super) cand_gap_ms: f64,
    /// Humans: `ln q` of the geometric session length.
    pub(super) ln_q: f64,
    /// Volume bots: end of the active period (exclusive).
    pub(super) active_end: u64,
}

/// All actors, humans first (ids `u...` in order), then bots (`b...`).
pub(super) struct Cast {
    pub(super) actors: Vec<Actor>,
    /// Volume bots: (actor index, start of the active period), by index.
    pub(super) volume_from: Vec<(usize, u64)>,
    /// Expected lines of all actors (before rounding).
    pub(super) estimated: f64,
}

impl Cast {
    /// The cast of `c`; `peak` is the day/night cycle's peak over its mean
    /// (candidate sessions come that much faster and are thinned).
    pub(super) fn new(
        c: &GeneratorConfig,
        rng: &mut SmallRng,
        uas: &UserAgents,
        peak: f64,
    ) -> Cast {
        let mut cast = Cast {
            actors: Vec::with_capacity(c.users as usize + c.bots() as usize),
            volume_from: Vec::new(),
            estimated: 0.0,
        };
        cast.add_humans(c, rng, uas, peak);
        cast.add_bots(c, rng, uas);
        cast
    }

    fn add_humans(&mut self, c: &GeneratorConfig, rng: &mut SmallRng, uas: &UserAgents, peak: f64) {
        let days = c.days as f64;
        // Human activity: lognormal weights, normalized to the configured mean.
        let nu = c.users as usize;
        let w: Vec<f64> = (0..nu)
            .map(|_| (1.3 * normal(rng)).exp().min(150.0))
            .collect();
        let w_mean = w.iter().sum::<f64>() / nu as f64;
        let near_misses = if c.events_per_user_day > 0.0 {
            nu / 1000
        } else {
            0
        };
        let mut kinds = vec![Kind::Human; nu];
        for k in 0..near_misses {
            // Spread deterministically over the id space.
            kinds[k * 1000 + rng.random_range(0..1000)] = Kind::NearMiss;
        }
        let mut near_count = 0;
        for (i, (&wi, &kind)) in w.iter().zip(&kinds).enumerate() {
            let mut e = wi * c.events_per_user_day / w_mean;
            let mut device = match rng.random::<f64>() {
                x if x < 0.55 => 0,
                x if x < 0.90 => 1,
                _ => 2,
            };
            let web = rng.random::<f64>() < 0.6;
            let mut ua = if web { uas.human(rng, device) } else { NO_UA };
            let mu = (2.5 + 1.5 * (1.0 + e).ln()).clamp(2.0, 20.0);
            let q = (-1.0 / mu).exp();
            let mean_len = (1.0 - q.powi(40)) / (1.0 - q);
            let per_session = if kind == Kind::NearMiss {
                e = e.max(30.0);
                if near_count % 2 == 0 {
                    ua = uas.near_miss(near_count / 2);
                    device = 1;
                }
                near_count += 1;
                0.3 * 19.0 + 0.7 * mean_len
            } else {
                mean_len
            };
            self.estimated += e * days;
            let sessions_per_day = e / per_session;
            self.actors.push(Actor {
                kind,
                prefix: b'u',
                device,
                ua,
                layout: if ua == NO_UA { LAYOUT_PY } else { LAYOUT_WEB },
                rapid: false,
                id: i as u32,
                remaining: 0,
                cur: NONE,
                cart: NONE,
                cand_gap_ms: DAY_MS as f64 / (sessions_per_day * peak),
                ln_q: q.ln(),
                active_end: c.end_ts(),
            });
        }
    }

    fn add_bots(&mut self, c: &GeneratorConfig, rng: &mut SmallRng, uas: &UserAgents) {
        let days = c.days as f64;
        let (start_ts, end_ts) = (c.start_ts, c.end_ts());
        // Whole UTC days inside the run (each volume bot is active on one of them).
        let first_day = start_ts.div_ceil(DAY_MS);
        let full_days = first_day..end_ts / DAY_MS;
        for j in 0..c.bots() {
            let kind = [Kind::UaBot, Kind::BurstBot, Kind::VolumeBot][(j % 3) as usize];
            let device = if rng.random::<f64>() < 0.3 { 0 } else { 1 };
            let mut a = Actor {
                kind,
                prefix: b'b',
                device,
                ua: NO_UA,
                layout: LAYOUT_WEB,
                rapid: false,
                id: j as u32,
                remaining: 0,
                cur: NONE,
                cart: NONE,
                cand_gap_ms: f64::INFINITY,
                ln_q: 0.0,
                active_end: end_ts,
            };
            match kind {
                Kind::UaBot => {
                    a.ua = uas.bot(rng);
                    a.cand_gap_ms = DAY_MS as f64 / 8.0;
                    self.estimated += 8.0 * 22.5 * days;
                }
                Kind::BurstBot => {
                    if rng.random::<f64>() < 0.5 {
                        a.ua = uas.human(rng, 1);
                    }
                    a.cand_gap_ms = DAY_MS as f64 / 4.0;
                    self.estimated += 4.0 * 42.5 * days;
                }
                _ => {
                    a.ua = uas.human(rng, device);
                    let (from, to) = if full_days.is_empty() {
                        (start_ts, end_ts)
                    } else {
                        let day = rng.random_range(full_days.clone());
                        (day * DAY_MS, (day + 1) * DAY_MS)
                    };
                    self.volume_from.push((self.actors.len(), from));
                    a.active_end = to;
                    self.estimated += (to - from) as f64 / 30_000.0;
                }
            }
            self.actors.push(a);
        }
    }
}
