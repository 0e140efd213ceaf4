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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::f64::consts::PI;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;
/// Exclusive upper bound of a valid `ts` (year 10000), SPEC section 1.
const MAX_TS: u64 = 253_402_300_800_000;
/// Minimum quiet time between two sessions of one actor.
const MIN_SESSION_GAP_MS: u64 = 60_000;

const NONE: u32 = u32::MAX;
/// `category` written as JSON `null`.
const CAT_NULL: u32 = u32::MAX - 1;
const NO_PRICE: i64 = i64::MIN;

const VIEW: u8 = 0;
const CART: u8 = 1;
const PURCHASE: u8 = 2;
const CLICK: u8 = 3;

const DEVICES: [&[u8]; 6] = [
    b"mobile", b"desktop", b"tablet", b"Mobile", b"Desktop", b"Tablet",
];
const DEV_NONE: u8 = 255;
const DEV_NULL: u8 = 254;
const DEV_EMPTY: u8 = 253;

const TS_INT: u8 = 0;
const TS_Z: u8 = 1;
const TS_OFFSET: u8 = 2;
const TS_LOWER: u8 = 3;
const TS_OMIT: u8 = 4;
const TS_BAD_SPACE: u8 = 5;
const TS_BAD_LEAP: u8 = 6;
const TS_BAD_NO_OFFSET: u8 = 7;
const TS_BAD_MONTH: u8 = 8;
const TS_BAD_DIGITS: u8 = 9;
const OFFSETS_MIN: [i32; 6] = [60, 120, -300, 330, -480, 540];

/// Compact producer (web SDK): `{"event_id":"e1","ts":...}`.
const LAYOUT_WEB: u8 = 0;
/// Python `json.dumps` producer (app SDK): `{"type": "view", "user_id": ...}`.
const LAYOUT_PY: u8 = 1;

const NO_UA: u8 = 255;
/// Human browser user agents by device (already JSON-escaped).
const UA_MOBILE: [&str; 3] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.6261.105 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.178 Mobile Safari/537.36",
];
const UA_DESKTOP: [&str; 5] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.66",
];
const UA_TABLET: [&str; 2] = [
    "Mozilla/5.0 (iPad; CPU OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
];
/// Near-miss humans: "crawl" but none of the SPEC bot substrings.
const UA_NEAR_MISS: [&str; 2] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 PageCrawl-Assistant/2.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15 WebCrawlGuard/1.4",
];
/// Crawler user agents (each matches a SPEC section 3 substring).
const UA_BOTS: [&str; 10] = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http:\\/\\/www.google.com\\/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "python-requests/2.31.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/122.0.6261.94 Safari/537.36",
    "curl/8.4.0",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Screaming Frog SEO Spider/19.6",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
];

const CATEGORY_WORDS: [&str; 40] = [
    "electronics",
    "shoes",
    "books",
    "toys",
    "beauty",
    "kitchen",
    "garden",
    "sports",
    "outdoor",
    "jewelry",
    "watches",
    "furniture",
    "lighting",
    "bedding",
    "bath",
    "pets",
    "baby",
    "grocery",
    "beverages",
    "snacks",
    "music",
    "movies",
    "games",
    "software",
    "computers",
    "phones",
    "cameras",
    "audio",
    "office",
    "stationery",
    "tools",
    "automotive",
    "crafts",
    "party",
    "luggage",
    "handbags",
    "menswear",
    "womenswear",
    "kidswear",
    "health",
];

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Human,
    NearMiss,
    UaBot,
    BurstBot,
    VolumeBot,
}

/// Per-actor state (kept small: one per user and bot).
#[derive(Clone, Copy, Debug)]
struct Actor {
    kind: Kind,
    /// `b'u'` or `b'b'`.
    prefix: u8,
    /// Preferred device (0 mobile, 1 desktop, 2 tablet).
    device: u8,
    /// Index into [`Generator::uas`] or [`NO_UA`].
    ua: u8,
    layout: u8,
    /// Near-miss "19 events in 9 s" session in progress.
    rapid: bool,
    /// Number in the id.
    id: u32,
    /// Events still to come in the current session / crawl / burst.
    remaining: u32,
    /// Session state: current and last carted product.
    cur: u32,
    cart: u32,
    /// Mean gap between candidate session starts (ms; humans thinned by the
    /// day/night cycle).
    cand_gap_ms: f64,
    /// Humans: `ln q` of the geometric session length.
    ln_q: f64,
    /// Volume bots: end of the active period (exclusive).
    active_end: u64,
}

/// One event before formatting.
#[derive(Clone, Copy, Debug)]
struct Event {
    seq: u64,
    ts: u64,
    prefix: u8,
    etype: u8,
    layout: u8,
    ts_form: u8,
    device: u8,
    ua: u8,
    /// Invalid: cut the line to `1 + (len - 1) * trunc / 65536` bytes (0 = don't).
    trunc: u16,
    off_min: i32,
    user: u32,
    product: u32,
    category: u32,
    price: i64,
}

/// Walker/Vose alias table: O(1) sampling from a discrete distribution.
struct Alias {
    /// (acceptance threshold in units of 2^-32, label of this entry, label of its alias)
    table: Vec<(u32, u32, u32)>,
}

impl Alias {
    /// Samples index `i` with probability `weights[i] / sum`, returned as `labels[i]`.
    fn new(weights: &[f64], labels: &[u32]) -> Alias {
        let n = weights.len();
        let sum: f64 = weights.iter().sum();
        let mut p: Vec<f64> = weights.iter().map(|w| w * n as f64 / sum).collect();
        let mut table: Vec<(u32, u32, u32)> = labels.iter().map(|&l| (u32::MAX, l, l)).collect();
        let mut small = Vec::new();
        let mut large = Vec::new();
        for (i, &x) in p.iter().enumerate() {
            if x < 1.0 {
                small.push(i);
            } else {
                large.push(i);
            }
        }
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            table[s].0 = (p[s] * 4_294_967_296.0).min(u32::MAX as f64) as u32;
            table[s].2 = labels[l];
            p[l] = (p[l] + p[s]) - 1.0;
            if p[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        Alias { table }
    }

    #[inline]
    fn sample(&self, r: u64) -> u32 {
        let i = (((r >> 32) * self.table.len() as u64) >> 32) as usize;
        let (threshold, label, alias) = self.table[i];
        if (r as u32) < threshold {
            label
        } else {
            alias
        }
    }
}

/// A trending spike: `product` is `q`-overridden into product picks in `[start, end)`.
#[derive(Clone, Copy, Debug)]
struct Spike {
    start: u64,
    end: u64,
    product: u32,
    q: f64,
}

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
    user_width: usize,
    product_width: usize,
    /// Product ids by popularity.
    product_alias: Alias,
    /// `rank_product[rank]` = product id.
    rank_product: Vec<u32>,
    /// Per product id: (category, list price in cents).
    products: Vec<(u32, u32)>,
    /// Products of each category, most popular first.
    category_products: Vec<Vec<u32>>,
    category_alias: Alias,
    /// Compact and Python-style line layouts.
    layouts: [Layout; 2],
    /// Per minute of the UTC day: session acceptance probability (day/night).
    accept: Vec<f64>,
    /// Inverse CDF of the in-session gap, 4097 knots.
    gap_table: Vec<f64>,
    spikes: Vec<Spike>,
    next_spike: usize,
    active_spikes: Vec<Spike>,
    spike_check_ts: u64,
    estimated: u64,
}

fn check_share(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("`{name}` must be within 0.0 ..= 1.0, got {v}"))
    }
}

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Day/night activity at UTC hour `x` (0..24): trough 04:00, peak 20:00, ratio 8.
fn diurnal(x: f64) -> f64 {
    let g = if (4.0..20.0).contains(&x) {
        -(PI * (x - 4.0) / 16.0).cos()
    } else {
        (PI * (x - 20.0).rem_euclid(24.0) / 8.0).cos()
    };
    (g * 8f64.ln() / 2.0).exp()
}

impl Generator {
    /// Creates a generator for `config`. Errors (as `String`, naming the field in backticks) on invalid parameters such as `bot_share` outside 0..=1 or `users` = 0.
    pub fn new(config: GeneratorConfig) -> Result<Generator, String> {
        let c = &config;
        if c.users == 0 || c.users > 50_000_000 {
            return Err(format!(
                "`users` must be within 1 ..= 50000000, got {}",
                c.users
            ));
        }
        if c.days == 0 || c.days > 3650 {
            return Err(format!("`days` must be within 1 ..= 3650, got {}", c.days));
        }
        if !(c.events_per_user_day.is_finite()
            && (0.0..=100_000.0).contains(&c.events_per_user_day))
        {
            return Err(format!(
                "`events_per_user_day` must be within 0 ..= 100000, got {}",
                c.events_per_user_day
            ));
        }
        check_share("bot_share", c.bot_share)?;
        check_share("invalid_share", c.invalid_share)?;
        check_share("disorder_share", c.disorder_share)?;
        if c.products == 0 || c.products > 50_000_000 {
            return Err(format!(
                "`products` must be within 1 ..= 50000000, got {}",
                c.products
            ));
        }
        if c.categories == 0 || c.categories > 1_000_000 {
            return Err(format!(
                "`categories` must be within 1 ..= 1000000, got {}",
                c.categories
            ));
        }
        // 60 s of slack for held-back lines and sessions running over the end.
        if c.start_ts > MAX_TS - c.days * DAY_MS - 60_000 {
            return Err(format!(
                "`start_ts` must leave `days` of event time before 253402300800000 (year 10000), got {}",
                c.start_ts
            ));
        }
        let bots = (c.users as f64 * c.bot_share).round() as u64;

        let mut rng = SmallRng::seed_from_u64(c.seed);
        let start_ts = c.start_ts;
        let end_ts = start_ts + c.days * DAY_MS;
        let days = c.days as f64;

        // Catalog: Zipf-Mandelbrot popularity over shuffled ranks.
        let np = c.products as usize;
        let weights: Vec<f64> = (0..np).map(|r| (r as f64 + 5.0).powf(-1.05)).collect();
        let weight_sum: f64 = weights.iter().sum();
        let mut rank_product: Vec<u32> = (0..np as u32).collect();
        for i in (1..np).rev() {
            let j = rng.random_range(0..=i);
            rank_product.swap(i, j);
        }
        let product_alias = Alias::new(&weights, &rank_product);
        let nc = c.categories as usize;
        let cat_weights: Vec<f64> = (0..nc).map(|r| (r as f64 + 1.0).powf(-0.8)).collect();
        let category_alias = Alias::new(&cat_weights, &(0..nc as u32).collect::<Vec<_>>());
        let mut products = vec![(0u32, 0u32); np];
        for product in products.iter_mut() {
            let category = category_alias.sample(rng.next_u64());
            let cents = (2500.0 * normal(&mut rng).exp()).clamp(99.0, 50_000.0);
            let style: f64 = rng.random();
            let dollars = (cents / 100.0).round().max(1.0) as u32;
            let price = if style < 0.6 {
                dollars * 100 - 1
            } else if style < 0.75 {
                dollars * 100
            } else {
                cents as u32
            };
            *product = (category, price);
        }
        let mut category_products = vec![Vec::new(); nc];
        for &p in &rank_product {
            category_products[products[p as usize].0 as usize].push(p);
        }
        let category_names: Vec<Vec<u8>> = (0..nc)
            .map(|i| match CATEGORY_WORDS.get(i) {
                Some(w) => w.as_bytes().to_vec(),
                None => format!("c{i:03}").into_bytes(),
            })
            .collect();

        // Trending spikes: 1-3 a day on mid-popularity products.
        let mut spikes = Vec::new();
        if np >= 20 {
            let hi = np.min(1000);
            for d in 0..c.days {
                for _ in 0..rng.random_range(1..=3u32) {
                    let rank = rng.random_range(10..hi);
                    let start =
                        start_ts + d * DAY_MS + 8 * HOUR_MS + rng.random_range(0..12 * HOUR_MS);
                    let end = start + 2 * HOUR_MS + rng.random_range(0..4 * HOUR_MS);
                    let m = rng.random_range(20.0..50.0);
                    let pi = weights[rank] / weight_sum;
                    let q = ((m - 1.0) * pi / (1.0 - pi)).min(0.5);
                    spikes.push(Spike {
                        start,
                        end,
                        product: rank_product[rank],
                        q,
                    });
                }
            }
            spikes.sort_by_key(|s| (s.start, s.product));
        }

        // User agents: humans by device, near misses, then bots.
        let mut uas: Vec<&'static [u8]> = Vec::new();
        let ua_base = |uas: &mut Vec<&'static [u8]>, list: &[&'static str]| {
            let base = uas.len() as u8;
            uas.extend(list.iter().map(|s| s.as_bytes()));
            base
        };
        let ua_mobile = ua_base(&mut uas, &UA_MOBILE);
        let ua_desktop = ua_base(&mut uas, &UA_DESKTOP);
        let ua_tablet = ua_base(&mut uas, &UA_TABLET);
        let ua_near = ua_base(&mut uas, &UA_NEAR_MISS);
        let ua_bot = ua_base(&mut uas, &UA_BOTS);
        let human_ua = |rng: &mut SmallRng, device: u8| -> u8 {
            match device {
                0 => ua_mobile + rng.random_range(0..UA_MOBILE.len() as u8),
                1 => ua_desktop + rng.random_range(0..UA_DESKTOP.len() as u8),
                _ => ua_tablet + rng.random_range(0..UA_TABLET.len() as u8),
            }
        };

        // Day/night acceptance per minute, normalized to mean 1 over the day.
        let f: Vec<f64> = (0..1440)
            .map(|m| diurnal((m as f64 + 0.5) / 60.0))
            .collect();
        let f_mean = f.iter().sum::<f64>() / 1440.0;
        let f_max = f.iter().cloned().fold(0.0, f64::max) / f_mean;
        let accept: Vec<f64> = f.iter().map(|x| x / f_mean / f_max).collect();

        // In-session gaps: log-logistic, median 20 s, shape 1.8, within 1 s ..= 25 min.
        let gap_table: Vec<f64> = (0..=4096)
            .map(|k| {
                let p = k as f64 / 4096.0;
                let x = 20_000.0 * (p / (1.0 - p)).powf(1.0 / 1.8);
                if x.is_nan() {
                    1000.0
                } else {
                    x.clamp(1000.0, 1_500_000.0)
                }
            })
            .collect();

        // Human activity: lognormal weights, normalized to the configured mean.
        let nu = c.users as usize;
        let w: Vec<f64> = (0..nu)
            .map(|_| (1.3 * normal(&mut rng)).exp().min(150.0))
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
        let mut actors = Vec::with_capacity(nu + bots as usize);
        let mut estimated = 0.0f64;
        let mut near_count = 0;
        for (i, (&wi, &kind)) in w.iter().zip(&kinds).enumerate() {
            let mut e = wi * c.events_per_user_day / w_mean;
            let mut device = match rng.random::<f64>() {
                x if x < 0.55 => 0,
                x if x < 0.90 => 1,
                _ => 2,
            };
            let web = rng.random::<f64>() < 0.6;
            let mut ua = if web {
                human_ua(&mut rng, device)
            } else {
                NO_UA
            };
            let mu = (2.5 + 1.5 * (1.0 + e).ln()).clamp(2.0, 20.0);
            let q = (-1.0 / mu).exp();
            let mean_len = (1.0 - q.powi(40)) / (1.0 - q);
            let per_session = if kind == Kind::NearMiss {
                e = e.max(30.0);
                if near_count % 2 == 0 {
                    ua = ua_near + (near_count / 2 % UA_NEAR_MISS.len()) as u8;
                    device = 1;
                }
                near_count += 1;
                0.3 * 19.0 + 0.7 * mean_len
            } else {
                mean_len
            };
            estimated += e * days;
            let sessions_per_day = e / per_session;
            actors.push(Actor {
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
                cand_gap_ms: DAY_MS as f64 / (sessions_per_day * f_max),
                ln_q: q.ln(),
                active_end: end_ts,
            });
        }

        // Whole UTC days inside the run (each volume bot is active on one of them).
        let mut volume_from: Vec<(usize, u64)> = Vec::new();
        let first_day = start_ts.div_ceil(DAY_MS);
        let full_days = first_day..end_ts / DAY_MS;
        for j in 0..bots {
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
                    a.ua = ua_bot + rng.random_range(0..UA_BOTS.len() as u8);
                    a.cand_gap_ms = DAY_MS as f64 / 8.0;
                    estimated += 8.0 * 22.5 * days;
                }
                Kind::BurstBot => {
                    if rng.random::<f64>() < 0.5 {
                        a.ua = human_ua(&mut rng, 1);
                    }
                    a.cand_gap_ms = DAY_MS as f64 / 4.0;
                    estimated += 4.0 * 42.5 * days;
                }
                _ => {
                    a.ua = human_ua(&mut rng, device);
                    let (from, to) = if full_days.is_empty() {
                        (start_ts, end_ts)
                    } else {
                        let day = rng.random_range(full_days.clone());
                        (day * DAY_MS, (day + 1) * DAY_MS)
                    };
                    volume_from.push((actors.len(), from));
                    a.active_end = to;
                    estimated += (to - from) as f64 / 30_000.0;
                }
            }
            actors.push(a);
        }

        let mut gen = Generator {
            user_width: digits(c.users.max(bots).saturating_sub(1)).max(7),
            product_width: digits(c.products - 1).max(6),
            cfg: config,
            rng,
            end_ts,
            schedule: Schedule {
                heap: BinaryHeap::with_capacity(actors.len()),
            },
            actors,
            pending: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            seq: 0,
            product_alias,
            rank_product,
            products,
            category_products,
            category_alias,
            layouts: [
                Layout::new(false, &category_names, &uas),
                Layout::new(true, &category_names, &uas),
            ],
            accept,
            gap_table,
            spikes,
            next_spike: 0,
            active_spikes: Vec::new(),
            spike_check_ts: 0,
            estimated: estimated.round() as u64,
        };
        let mut volume_from = volume_from.into_iter().peekable();
        for i in 0..gen.actors.len() {
            let mut a = gen.actors[i];
            let first = if let Some((_, from)) = volume_from.next_if(|&(j, _)| j == i) {
                Some(from + gen.rng.random_range(0..30_000)).filter(|&t| t < a.active_end)
            } else {
                gen.start_session(&mut a, start_ts)
            };
            gen.actors[i] = a;
            if let Some(t) = first {
                gen.schedule.push(t, i as u32);
            }
        }
        Ok(gen)
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
                self.write_line(&mut line, &ev);
                self.slots[slot] = line;
                self.pending.push(Reverse((ev.ts + delay, ev.seq, slot)));
                continue;
            }
            self.write_line(buf, &ev);
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
        if ts >= self.spike_check_ts {
            self.update_spikes(ts);
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
                let p = self.below(self.rank_product.len() as u32);
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
                let top = self.rank_product.len().min(50) as u32;
                let rank = self.below(top) as usize;
                let p = self.rank_product[rank];
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

        // Schedule the actor's next event.
        let next = match a.kind {
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
            _ => self.start_session(&mut a, ts + MIN_SESSION_GAP_MS),
        }
        .filter(|&t| t < self.end_ts);
        self.actors[idx as usize] = a;
        match next {
            Some(t) => self.schedule.replace_top(t, idx),
            None => self.schedule.pop_top(),
        }
        Some(ev)
    }

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
                        let list =
                            &self.category_products[self.products[a.cur as usize].0 as usize];
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
                ev.category = self.category_alias.sample(self.rng.next_u64());
            }
            return;
        }
        ev.product = product;
        let (category, list) = self.products[product as usize];
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
        for i in 0..self.active_spikes.len() {
            let s = self.active_spikes[i];
            if self.unit() < s.q {
                return s.product;
            }
        }
        self.product_alias.sample(self.rng.next_u64())
    }

    fn update_spikes(&mut self, ts: u64) {
        self.active_spikes.retain(|s| s.end > ts);
        while let Some(s) = self.spikes.get(self.next_spike) {
            if s.start > ts {
                break;
            }
            if s.end > ts {
                self.active_spikes.push(*s);
            }
            self.next_spike += 1;
        }
        let next_start = self
            .spikes
            .get(self.next_spike)
            .map_or(u64::MAX, |s| s.start);
        let next_end = self
            .active_spikes
            .iter()
            .map(|s| s.end)
            .min()
            .unwrap_or(u64::MAX);
        self.spike_check_ts = next_start.min(next_end);
    }

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

    /// Formats `ev` as one JSON line (no newline) appended to `buf`.
    fn write_line(&self, buf: &mut Vec<u8>, ev: &Event) {
        let start = buf.len();
        let l = &self.layouts[ev.layout as usize];
        if ev.layout == LAYOUT_PY {
            buf.extend_from_slice(l.types[ev.etype as usize]);
            buf.extend_from_slice(l.user);
            push_id(buf, ev.prefix, ev.user as u64, self.user_width);
            self.write_ts(buf, l, ev);
        } else {
            buf.extend_from_slice(l.event_id);
            push_u64(buf, ev.seq);
            buf.push(b'"');
            self.write_ts(buf, l, ev);
            buf.extend_from_slice(l.user);
            push_id(buf, ev.prefix, ev.user as u64, self.user_width);
            buf.extend_from_slice(l.types[ev.etype as usize]);
        }
        if ev.product != NONE {
            buf.extend_from_slice(l.product);
            push_id(buf, b'p', ev.product as u64, self.product_width);
        }
        match ev.category {
            NONE => {}
            CAT_NULL => buf.extend_from_slice(l.category_null),
            c => buf.extend_from_slice(&l.categories[c as usize]),
        }
        if ev.price != NO_PRICE {
            buf.extend_from_slice(l.price);
            push_price(buf, ev.price, ev.layout == LAYOUT_PY);
        }
        match ev.device {
            DEV_NONE => {}
            DEV_NULL => buf.extend_from_slice(l.device_null),
            DEV_EMPTY => buf.extend_from_slice(l.device_empty),
            d => buf.extend_from_slice(&l.devices[d as usize]),
        }
        if ev.ua != NO_UA {
            buf.extend_from_slice(&l.uas[ev.ua as usize]);
        }
        if ev.layout == LAYOUT_PY {
            buf.extend_from_slice(l.event_id);
            push_u64(buf, ev.seq);
            buf.extend_from_slice(b"\"}");
        } else {
            buf.push(b'}');
        }
        if ev.trunc != 0 {
            let len = buf.len() - start;
            let cut = 1 + (((len - 1) * ev.trunc as usize) >> 16);
            buf.truncate(start + cut);
        }
    }

    fn write_ts(&self, buf: &mut Vec<u8>, l: &Layout, ev: &Event) {
        if ev.ts_form == TS_OMIT {
            return;
        }
        buf.extend_from_slice(l.ts);
        match ev.ts_form {
            TS_INT => push_u64(buf, ev.ts),
            TS_BAD_DIGITS => {
                buf.push(b'"');
                push_u64(buf, ev.ts);
                buf.push(b'"');
            }
            form => {
                let local = if form == TS_OFFSET {
                    (ev.ts as i64 + ev.off_min as i64 * 60_000) as u64
                } else {
                    ev.ts
                };
                let (y, mo, d) = civil_from_days((local / DAY_MS) as i64);
                let ms_of_day = local % DAY_MS;
                // "YYYY-MM-DDTHH:MM:SS.mmm" + offset, between quotes.
                let mut t = *b"\"0000-00-00T00:00:00.000+00:00\"";
                let put = |t: &mut [u8; 31], at: usize, n: u64, width: usize| {
                    let mut n = n;
                    for i in (at..at + width).rev() {
                        t[i] = b'0' + (n % 10) as u8;
                        n /= 10;
                    }
                };
                put(&mut t, 1, y as u64, 4);
                put(
                    &mut t,
                    6,
                    if form == TS_BAD_MONTH { 13 } else { mo as u64 },
                    2,
                );
                put(&mut t, 9, d as u64, 2);
                put(&mut t, 12, ms_of_day / HOUR_MS, 2);
                put(&mut t, 15, ms_of_day / 60_000 % 60, 2);
                put(&mut t, 18, ms_of_day / 1000 % 60, 2);
                put(&mut t, 21, ms_of_day % 1000, 3);
                t[11] = match form {
                    TS_LOWER => b't',
                    TS_BAD_SPACE => b' ',
                    _ => b'T',
                };
                let len = match form {
                    TS_BAD_LEAP => {
                        t[18..23].copy_from_slice(b"60Z\"\"");
                        22
                    }
                    TS_BAD_NO_OFFSET => {
                        t[24] = b'"';
                        25
                    }
                    TS_OFFSET => {
                        let off = ev.off_min.unsigned_abs() as u64;
                        t[24] = if ev.off_min < 0 { b'-' } else { b'+' };
                        put(&mut t, 25, off / 60, 2);
                        put(&mut t, 28, off % 60, 2);
                        31
                    }
                    _ => {
                        t[24] = if form == TS_LOWER { b'z' } else { b'Z' };
                        t[25] = b'"';
                        26
                    }
                };
                buf.extend_from_slice(&t[..len]);
            }
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

/// Pre-rendered pieces of one producer's line layout; every field piece
/// carries its separator, key and (for enumerations) its quoted value.
struct Layout {
    event_id: &'static [u8],
    ts: &'static [u8],
    user: &'static [u8],
    product: &'static [u8],
    price: &'static [u8],
    types: [&'static [u8]; 4],
    category_null: &'static [u8],
    device_null: &'static [u8],
    device_empty: &'static [u8],
    categories: Vec<Vec<u8>>,
    devices: Vec<Vec<u8>>,
    uas: Vec<Vec<u8>>,
}

impl Layout {
    fn new(py: bool, category_names: &[Vec<u8>], uas: &[&[u8]]) -> Layout {
        let field = |key: &str, value: &[u8]| -> Vec<u8> {
            let mut v = if py {
                format!(", \"{key}\": \"")
            } else {
                format!(",\"{key}\":\"")
            }
            .into_bytes();
            v.extend_from_slice(value);
            v.push(b'"');
            v
        };
        let categories = category_names
            .iter()
            .map(|c| field("category", c))
            .collect();
        let devices = DEVICES.iter().map(|d| field("device", d)).collect();
        let uas = uas.iter().map(|u| field("user_agent", u)).collect();
        if py {
            Layout {
                event_id: b", \"event_id\": \"e",
                ts: b", \"ts\": ",
                user: b", \"user_id\": \"",
                product: b", \"product_id\": \"",
                price: b", \"price\": ",
                types: [
                    b"{\"type\": \"view\"",
                    b"{\"type\": \"cart\"",
                    b"{\"type\": \"purchase\"",
                    b"{\"type\": \"click\"",
                ],
                category_null: b", \"category\": null",
                device_null: b", \"device\": null",
                device_empty: b", \"device\": \"\"",
                categories,
                devices,
                uas,
            }
        } else {
            Layout {
                event_id: b"{\"event_id\":\"e",
                ts: b",\"ts\":",
                user: b",\"user_id\":\"",
                product: b",\"product_id\":\"",
                price: b",\"price\":",
                types: [
                    b",\"type\":\"view\"",
                    b",\"type\":\"cart\"",
                    b",\"type\":\"purchase\"",
                    b",\"type\":\"click\"",
                ],
                category_null: b",\"category\":null",
                device_null: b",\"device\":null",
                device_empty: b",\"device\":\"\"",
                categories,
                devices,
                uas,
            }
        }
    }
}

/// Appends `prefix`, `n` zero-padded to `width` digits and a closing quote.
#[inline]
fn push_id(buf: &mut Vec<u8>, prefix: u8, mut n: u64, width: usize) {
    let mut tmp = [b'0'; 24];
    let mut i = 23;
    tmp[23] = b'"';
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    }
    if n >= 10 {
        let d = n as usize * 2;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    } else {
        i -= 1;
        tmp[i] = b'0' + n as u8;
    }
    i = i.min(23 - width) - 1;
    tmp[i] = prefix;
    buf.extend_from_slice(&tmp[i..]);
}

const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

#[inline]
fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = 20;
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    }
    if n >= 10 {
        let d = n as usize * 2;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    } else {
        i -= 1;
        tmp[i] = b'0' + n as u8;
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// A price in cents as the shortest JSON number (`24.99`, `24.5`, `25`);
/// the Python layout writes whole prices as floats (`25.0`).
fn push_price(buf: &mut Vec<u8>, cents: i64, py: bool) {
    if cents < 0 {
        buf.push(b'-');
    }
    let c = cents.unsigned_abs();
    push_u64(buf, c / 100);
    let f = (c % 100) as u8;
    if f == 0 {
        if py {
            buf.extend_from_slice(b".0");
        }
    } else {
        buf.push(b'.');
        buf.push(b'0' + f / 10);
        if !f.is_multiple_of(10) {
            buf.push(b'0' + f % 10);
        }
    }
}

/// (year, month, day) of a day number since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe as i64 + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A standard normal sample (Box-Muller; setup only).
fn normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn generate(cfg: GeneratorConfig) -> Vec<u8> {
        let mut g = Generator::new(cfg).unwrap();
        let mut out = Vec::new();
        while g.next_line(&mut out) {
            out.push(b'\n');
        }
        out
    }

    fn small() -> GeneratorConfig {
        GeneratorConfig {
            users: 500,
            days: 2,
            ..Default::default()
        }
    }

    /// A valid event, as far as the tests care.
    #[derive(Debug)]
    struct Ev {
        ts: u64,
        user: String,
        etype: String,
        product: Option<String>,
        category: Option<String>,
        price: Option<f64>,
        device: Option<String>,
        ua: Option<String>,
        rfc: bool,
    }

    /// RFC 3339 per SPEC section 1 (the subset a strict parser accepts) -> ms.
    fn rfc3339(s: &str) -> Option<u64> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u64> {
            let t = s.get(r)?;
            if t.bytes().all(|c| c.is_ascii_digit()) {
                t.parse().ok()
            } else {
                None
            }
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let (hh, mi, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || hh > 23 || mi > 59 || ss > 59 {
            return None;
        }
        let mdays = [
            31,
            28 + u64::from(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)),
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        if d == 0 || d > mdays[mo as usize - 1] {
            return None;
        }
        let mut i = 19;
        let mut ms = 0;
        if b[i] == b'.' {
            let j = i + 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if j == i + 1 {
                return None;
            }
            let frac = &s[i + 1..j];
            ms = format!("{:0<3}", &frac[..frac.len().min(3)])
                .parse::<u64>()
                .ok()?;
            i = j;
        }
        let off: i64 = match &s[i..] {
            "Z" | "z" => 0,
            o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
                let h: i64 = o[1..3].parse().ok()?;
                let m: i64 = o[4..6].parse().ok()?;
                let v = h * 60 + m;
                if o.starts_with('-') {
                    -v
                } else {
                    v
                }
            }
            _ => return None,
        };
        // days from civil (inverse of civil_from_days)
        let (y2, m2) = if mo <= 2 {
            (y as i64 - 1, mo + 9)
        } else {
            (y as i64, mo - 3)
        };
        let era = y2.div_euclid(400);
        let yoe = y2 - era * 400;
        let doy = (153 * m2 as i64 + 2) / 5 + d as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let t = days * DAY_MS as i64 + (hh * 3_600_000 + mi * 60_000 + ss * 1000 + ms) as i64
            - off * 60_000;
        u64::try_from(t).ok()
    }

    /// Classifies a line per SPEC section 1: Ok(event) or Err(invalid kind).
    fn classify(line: &[u8]) -> Result<Ev, &'static str> {
        let v: serde_json::Value = serde_json::from_slice(line).map_err(|_| "json")?;
        let o = v.as_object().ok_or("not an object")?;
        let get = |k: &str| o.get(k).filter(|v| !v.is_null());
        let opt_str = |k: &str| -> Result<Option<String>, &'static str> {
            match get(k) {
                None => Ok(None),
                Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or("wrong type"),
            }
        };
        let (ts, rfc) = match get("ts") {
            None => return Err("missing ts"),
            Some(serde_json::Value::Number(n)) => (n.as_u64().ok_or("ts number")?, false),
            Some(serde_json::Value::String(s)) => (rfc3339(s).ok_or("bad ts string")?, true),
            _ => return Err("ts type"),
        };
        if ts >= MAX_TS {
            return Err("ts range");
        }
        let user = opt_str("user_id")?
            .filter(|u| !u.is_empty() && u.len() <= 128)
            .ok_or("user_id")?;
        let etype = opt_str("type")?.ok_or("missing type")?;
        if !matches!(etype.as_str(), "view" | "cart" | "purchase") {
            return Err("bad type");
        }
        let price = match get("price") {
            None => None,
            Some(p) => Some(p.as_f64().ok_or("price type")?),
        };
        if price.is_some_and(|p| p < 0.0) {
            return Err("negative price");
        }
        opt_str("event_id")?.ok_or("event_id")?;
        Ok(Ev {
            ts,
            user,
            etype,
            product: opt_str("product_id")?,
            category: opt_str("category")?,
            price,
            device: opt_str("device")?,
            ua: opt_str("user_agent")?,
            rfc,
        })
    }

    fn is_bot_ua(ua: &str) -> bool {
        let ua = ua.to_ascii_lowercase();
        [
            "bot",
            "crawler",
            "spider",
            "headless",
            "curl",
            "python-requests",
        ]
        .iter()
        .any(|p| ua.contains(p))
    }

    fn parse_all(out: &[u8]) -> (Vec<Ev>, HashMap<&'static str, usize>, usize) {
        let mut evs = Vec::new();
        let mut bad = HashMap::new();
        let mut n = 0;
        for line in out.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            n += 1;
            match classify(line) {
                Ok(e) => evs.push(e),
                Err(k) => *bad.entry(k).or_insert(0) += 1,
            }
        }
        (evs, bad, n)
    }

    #[test]
    fn deterministic_per_seed() {
        let a = generate(small());
        let b = generate(small());
        assert!(a.len() > 10_000);
        assert_eq!(a, b);
        let c = generate(GeneratorConfig {
            seed: 43,
            ..small()
        });
        assert_ne!(a, c);
    }

    #[test]
    fn invalid_lines_are_the_deliberate_ones() {
        let share = 0.01;
        let out = generate(GeneratorConfig {
            users: 2000,
            invalid_share: share,
            ..small()
        });
        let (evs, bad, n) = parse_all(&out);
        let invalid: usize = bad.values().sum();
        let expected = share * n as f64;
        assert!(
            (invalid as f64 - expected).abs() < 0.2 * expected,
            "{invalid} invalid of {n} lines: {bad:?}"
        );
        for k in [
            "json",
            "missing ts",
            "bad type",
            "negative price",
            "bad ts string",
        ] {
            assert!(
                bad.get(k).copied().unwrap_or(0) as f64 > 0.1 * expected,
                "{k}: {bad:?}"
            );
        }
        assert_eq!(bad.len(), 5, "unexpected kinds of invalid lines: {bad:?}");
        assert_eq!(evs.len() + invalid, n);

        // Default share: roughly 0.05%, and everything else parses as JSON.
        let out = generate(small());
        let (_, bad, n) = parse_all(&out);
        let invalid: usize = bad.values().sum();
        let json_errors = bad.get("json").copied().unwrap_or(0);
        let expected = 0.0005 * n as f64;
        assert!(
            invalid as f64 > 0.4 * expected && (invalid as f64) < 1.8 * expected,
            "{invalid} of {n}"
        );
        assert!(json_errors <= invalid);
    }

    #[test]
    fn field_distributions() {
        let out = generate(GeneratorConfig {
            users: 3000,
            ..small()
        });
        let (evs, _, _) = parse_all(&out);
        let humans: Vec<&Ev> = evs.iter().filter(|e| e.user.starts_with('u')).collect();
        let n = humans.len() as f64;
        let share = |f: &dyn Fn(&Ev) -> bool| humans.iter().filter(|e| f(e)).count() as f64 / n;
        let cart = share(&|e| e.etype == "cart");
        let purchase = share(&|e| e.etype == "purchase");
        assert!((0.07..0.09).contains(&cart), "cart {cart}");
        assert!((0.015..0.025).contains(&purchase), "purchase {purchase}");
        let no_product = share(&|e| e.product.is_none());
        assert!(
            (0.035..0.065).contains(&no_product),
            "no product {no_product}"
        );
        let no_category = share(&|e| e.category.is_none());
        assert!(
            (0.07..0.13).contains(&no_category),
            "no category {no_category}"
        );
        let rfc = evs.iter().filter(|e| e.rfc).count() as f64 / evs.len() as f64;
        assert!((0.015..0.025).contains(&rfc), "rfc {rfc}");
        let ua = share(&|e| e.ua.is_some());
        assert!((0.4..0.7).contains(&ua), "ua {ua}");
        for d in ["mobile", "desktop", "tablet", "Mobile", ""] {
            assert!(
                humans.iter().any(|e| e.device.as_deref() == Some(d)),
                "device {d:?}"
            );
        }
        assert!(humans.iter().any(|e| e.device.is_none()));
        for e in &humans {
            if e.etype == "purchase" {
                let p = e.price.expect("purchase has a price");
                assert!((0.5..=500.0).contains(&p), "price {p}");
            }
            if let Some(p) = &e.product {
                assert!(p.len() == 7 && p.starts_with('p'), "{p}");
            }
            assert!(e.user.len() == 8, "{}", e.user);
        }
        assert!(humans
            .iter()
            .any(|e| e.price.is_some_and(|p| p.fract() == 0.0)));
        assert!(
            out.windows(13).any(|w| w == b"\"category\": \""),
            "python layout"
        );
        assert!(
            out.windows(14).any(|w| w == b"\"category\":\"sh"),
            "compact layout"
        );
    }

    #[test]
    fn ordered_except_for_disorder() {
        let share = 0.02;
        let out = generate(GeneratorConfig {
            users: 20_000,
            days: 1,
            disorder_share: share,
            ..Default::default()
        });
        let (evs, _, n) = parse_all(&out);
        let mut max = 0;
        let (mut behind, mut late) = (0usize, 0usize);
        for e in &evs {
            if e.ts < max {
                behind += 1;
                if e.ts + 5000 < max {
                    late += 1;
                }
            }
            max = max.max(e.ts);
        }
        let expected = share * n as f64;
        assert!(
            (behind as f64) < 1.2 * expected && behind as f64 > 0.4 * expected,
            "{behind} of {n}"
        );
        assert!(
            (late as f64) < 0.15 * expected && late as f64 > 0.02 * expected,
            "{late} late of {n}"
        );
        // Without disorder the output is sorted.
        let out = generate(GeneratorConfig {
            disorder_share: 0.0,
            invalid_share: 0.0,
            ..small()
        });
        let (evs, bad, _) = parse_all(&out);
        assert!(bad.is_empty());
        assert!(evs.windows(2).all(|w| w[0].ts <= w[1].ts));
        let start = GeneratorConfig::default().start_ts;
        assert!(evs.first().unwrap().ts >= start && evs.last().unwrap().ts < start + 2 * DAY_MS);
    }

    /// Which SPEC section 3 rule fires first for each user (ts order, valid events).
    fn bot_rules(evs: &[Ev]) -> HashMap<String, &'static str> {
        let mut by_user: HashMap<&str, Vec<&Ev>> = HashMap::new();
        for e in evs {
            by_user.entry(&e.user).or_default().push(e);
        }
        let mut flagged = HashMap::new();
        for (user, mut es) in by_user {
            es.sort_by_key(|e| e.ts);
            let ua = es
                .iter()
                .find(|e| e.ua.as_deref().is_some_and(is_bot_ua))
                .map(|e| e.ts);
            let mut burst = None;
            for i in 19..es.len() {
                if es[i].ts - es[i - 19].ts < 10_000 {
                    burst = Some(es[i].ts);
                    break;
                }
            }
            let mut volume = None;
            let mut day_counts: HashMap<u64, usize> = HashMap::new();
            for e in &es {
                let c = day_counts.entry(e.ts / DAY_MS).or_default();
                *c += 1;
                if *c == 2000 {
                    volume = Some(e.ts);
                    break;
                }
            }
            let rules = [(ua, "ua"), (burst, "burst"), (volume, "volume")];
            if let Some((_, r)) = rules
                .iter()
                .filter(|(t, _)| t.is_some())
                .min_by_key(|(t, _)| t.unwrap())
            {
                flagged.insert(user.to_string(), *r);
            }
        }
        flagged
    }

    #[test]
    fn bots_of_each_kind_and_no_human_is_flagged() {
        let cfg = GeneratorConfig {
            users: 3000,
            days: 2,
            ..Default::default()
        };
        let out = generate(cfg);
        let (evs, _, _) = parse_all(&out);
        let flagged = bot_rules(&evs);
        let count = |r: &str| {
            flagged
                .iter()
                .filter(|(u, k)| **k == r && u.starts_with('b'))
                .count()
        };
        // 30 bots: 10 of each kind, each caught by its own rule.
        assert_eq!(
            (count("ua"), count("burst"), count("volume")),
            (10, 10, 10),
            "{flagged:?}"
        );
        let humans: Vec<_> = flagged.keys().filter(|u| u.starts_with('u')).collect();
        assert!(humans.is_empty(), "humans flagged: {humans:?}");

        // Near misses: 19 events within 10 s, and "crawl" in a human UA.
        let mut by_user: HashMap<&str, Vec<u64>> = HashMap::new();
        for e in evs.iter().filter(|e| e.user.starts_with('u')) {
            by_user.entry(&e.user).or_default().push(e.ts);
        }
        let mut near = 0;
        for ts in by_user.values_mut() {
            ts.sort_unstable();
            if ts.windows(19).any(|w| w[18] - w[0] < 10_000) {
                near += 1;
            }
        }
        assert!(near >= 1);
        assert!(evs.iter().any(|e| e.user.starts_with('u')
            && e.ua
                .as_deref()
                .is_some_and(|u| u.to_ascii_lowercase().contains("crawl"))));
        // Human user agents never match a bot pattern.
        for ua in UA_MOBILE
            .iter()
            .chain(&UA_DESKTOP)
            .chain(&UA_TABLET)
            .chain(&UA_NEAR_MISS)
        {
            assert!(!is_bot_ua(ua), "{ua}");
        }
        for ua in UA_BOTS {
            assert!(is_bot_ua(ua), "{ua}");
        }
    }

    #[test]
    fn heavy_tailed_users_and_estimate() {
        let mut g = Generator::new(GeneratorConfig::default()).unwrap();
        let estimate = g.estimated_lines();
        let mut buf = Vec::new();
        let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut n = 0u64;
        while {
            buf.clear();
            g.next_line(&mut buf)
        } {
            n += 1;
            if let Ok(e) = classify(&buf) {
                if e.user.starts_with('u') {
                    *counts.entry(e.user.into_bytes()).or_default() += 1;
                }
            }
        }
        assert!(
            (n as f64 - estimate as f64).abs() < 0.1 * n as f64,
            "{n} lines, estimated {estimate}"
        );
        let mut c: Vec<u64> = counts.into_values().collect();
        c.sort_unstable_by(|a, b| b.cmp(a));
        let total: u64 = c.iter().sum();
        let top: u64 = c[..100].iter().sum();
        assert!(
            top as f64 >= 0.10 * total as f64,
            "top 1% share {}",
            top as f64 / total as f64
        );
        let median = c[c.len() / 2];
        assert!(c[0] >= 30 * median, "max {} median {median}", c[0]);
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases: [(&str, GeneratorConfig); 9] = [
            (
                "users",
                GeneratorConfig {
                    users: 0,
                    ..Default::default()
                },
            ),
            (
                "days",
                GeneratorConfig {
                    days: 0,
                    ..Default::default()
                },
            ),
            (
                "bot_share",
                GeneratorConfig {
                    bot_share: 1.5,
                    ..Default::default()
                },
            ),
            (
                "bot_share",
                GeneratorConfig {
                    bot_share: f64::NAN,
                    ..Default::default()
                },
            ),
            (
                "invalid_share",
                GeneratorConfig {
                    invalid_share: -0.1,
                    ..Default::default()
                },
            ),
            (
                "disorder_share",
                GeneratorConfig {
                    disorder_share: 2.0,
                    ..Default::default()
                },
            ),
            (
                "events_per_user_day",
                GeneratorConfig {
                    events_per_user_day: -1.0,
                    ..Default::default()
                },
            ),
            (
                "products",
                GeneratorConfig {
                    products: 0,
                    ..Default::default()
                },
            ),
            (
                "start_ts",
                GeneratorConfig {
                    start_ts: MAX_TS,
                    ..Default::default()
                },
            ),
        ];
        for (field, cfg) in cases {
            let err = Generator::new(cfg).err().expect(field);
            assert!(err.contains(&format!("`{field}`")), "{err}");
        }
        let cfg: GeneratorConfig = serde_json::from_str(r#"{"users": 5}"#).unwrap();
        assert_eq!((cfg.users, cfg.days, cfg.seed), (5, 7, 42));
        assert!(serde_json::from_str::<GeneratorConfig>(r#"{"user": 5}"#).is_err());
    }

    #[test]
    fn edge_configs() {
        // Tiny catalog, all bots, unaligned start, no humans' events.
        for cfg in [
            GeneratorConfig {
                users: 1,
                products: 1,
                categories: 1,
                days: 1,
                ..Default::default()
            },
            GeneratorConfig {
                users: 30,
                bot_share: 1.0,
                events_per_user_day: 0.0,
                days: 1,
                start_ts: 1_709_251_200_000 + 12_345_678,
                ..Default::default()
            },
            GeneratorConfig {
                users: 50,
                categories: 100,
                products: 5,
                ..Default::default()
            },
        ] {
            let out = generate(cfg);
            let (_, bad, n) = parse_all(&out);
            assert!(bad.values().sum::<usize>() <= n / 100 + 3);
        }
    }

    #[test]
    fn formatting_helpers() {
        let mut b = Vec::new();
        for (c, py, s) in [
            (2499, false, "24.99"),
            (2450, false, "24.5"),
            (2500, false, "25"),
            (2500, true, "25.0"),
            (99, false, "0.99"),
            (-1205, false, "-12.05"),
        ] {
            b.clear();
            push_price(&mut b, c, py);
            assert_eq!(std::str::from_utf8(&b).unwrap(), s);
        }
        for n in [0u64, 9, 10, 99, 100, 12345, u64::MAX] {
            b.clear();
            push_u64(&mut b, n);
            assert_eq!(std::str::from_utf8(&b).unwrap(), n.to_string());
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(
            civil_from_days((1_709_251_200_000 / DAY_MS) as i64),
            (2024, 3, 1)
        );
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(rfc3339("2024-03-01T00:00:00.000Z"), Some(1_709_251_200_000));
        assert_eq!(
            rfc3339("2024-03-01T01:00:00.5+01:00"),
            Some(1_709_251_200_500)
        );
    }
}
