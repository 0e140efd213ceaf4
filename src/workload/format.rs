//! One event as bytes: the two producers' line layouts and the hand-written
//! number and timestamp formatting (no serde on the hot path).
//!
//! An [`Event`] holds small codes (event type, device, timestamp form, index
//! of the user agent, ...) that the generator draws; [`Formatter::write_line`]
//! turns it into one JSON line from pre-rendered field pieces, in the
//! compact web-SDK layout or the Python-`json.dumps` app-SDK layout. Invalid
//! forms (a cut line, a bad `ts` string) are formatting choices too. Nothing
//! here draws a random number.

use clickflow_dataflows::calendar::civil_from_days;

use super::{DAY_MS, HOUR_MS};

/// No product (a landing page), no category, no current product.
pub(super) const NONE: u32 = u32::MAX;
/// `category` written as JSON `null`.
pub(super) const CAT_NULL: u32 = u32::MAX - 1;
/// No `price` field.
pub(super) const NO_PRICE: i64 = i64::MIN;

pub(super) const VIEW: u8 = 0;
pub(super) const CART: u8 = 1;
pub(super) const PURCHASE: u8 = 2;
pub(super) const CLICK: u8 = 3;

pub(super) const DEVICES: [&[u8]; 6] = [
    b"mobile", b"desktop", b"tablet", b"Mobile", b"Desktop", b"Tablet",
];
pub(super) const DEV_NONE: u8 = 255;
pub(super) const DEV_NULL: u8 = 254;
pub(super) const DEV_EMPTY: u8 = 253;

pub(super) const TS_INT: u8 = 0;
pub(super) const TS_Z: u8 = 1;
pub(super) const TS_OFFSET: u8 = 2;
pub(super) const TS_LOWER: u8 = 3;
pub(super) const TS_OMIT: u8 = 4;
pub(super) const TS_BAD_SPACE: u8 = 5;
pub(super) const TS_BAD_LEAP: u8 = 6;
pub(super) const TS_BAD_NO_OFFSET: u8 = 7;
pub(super) const TS_BAD_MONTH: u8 = 8;
pub(super) const TS_BAD_DIGITS: u8 = 9;

/// Compact producer (web SDK): `{"event_id":"e1","ts":...}`.
pub(super) const LAYOUT_WEB: u8 = 0;
/// Python `json.dumps` producer (app SDK): `{"type": "view", "user_id": ...}`.
pub(super) const LAYOUT_PY: u8 = 1;
/// `ua` of an actor or event without a user agent.
pub(super) const NO_UA: u8 = 255;

/// One event before formatting.
#[derive(Clone, Copy, Debug)]
pub(super) struct Event {
    pub(super) seq: u64,
    pub(super) ts: u64,
    pub(super) prefix: u8,
    pub(super) etype: u8,
    pub(super) layout: u8,
    pub(super) ts_form: u8,
    pub(super) device: u8,
    pub(super) ua: u8,
    /// Invalid: cut the line to `1 + (len - 1) * trunc / 65536` bytes (0 = don't).
    pub(super) trunc: u16,
    pub(super) off_min: i32,
    pub(super) user: u32,
    pub(super) product: u32,
    pub(super) category: u32,
    pub(super) price: i64,
}

/// How lines are written: both layouts and the zero-padded id widths.
pub(super) struct Formatter {
    /// Compact and Python-style line layouts.
    layouts: [Layout; 2],
    user_width: usize,
    product_width: usize,
}

impl Formatter {
    /// Users and bots are numbered from 0 within their prefix, so ids are
    /// padded to the widest of `0 .. actor_ids` (at least `u0000000`), and
    /// products to the widest of `0 .. products` (at least `p000000`).
    pub(super) fn new(
        actor_ids: u64,
        products: u64,
        category_names: &[Vec<u8>],
        uas: &[&[u8]],
    ) -> Formatter {
        Formatter {
            layouts: [
                Layout::new(false, category_names, uas),
                Layout::new(true, category_names, uas),
            ],
            user_width: digits(actor_ids.saturating_sub(1)).max(7),
            product_width: digits(products - 1).max(6),
        }
    }

    /// Formats `ev` as one JSON line (no newline) appended to `buf`.
    pub(super) fn write_line(&self, buf: &mut Vec<u8>, ev: &Event) {
        let start = buf.len();
        let l = &self.layouts[ev.layout as usize];
        if ev.layout == LAYOUT_PY {
            buf.extend_from_slice(l.types[ev.etype as usize]);
            buf.extend_from_slice(l.user);
            push_id(buf, ev.prefix, ev.user as u64, self.user_width);
            write_ts(buf, l, ev);
        } else {
            buf.extend_from_slice(l.event_id);
            push_u64(buf, ev.seq);
            buf.push(b'"');
            write_ts(buf, l, ev);
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
}

/// Appends the `ts` field in `ev`'s form (nothing for [`TS_OMIT`]).
fn write_ts(buf: &mut Vec<u8>, l: &Layout, ev: &Event) {
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

/// Decimal digits of `n`.
fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
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
fn push_id(buf: &mut Vec<u8>, prefix: u8, n: u64, width: usize) {
    buf.push(prefix);
    buf.resize(buf.len() + width.saturating_sub(digits(n)), b'0');
    push_u64(buf, n);
    buf.push(b'"');
}

const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

#[inline]
pub(super) fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
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
pub(super) fn push_price(buf: &mut Vec<u8>, cents: i64, py: bool) {
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
