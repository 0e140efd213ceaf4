//! Tests of the workload: determinism per seed, the shares the model
//! promises (funnel, fields, invalid lines, disorder), bots caught by their
//! own rule and no human caught, the heavy tail, config errors and the
//! formatting helpers. Lines are classified as the SPEC reads them (the
//! pipeline's own RFC 3339 parser).

use super::catalog::{UA_BOTS, UA_DESKTOP, UA_MOBILE, UA_NEAR_MISS, UA_TABLET};
use super::format::{push_price, push_u64};
use super::*;
use clickflow_dataflows::event::parse_rfc3339;
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
        Some(serde_json::Value::String(s)) => {
            (parse_rfc3339(s).map_err(|_| "bad ts string")?, true)
        }
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
}
