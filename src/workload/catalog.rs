//! The catalog and the distributions the workload draws from: products and
//! categories with Zipf popularity and list prices, the day's trending
//! spikes, the day/night curve, in-session gaps and the user-agent strings.
//!
//! Everything here is built once, before the first event. [`Catalog::new`]
//! and [`spikes`] consume the generator's `SmallRng` (in that order); the
//! tables and word lists are fixed, and [`UserAgents`] draws from the rng it
//! is handed (the cast's). Sampling during the run is O(1) per draw
//! ([`Alias`]).

use std::f64::consts::PI;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore};

use super::{GeneratorConfig, DAY_MS, HOUR_MS};

/// Human browser user agents by device (already JSON-escaped).
pub(super) const UA_MOBILE: [&str; 3] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.6261.105 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.178 Mobile Safari/537.36",
];
pub(super) const UA_DESKTOP: [&str; 5] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.66",
];
pub(super) const UA_TABLET: [&str; 2] = [
    "Mozilla/5.0 (iPad; CPU OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
];
/// Near-miss humans: "crawl" but none of the SPEC bot substrings.
pub(super) const UA_NEAR_MISS: [&str; 2] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 PageCrawl-Assistant/2.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15 WebCrawlGuard/1.4",
];
/// Crawler user agents (each matches a SPEC section 3 substring).
pub(super) const UA_BOTS: [&str; 10] = [
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

/// Walker/Vose alias table: O(1) sampling from a discrete distribution.
pub(super) struct Alias {
    /// (acceptance threshold in units of 2^-32, label of this entry, label of its alias)
    table: Vec<(u32, u32, u32)>,
}

impl Alias {
    /// Samples index `i` with probability `weights[i] / sum`, returned as `labels[i]`.
    pub(super) fn new(weights: &[f64], labels: &[u32]) -> Alias {
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
    pub(super) fn sample(&self, r: u64) -> u32 {
        let i = (((r >> 32) * self.table.len() as u64) >> 32) as usize;
        let (threshold, label, alias) = self.table[i];
        if (r as u32) < threshold {
            label
        } else {
            alias
        }
    }
}

/// Zipf-Mandelbrot popularity by rank: `(rank + 5)^-1.05`.
pub(super) fn product_weights(products: usize) -> Vec<f64> {
    (0..products)
        .map(|r| (r as f64 + 5.0).powf(-1.05))
        .collect()
}

/// Products and categories: who is popular, what belongs where, what it costs.
pub(super) struct Catalog {
    /// Product ids by popularity.
    pub(super) product_alias: Alias,
    /// `rank_product[rank]` = product id.
    pub(super) rank_product: Vec<u32>,
    /// Per product id: (category, list price in cents).
    pub(super) products: Vec<(u32, u32)>,
    /// Products of each category, most popular first.
    pub(super) category_products: Vec<Vec<u32>>,
    /// Categories by size (landing pages pick a category this way).
    pub(super) category_alias: Alias,
}

impl Catalog {
    /// Shuffles popularity ranks over product ids and gives every product a
    /// category (Zipf sizes) and a list price (lognormal around 25.00).
    pub(super) fn new(c: &GeneratorConfig, weights: &[f64], rng: &mut SmallRng) -> Catalog {
        let np = c.products as usize;
        let mut rank_product: Vec<u32> = (0..np as u32).collect();
        for i in (1..np).rev() {
            let j = rng.random_range(0..=i);
            rank_product.swap(i, j);
        }
        let product_alias = Alias::new(weights, &rank_product);
        let nc = c.categories as usize;
        let cat_weights: Vec<f64> = (0..nc).map(|r| (r as f64 + 1.0).powf(-0.8)).collect();
        let category_alias = Alias::new(&cat_weights, &(0..nc as u32).collect::<Vec<_>>());
        let mut products = vec![(0u32, 0u32); np];
        for product in products.iter_mut() {
            let category = category_alias.sample(rng.next_u64());
            *product = (category, list_price(rng));
        }
        let mut category_products = vec![Vec::new(); nc];
        for &p in &rank_product {
            category_products[products[p as usize].0 as usize].push(p);
        }
        Catalog {
            product_alias,
            rank_product,
            products,
            category_products,
            category_alias,
        }
    }
}

/// A list price in cents within 0.99 ..= 500.00: mostly `x.99`, some whole.
fn list_price(rng: &mut SmallRng) -> u32 {
    let cents = (2500.0 * normal(rng).exp()).clamp(99.0, 50_000.0);
    let style: f64 = rng.random();
    let dollars = (cents / 100.0).round().max(1.0) as u32;
    if style < 0.6 {
        dollars * 100 - 1
    } else if style < 0.75 {
        dollars * 100
    } else {
        cents as u32
    }
}

/// Category names: the words, then `c040`, `c041`, ...
pub(super) fn category_names(categories: usize) -> Vec<Vec<u8>> {
    (0..categories)
        .map(|i| match CATEGORY_WORDS.get(i) {
            Some(w) => w.as_bytes().to_vec(),
            None => format!("c{i:03}").into_bytes(),
        })
        .collect()
}

/// A trending spike: `product` is `q`-overridden into product picks in `[start, end)`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Spike {
    start: u64,
    end: u64,
    pub(super) product: u32,
    pub(super) q: f64,
}

/// Trending spikes: 1-3 a day on mid-popularity products (none in a catalog
/// of fewer than 20), sorted by start.
pub(super) fn spikes(
    c: &GeneratorConfig,
    weights: &[f64],
    rank_product: &[u32],
    rng: &mut SmallRng,
) -> Vec<Spike> {
    let np = rank_product.len();
    let mut spikes = Vec::new();
    if np < 20 {
        return spikes;
    }
    let weight_sum: f64 = weights.iter().sum();
    let hi = np.min(1000);
    for d in 0..c.days {
        for _ in 0..rng.random_range(1..=3u32) {
            let rank = rng.random_range(10..hi);
            let start = c.start_ts + d * DAY_MS + 8 * HOUR_MS + rng.random_range(0..12 * HOUR_MS);
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
    spikes
}

/// The spikes in event-time order, and which of them are active now.
pub(super) struct SpikeTimeline {
    spikes: Vec<Spike>,
    next: usize,
    /// Active at the last [`SpikeTimeline::advance`].
    pub(super) active: Vec<Spike>,
    /// The next time a spike starts or ends.
    pub(super) check_ts: u64,
}

impl SpikeTimeline {
    /// A timeline of `spikes` (sorted by start); nothing active yet.
    pub(super) fn new(spikes: Vec<Spike>) -> Self {
        SpikeTimeline {
            spikes,
            next: 0,
            active: Vec::new(),
            check_ts: 0,
        }
    }

    /// Makes `active` the spikes active at `ts` (non-decreasing between calls).
    pub(super) fn advance(&mut self, ts: u64) {
        self.active.retain(|s| s.end > ts);
        while let Some(s) = self.spikes.get(self.next) {
            if s.start > ts {
                break;
            }
            if s.end > ts {
                self.active.push(*s);
            }
            self.next += 1;
        }
        let next_start = self.spikes.get(self.next).map_or(u64::MAX, |s| s.start);
        let next_end = self.active.iter().map(|s| s.end).min().unwrap_or(u64::MAX);
        self.check_ts = next_start.min(next_end);
    }
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

/// The day/night cycle as a thinning table for candidate session starts.
pub(super) struct DayCycle {
    /// Per minute of the UTC day: session acceptance probability.
    pub(super) accept: Vec<f64>,
    /// Peak activity over the mean (candidates come this much faster than sessions).
    pub(super) peak: f64,
}

impl DayCycle {
    /// Acceptance per minute, normalized to mean 1 over the day.
    pub(super) fn new() -> DayCycle {
        let f: Vec<f64> = (0..1440)
            .map(|m| diurnal((m as f64 + 0.5) / 60.0))
            .collect();
        let f_mean = f.iter().sum::<f64>() / 1440.0;
        let peak = f.iter().cloned().fold(0.0, f64::max) / f_mean;
        let accept = f.iter().map(|x| x / f_mean / peak).collect();
        DayCycle { accept, peak }
    }
}

/// In-session gaps: inverse CDF of a log-logistic (median 20 s, shape 1.8)
/// within 1 s ..= 25 min, at 4097 knots.
pub(super) fn gap_table() -> Vec<f64> {
    (0..=4096)
        .map(|k| {
            let p = k as f64 / 4096.0;
            let x = 20_000.0 * (p / (1.0 - p)).powf(1.0 / 1.8);
            if x.is_nan() {
                1000.0
            } else {
                x.clamp(1000.0, 1_500_000.0)
            }
        })
        .collect()
}

/// Every user-agent string, by index: humans by device, near misses, then
/// crawlers (an actor's `ua` is an index, or [`super::format::NO_UA`]).
pub(super) struct UserAgents {
    pub(super) all: Vec<&'static [u8]>,
    mobile: u8,
    desktop: u8,
    tablet: u8,
    near: u8,
    bot: u8,
}

impl UserAgents {
    /// The table of all user agents.
    pub(super) fn new() -> UserAgents {
        let mut all: Vec<&'static [u8]> = Vec::new();
        let mut base = |list: &[&'static str]| {
            let base = all.len() as u8;
            all.extend(list.iter().map(|s| s.as_bytes()));
            base
        };
        let mobile = base(&UA_MOBILE);
        let desktop = base(&UA_DESKTOP);
        let tablet = base(&UA_TABLET);
        let near = base(&UA_NEAR_MISS);
        let bot = base(&UA_BOTS);
        UserAgents {
            all,
            mobile,
            desktop,
            tablet,
            near,
            bot,
        }
    }

    /// A browser of `device` (0 mobile, 1 desktop, 2 tablet).
    pub(super) fn human(&self, rng: &mut SmallRng, device: u8) -> u8 {
        match device {
            0 => self.mobile + rng.random_range(0..UA_MOBILE.len() as u8),
            1 => self.desktop + rng.random_range(0..UA_DESKTOP.len() as u8),
            _ => self.tablet + rng.random_range(0..UA_TABLET.len() as u8),
        }
    }

    /// The `k`-th near-miss desktop browser (round robin).
    pub(super) fn near_miss(&self, k: usize) -> u8 {
        self.near + (k % UA_NEAR_MISS.len()) as u8
    }

    /// A crawler.
    pub(super) fn bot(&self, rng: &mut SmallRng) -> u8 {
        self.bot + rng.random_range(0..UA_BOTS.len() as u8)
    }
}

/// A standard normal sample (Box-Muller; setup only).
pub(super) fn normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}
