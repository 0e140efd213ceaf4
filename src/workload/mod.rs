//! Synthetic workload: a deterministic, seeded generator of realistic
//! e-commerce clickstream events, written as JSON Lines in the SPEC section 1
//! schema. It drives the benchmarks and the default `clickflow run`.
//!
//! # Model
//!
//! * **Actors.** `users` human visitors (`u0000123`) plus
//!   `round(users * bot_share)` bots (`b0000012`), split evenly (round robin)
//!   over the three SPEC section 3 kinds. Every actor is a small state machine
//!   with the event time of its next event; all actors sit in one min-heap
//!   keyed by that time, so events come out in exact event-time order (ties:
//!   lower actor index first) while only O(actors) state is kept: nothing is
//!   ever buffered beyond the few deliberately delayed lines (see *Disorder*).
//! * **Humans.** Activity is heavy tailed: each user has a lognormal weight
//!   (sigma 1.3, capped at 150x the median) scaled so that the mean over users
//!   is `events_per_user_day`; the top 1% of users produce ~14% of the human
//!   events, the heaviest ones ~90x the median. Some users draw so little
//!   weight that they never appear in a short run. A user produces sessions as
//!   a Poisson process modulated by a day/night cycle (UTC): the rate
//!   varies 8x between the 04:00 trough and the 20:00 peak. Sessions are
//!   1..=40 events long (geometric, longer for heavier users); inside a
//!   session events are 1 s .. 25 min apart (log-logistic, median 20 s). A new
//!   session starts at least 60 s after the previous one ended. Humans never
//!   trip a bot rule with the default parameters (events are >= 1 s apart
//!   and heavy users stay far below 2000 events a day).
//! * **Funnel.** Per human event: 90% `view`, 8% `cart`, 2% `purchase`. A
//!   session keeps a current product: views mostly pick a new product (Zipf
//!   popularity), sometimes re-view it or browse its category; carts act on
//!   the current product, purchases on the last carted one. Purchases always
//!   carry a `price` (the product's list price, 10% discounted), views and
//!   carts half of the time. About 5% of the human events have no
//!   `product_id` (category landing pages) and about 10% no `category`
//!   (omitted or `null`).
//! * **Catalog.** `products` products (`p000123`) with Zipf-Mandelbrot
//!   popularity (`(rank + 5)^-1.05`, ranks shuffled over ids) and a fixed
//!   category each; category sizes are Zipf too. Categories are named by
//!   words (`electronics`, `shoes`, ...) and `c041`-style beyond the word
//!   list. List prices are lognormal around 25.00 within 0.99 ..= 500.00,
//!   mostly `x.99`, some whole (written as JSON integers, or `25.0` by the
//!   Python-style producer). Every day 1-3 "trending spike" products
//!   (mid-popularity) become 20-50x as popular for 2-6 hours.
//! * **Fields.** A user has a preferred device (`mobile` 55%, `desktop` 35%,
//!   `tablet` 10%), uses it 95% of the time; 3% of device values are
//!   capitalised (`Mobile`), 2.5% missing, `null` or `""`. Web-SDK users (60%)
//!   send a realistic browser `user_agent` and a compact JSON layout; app-SDK
//!   users send no user agent and a Python-`json.dumps`-style layout (`": "`,
//!   `", "`, different key order). 2% of the `ts` values are RFC 3339 strings
//!   (mostly `Z` with milliseconds, some with a `+hh:mm` offset or lower-case
//!   `t`/`z`). Every line has `event_id` = `e` + generation sequence number.
//! * **Bots.** (1) *UA bots* crawl: ~8 crawls a day of 5-40 views 1-6 s
//!   apart, uniformly over the catalog, with a crawler `user_agent`
//!   (`Googlebot`, `python-requests/2.31.0`, `HeadlessChrome`, ...). (2) *Burst
//!   bots*: ~4 bursts a day of 25-60 events 80-300 ms apart (cart-heavy, on
//!   top products), human or no user agent. (3) *Volume bots*: one event
//!   every 20-40 s (~2880 a day), human user agent, for one whole UTC day of
//!   the run each (the whole run if it holds no whole UTC day): enough to
//!   exceed 2000 events that day without dominating a multi-day workload
//!   (with the defaults bots send ~24% of the lines, volume bots ~13%). A
//!   few humans (`users / 1000`) are near misses: 30% of their sessions are
//!   19 events within 9 s (never 20 within 10 s), and half of them have
//!   `Crawl` (not `crawler`) in their desktop user agent.
//! * **Invalid lines.** A share `invalid_share` of the events is emitted
//!   broken instead, evenly: truncated JSON, missing `ts`, `"type":"click"`,
//!   negative `price`, or a bad `ts` string (space separator, second 60, no
//!   offset, month 13, digits in a string).
//! * **Disorder.** A share `disorder_share` of the lines is held back and
//!   emitted just before the first line whose `ts` exceeds the event's `ts`
//!   plus 1-4 s, so it is out of order but within the default 5 s lateness;
//!   a tenth of them is held back 10-60 s instead and will mostly be
//!   dead-lettered as late (only when other traffic fell in between, so the
//!   visible disorder is a bit below `disorder_share` when traffic is sparse).
//!
//! The same config always yields byte-identical output (one `SmallRng`
//! seeded from `seed`, consumed in a deterministic order; `SmallRng` is not
//! guaranteed portable across platforms or `rand` versions). Lines are
//! formatted by hand from pre-rendered field pieces (no serde on the hot
//! path): the default config (~735k lines, ~230 bytes each) generates at
//! 2.5-4.5 M lines/s on one core, in a few MB of memory.
//!
//! # Files
//!
//! * this file: [`GeneratorConfig`], its defaults and its validation;
//! * [`catalog`]: what the events are about and the distributions they are
//!   drawn from (products, categories, prices, spikes, the day/night curve,
//!   in-session gaps, user agents);
//! * [`actors`]: the cast of humans and bots and their per-actor parameters;
//! * [`generator`]: the [`Generator`] state machine that schedules actors and
//!   turns their next event into a line;
//! * [`format`]: one event as bytes, in either producer's layout.

mod actors;
mod catalog;
mod format;
mod generator;
#[cfg(test)]
mod tests;

pub use generator::Generator;

const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;
/// Exclusive upper bound of a valid `ts` (year 10000), SPEC section 1.
const MAX_TS: u64 = 253_402_300_800_000;

/// Parameters of a generated workload.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Number of distinct human users.
    pub users: u64,
    /// Days of event time covered.
    pub days: u64,
    /// Mean events per user per day (humans; heavy-tailed across users).
    pub events_per_user_day: f64,
    /// Share of users that are bots (0.0 ..= 1.0), split over the three SPEC bot kinds.
    pub bot_share: f64,
    /// Number of products.
    pub products: u64,
    /// Number of categories.
    pub categories: u64,
    /// Share of lines that are deliberately invalid (dead-letter traffic).
    pub invalid_share: f64,
    /// Share of events emitted out of order (a few seconds late, within the default 5 s lateness) and, a tenth of those, later than that (dead-lettered as late).
    pub disorder_share: f64,
    /// Random seed; the same config always yields byte-identical output.
    pub seed: u64,
    /// Event time of the first event, ms since the epoch (default 2024-03-01T00:00:00Z = 1709251200000).
    pub start_ts: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            users: 10_000,
            days: 7,
            events_per_user_day: 8.0,
            bot_share: 0.01,
            products: 20_000,
            categories: 40,
            invalid_share: 0.0005,
            disorder_share: 0.01,
            seed: 42,
            start_ts: 1_709_251_200_000,
        }
    }
}

impl GeneratorConfig {
    /// Checks every parameter; the error names the field in backticks.
    fn validate(&self) -> Result<(), String> {
        if self.users == 0 || self.users > 50_000_000 {
            return Err(format!(
                "`users` must be within 1 ..= 50000000, got {}",
                self.users
            ));
        }
        if self.days == 0 || self.days > 3650 {
            return Err(format!(
                "`days` must be within 1 ..= 3650, got {}",
                self.days
            ));
        }
        if !(self.events_per_user_day.is_finite()
            && (0.0..=100_000.0).contains(&self.events_per_user_day))
        {
            return Err(format!(
                "`events_per_user_day` must be within 0 ..= 100000, got {}",
                self.events_per_user_day
            ));
        }
        check_share("bot_share", self.bot_share)?;
        check_share("invalid_share", self.invalid_share)?;
        check_share("disorder_share", self.disorder_share)?;
        if self.products == 0 || self.products > 50_000_000 {
            return Err(format!(
                "`products` must be within 1 ..= 50000000, got {}",
                self.products
            ));
        }
        if self.categories == 0 || self.categories > 1_000_000 {
            return Err(format!(
                "`categories` must be within 1 ..= 1000000, got {}",
                self.categories
            ));
        }
        // 60 s of slack for held-back lines and sessions running over the end.
        if self.start_ts > MAX_TS - self.days * DAY_MS - 60_000 {
            return Err(format!(
                "`start_ts` must leave `days` of event time before 253402300800000 (year 10000), got {}",
                self.start_ts
            ));
        }
        Ok(())
    }

    /// Number of bots: `round(users * bot_share)`.
    fn bots(&self) -> u64 {
        (self.users as f64 * self.bot_share).round() as u64
    }

    /// Event time just past the last event.
    fn end_ts(&self) -> u64 {
        self.start_ts + self.days * DAY_MS
    }
}

fn check_share(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("`{name}` must be within 0.0 ..= 1.0, got {v}"))
    }
}
