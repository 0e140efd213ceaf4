//! Events: the SPEC section 1 schema, decoding and validation.
//!
//! [`decode_line`] turns one line of input (a JSON Lines line or a Kafka
//! message value) into an [`Event`] or an [`Invalid`] naming the field or the
//! parse error. It never panics on any bytes. Rules, in the SPEC's words:
//!
//! * the line must be a single JSON object, valid UTF-8, with no duplicate key
//!   (at any depth) and no unpaired surrogate escape (anywhere);
//! * `ts` is a JSON integer literal (no fraction, no exponent) or an RFC 3339
//!   string (`T`/`t`, `Z`/`z` or `±hh:mm`, fractions below 1 ms truncated,
//!   second 60 invalid), and `0 <= ts < 253402300800000`;
//! * `user_id` is a non-empty string of at most 128 UTF-8 bytes;
//! * `type` is exactly `view`, `cart` or `purchase`;
//! * the optional fields must have their JSON type when present; `null`
//!   counts as missing; `price` must be `>= 0`; unknown fields are ignored,
//!   but must be valid JSON by the same rules, nested at most
//!   [`MAX_NESTING`] levels deep (the event object included).
//!
//! Decoding borrows from the line where it can; the only allocations are the
//! owned strings of the resulting [`Event`]. The user agent is not kept: it is
//! matched against the bot patterns here, once, and reduced to a flag.

use crate::calendar::{days_from_civil, days_in_month};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// The largest valid `ts` plus one: 10000-01-01T00:00:00Z in ms.
pub const TS_LIMIT: u64 = 253_402_300_800_000;

/// The most bytes a `user_id` may have.
pub const USER_ID_MAX_BYTES: usize = 128;

/// The deepest nesting of arrays and objects a line may have, the event
/// object itself included (serde_json's recursion limit): a line nested
/// deeper, in any field, known or ignored, is invalid (`recursion limit
/// exceeded`). Never a stack overflow, however deep.
pub const MAX_NESTING: usize = 127;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    /// A product (or page) view.
    View,
    /// An add-to-cart.
    Cart,
    /// A purchase; only these add to spend.
    Purchase,
}

/// A valid event, as the dataflow sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Event time, ms since the Unix epoch.
    pub ts: u64,
    /// The visitor / customer id.
    pub user_id: String,
    /// What happened.
    pub kind: EventKind,
    /// The product acted on; `None` when missing or empty.
    pub product_id: Option<String>,
    /// The product's category; `None` when missing or empty.
    pub category: Option<String>,
    /// Lower-cased device; `"unknown"` when missing or empty.
    pub device: String,
    /// Unit price; 0 when missing.
    pub price: f64,
    /// Whether the user agent matched a bot pattern (SPEC section 3, rule 1).
    pub ua_bot: bool,
}

impl Event {
    /// An empty event, to move a real one out of a buffer.
    pub fn placeholder() -> Event {
        Event {
            ts: 0,
            user_id: String::new(),
            kind: EventKind::View,
            product_id: None,
            category: None,
            device: String::new(),
            price: 0.0,
            ua_bot: false,
        }
    }
}

/// Why a line is not a valid event: the `detail` of its dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Case-insensitive substring patterns for the user-agent bot rule.
#[derive(Debug, Clone, Default)]
pub struct UaPatterns {
    lowered: Vec<String>,
}

impl UaPatterns {
    /// Builds the matcher from the configured patterns (any case).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        UaPatterns {
            lowered: patterns
                .iter()
                .map(|p| p.as_ref().to_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    /// Whether `ua` contains any pattern, ignoring case.
    pub fn matches(&self, ua: &str) -> bool {
        if self.lowered.is_empty() {
            return false;
        }
        let mut buf = [0u8; 512];
        if ua.is_ascii() && ua.len() <= buf.len() {
            // The common case, without allocating: ASCII folding into a stack buffer.
            let lower = &mut buf[..ua.len()];
            lower.copy_from_slice(ua.as_bytes());
            lower.make_ascii_lowercase();
            let lower = std::str::from_utf8(lower).unwrap_or_default();
            return self.lowered.iter().any(|p| lower.contains(p.as_str()));
        }
        let lower = ua.to_lowercase();
        self.lowered.iter().any(|p| lower.contains(p.as_str()))
    }
}

/// Whether a line is empty or only white space: such lines are skipped, not counted.
pub fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c))
}

/// Decodes one line into an event.
pub fn decode_line(line: &[u8], patterns: &UaPatterns) -> Result<Event, Invalid> {
    let text = std::str::from_utf8(line)
        .map_err(|e| Invalid(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = RawEvent::deserialize(&mut de).map_err(|e| Invalid(clean_error(&e)))?;
    de.end().map_err(|e| Invalid(clean_error(&e)))?;
    raw.validate(patterns)
}

fn clean_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // serde_json appends " at line 1 column N"; keep the column, it helps.
    msg.replace(" at line 1 column ", " at column ")
}

/// A nested parse's error without its position (the outer parse adds the
/// line's column).
fn bare_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}

/// A JSON value of one of the event fields, before validation.
enum Field<'a> {
    /// The `ts` field, read from its literal ([`TsSeed`]): the ms, or what is wrong.
    Ts(Result<u64, String>),
    Null,
    Str(Cow<'a, str>),
    UInt(u64),
    /// A negative integer literal.
    NegInt,
    /// A number with a fraction or an exponent (or out of integer range).
    Float(f64),
    Bool,
    Array,
    Object,
}

impl Field<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Field::Null => "null",
            Field::Ts(_) => "a timestamp",
            Field::Str(_) => "a string",
            Field::UInt(_) | Field::NegInt | Field::Float(_) => "a number",
            Field::Bool => "a boolean",
            Field::Array => "an array",
            Field::Object => "an object",
        }
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Field::Bool)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::UInt(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(if v >= 0 { Field::UInt(v as u64) } else { Field::NegInt })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Field::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        StrictAny.visit_seq(seq)?;
        Ok(Field::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        StrictAny.visit_map(map)?;
        Ok(Field::Object)
    }
}

impl<'de> DeserializeSeed<'de> for FieldVisitor {
    type Value = Field<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// Reads the `ts` field from its literal text, so that what is wrong with it
/// is said precisely: `-0` is negative zero, `18446744073709551616` is out of
/// range (not "a fraction or an exponent", which is what the parsed double
/// would suggest). `null` is [`Field::Null`] (missing); every other value is
/// [`Field::Ts`], and one that is not a number or a string is still checked
/// for duplicate keys and unpaired surrogates inside.
struct TsSeed;

impl<'de> DeserializeSeed<'de> for TsSeed {
    type Value = Result<u64, String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let raw = <&'de serde_json::value::RawValue>::deserialize(d)?;
        let text = raw.get();
        let sub = || serde_json::Deserializer::from_str(text);
        match text.as_bytes().first() {
            Some(b'"') => {
                let s = sub().deserialize_str(KeyVisitor).map_err(|e| de::Error::custom(bare_error(&e)))?;
                Ok(parse_rfc3339(&s).map_err(|e| format!("`ts` {e}")))
            }
            Some(b'-' | b'0'..=b'9') => Ok(ts_number(text)),
            Some(b'n') => Ok(Err(String::from("missing `ts`"))),
            _ => {
                sub().deserialize_any(StrictAny).map_err(|e| de::Error::custom(bare_error(&e)))?;
                let kind = match text.as_bytes().first() {
                    Some(b'[') => "an array",
                    Some(b'{') => "an object",
                    _ => "a boolean",
                };
                Ok(Err(format!("`ts` must be an integer or an RFC 3339 string, got {kind}")))
            }
        }
    }
}

/// A `ts` number literal: a JSON integer, `0 <= ts <` [`TS_LIMIT`].
fn ts_number(text: &str) -> Result<u64, String> {
    if text.contains(['.', 'e', 'E']) {
        return Err("`ts` must be an integer literal (no fraction, no exponent)".into());
    }
    if text == "-0" {
        return Err("`ts` is -0 (negative zero), not a non-negative integer".into());
    }
    if text.starts_with('-') {
        return Err("`ts` is negative".into());
    }
    match text.parse::<u64>() {
        Ok(ts) if ts < TS_LIMIT => Ok(ts),
        _ => Err(format!("`ts` {text} is not below {TS_LIMIT}")),
    }
}

/// Consumes any JSON value, rejecting duplicate keys and unpaired surrogates
/// inside it (serde_json only checks escapes of strings it decodes).
struct StrictAny;

impl<'de> Visitor<'de> for StrictAny {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(StrictAny)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            map.next_value_seed(StrictAny)?;
            seen.push(key);
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for StrictAny {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// An object key, decoded (so escapes are checked and `"t\u0073"` is `ts`).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

const KNOWN: [&str; 9] = [
    "ts",
    "user_id",
    "type",
    "product_id",
    "category",
    "device",
    "price",
    "user_agent",
    "event_id",
];

/// The event object with each known field as it appeared.
#[derive(Default)]
struct RawEvent<'a> {
    fields: [Option<Field<'a>>; 9],
}

impl<'de> Deserialize<'de> for RawEvent<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawEvent<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawEvent::default();
        let mut unknown: Vec<Cow<'de, str>> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match KNOWN.iter().position(|k| *k == key) {
                Some(i) => {
                    if raw.fields[i].is_some() {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    raw.fields[i] = Some(if i == 0 { Field::Ts(map.next_value_seed(TsSeed)?) } else { map.next_value_seed(FieldVisitor)? });
                }
                None => {
                    if unknown.contains(&key) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    map.next_value_seed(StrictAny)?;
                    unknown.push(key);
                }
            }
        }
        Ok(raw)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom("not a JSON object: an array"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(E::custom("not a JSON object: a string"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(E::custom("not a JSON object: a number"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(E::custom("not a JSON object: a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(E::custom("not a JSON object: a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(E::custom("not a JSON object: a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom("not a JSON object: null"))
    }
}

impl<'a> RawEvent<'a> {
    fn take(&mut self, i: usize) -> Option<Field<'a>> {
        match self.fields[i].take() {
            Some(Field::Null) | None => None,
            some => some,
        }
    }

    fn optional_str(&mut self, i: usize) -> Result<Option<Cow<'a, str>>, Invalid> {
        match self.take(i) {
            None => Ok(None),
            Some(Field::Str(s)) => Ok(Some(s)),
            Some(other) => Err(Invalid(format!(
                "`{}` must be a string, got {}",
                KNOWN[i],
                other.type_name()
            ))),
        }
    }

    fn validate(mut self, patterns: &UaPatterns) -> Result<Event, Invalid> {
        let ts = match self.take(0) {
            None => return Err(Invalid("missing `ts`".into())),
            Some(Field::Ts(ts)) => ts.map_err(Invalid)?,
            Some(other) => {
                return Err(Invalid(format!(
                    "`ts` must be an integer or an RFC 3339 string, got {}",
                    other.type_name()
                )))
            }
        };
        let user_id = match self.optional_str(1)? {
            None => return Err(Invalid("missing `user_id`".into())),
            Some(s) if s.is_empty() => return Err(Invalid("`user_id` is empty".into())),
            Some(s) if s.len() > USER_ID_MAX_BYTES => {
                return Err(Invalid(format!(
                    "`user_id` has {} bytes, more than {USER_ID_MAX_BYTES}",
                    s.len()
                )))
            }
            Some(s) => s,
        };
        let kind = match self.optional_str(2)? {
            None => return Err(Invalid("missing `type`".into())),
            Some(s) => match &*s {
                "view" => EventKind::View,
                "cart" => EventKind::Cart,
                "purchase" => EventKind::Purchase,
                other => {
                    return Err(Invalid(format!(
                        "`type` {other:?} is not one of \"view\", \"cart\", \"purchase\""
                    )))
                }
            },
        };
        let product_id = self.optional_str(3)?;
        let category = self.optional_str(4)?;
        let device = self.optional_str(5)?;
        let price = match self.take(6) {
            None => 0.0,
            Some(Field::UInt(v)) => v as f64,
            Some(Field::Float(v)) if v >= 0.0 && v.is_finite() => v,
            Some(Field::Float(_)) | Some(Field::NegInt) => {
                return Err(Invalid("`price` is negative".into()))
            }
            Some(other) => {
                return Err(Invalid(format!(
                    "`price` must be a number, got {}",
                    other.type_name()
                )))
            }
        };
        let user_agent = self.optional_str(7)?;
        self.optional_str(8)?;
        let non_empty = |s: Option<Cow<'_, str>>| s.filter(|s| !s.is_empty()).map(Cow::into_owned);
        let device = match device {
            Some(d) if !d.is_empty() => d.to_lowercase(),
            _ => "unknown".to_owned(),
        };
        Ok(Event {
            ts,
            user_id: user_id.into_owned(),
            kind,
            product_id: non_empty(product_id),
            category: non_empty(category),
            device,
            price,
            ua_bot: user_agent.is_some_and(|ua| patterns.matches(&ua)),
        })
    }
}

/// Parses an RFC 3339 date-time into ms since the epoch (fractions below
/// 1 ms truncated). Errors describe what is wrong, for a dead letter's detail.
pub fn parse_rfc3339(s: &str) -> Result<u64, String> {
    let b = s.as_bytes();
    let bad = || format!("{s:?} is not an RFC 3339 date-time");
    if b.len() < 20 {
        return Err(bad());
    }
    let digits = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let mut v = 0i64;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return Err(bad());
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Ok(v)
    };
    let year = digits(0..4)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    let hour = digits(11..13)?;
    let minute = digits(14..16)?;
    let second = digits(17..19)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("{s:?} has no such date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("{s:?} has no such time of day"));
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return Err(format!("{s:?} has an empty fraction"));
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let all = [*h1, *h2, *m1, *m2];
            if !all.iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            let oh = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let om = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if oh > 23 || om > 59 {
                return Err(format!("{s:?} has an invalid UTC offset"));
            }
            let total = oh * 60 + om;
            if *sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    let ms = secs * 1000 + millis;
    if ms < 0 {
        return Err(format!("{s:?} is before the Unix epoch"));
    }
    Ok(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<Event, Invalid> {
        decode_line(s.as_bytes(), &UaPatterns::new(&["bot", "curl"]))
    }

    #[test]
    fn valid_event_with_all_fields() {
        let e = decode(r#"{"ts": 1700000000000, "user_id": "u1", "type": "purchase", "product_id": "p", "category": "c", "device": "MoBile", "price": 9.5, "user_agent": "x GoogleBOT", "event_id": "e1", "extra": {"a": [1, {"b": null}]}}"#).unwrap();
        assert_eq!(e.ts, 1_700_000_000_000);
        assert_eq!(e.kind, EventKind::Purchase);
        assert_eq!(e.device, "mobile");
        assert_eq!(e.price, 9.5);
        assert!(e.ua_bot);
        assert_eq!(e.product_id.as_deref(), Some("p"));
    }

    #[test]
    fn nulls_and_empties_count_as_missing() {
        let e = decode(r#"{"ts": 1, "user_id": "u", "type": "view", "product_id": "", "category": null, "device": "", "price": null}"#).unwrap();
        assert_eq!(e.product_id, None);
        assert_eq!(e.category, None);
        assert_eq!(e.device, "unknown");
        assert_eq!(e.price, 0.0);
    }

    #[test]
    fn ts_must_be_an_integer_literal() {
        for ts in ["1.0", "1e3", "1E-1", "17e0", "-1", "253402300800000", "true", "null", "\"17\""] {
            let line = format!(r#"{{"ts": {ts}, "user_id": "u", "type": "view"}}"#);
            assert!(decode(&line).is_err(), "{line}");
        }
        assert_eq!(decode(r#"{"ts": 253402300799999, "user_id": "u", "type": "view"}"#).unwrap().ts, 253_402_300_799_999);
    }

    #[test]
    fn ts_details_say_what_is_wrong() {
        let detail = |ts: &str| decode(&format!(r#"{{"ts": {ts}, "user_id": "u", "type": "view"}}"#)).unwrap_err().0;
        assert_eq!(detail("-0"), "`ts` is -0 (negative zero), not a non-negative integer");
        assert_eq!(detail("18446744073709551616"), "`ts` 18446744073709551616 is not below 253402300800000");
        assert_eq!(detail("253402300800000"), "`ts` 253402300800000 is not below 253402300800000");
        assert_eq!(detail("-5"), "`ts` is negative");
        assert_eq!(detail("1.0"), "`ts` must be an integer literal (no fraction, no exponent)");
        assert_eq!(detail("17e2"), "`ts` must be an integer literal (no fraction, no exponent)");
        assert_eq!(detail("null"), "missing `ts`");
        assert_eq!(detail("true"), "`ts` must be an integer or an RFC 3339 string, got a boolean");
        assert_eq!(detail("[1]"), "`ts` must be an integer or an RFC 3339 string, got an array");
        assert!(detail(r#"{"a": 1, "a": 2}"#).contains("duplicate key `a`"));
        assert!(detail(r#""2024-01-10T00:00:00\ud800Z""#).starts_with("unexpected end of hex escape at column"), "{}", detail(r#""\ud800Z""#));
        assert!(detail(r#""2024-01-10T00:00:00\udc00Z""#).starts_with("lone leading surrogate in hex escape at column"));
        assert!(detail(r#""2024-01-10 00:00:00Z""#).contains("not an RFC 3339 date-time"));
        assert!(decode(r#"{"ts": null, "ts": 1, "user_id": "u", "type": "view"}"#).unwrap_err().0.contains("duplicate key `ts`"));
        assert_eq!(decode(r#"{"ts": "2024-01-10T00:00:00Z", "user_id": "u", "type": "view"}"#).unwrap().ts, 1_704_844_800_000);
        assert_eq!(decode(r#"{"ts":0,"user_id":"u","type":"view"}"#).unwrap().ts, 0);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_invalid_and_never_overflows_the_stack() {
        let nested = |depth: usize| format!(r#"{{"ts": 1, "user_id": "u", "type": "view", "x": {}{}}}"#, "[".repeat(depth), "]".repeat(depth));
        assert!(decode(&nested(MAX_NESTING - 1)).is_ok(), "the event object plus {} levels", MAX_NESTING - 1);
        let deep = decode(&nested(MAX_NESTING)).unwrap_err().0;
        assert!(deep.contains("recursion limit exceeded"), "{deep}");
        assert!(decode(&nested(10_000)).is_err());
        assert!(decode(&format!(r#"{{"ts": {}1{}, "user_id": "u", "type": "view"}}"#, "[".repeat(10_000), "]".repeat(10_000))).is_err());
    }

    #[test]
    fn rfc3339_rules() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2024-01-10t00:00:02.5z"), Ok(1_704_844_802_500));
        assert_eq!(parse_rfc3339("2024-01-10T00:00:03.0009999Z"), Ok(1_704_844_803_000));
        assert_eq!(parse_rfc3339("2024-01-09T19:00:03.9999999-05:00"), Ok(1_704_844_803_999));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00+02:00"), Ok(1_709_157_600_000));
        for bad in [
            "2023-12-31T23:59:60Z",
            "2024-01-10 00:00:01Z",
            "2024-01-10T00:00:01+0000",
            "2024-01-10T00:00:01+24:00",
            "2024-01-10T00:00:01.Z",
            "1969-12-31T23:59:59.999Z",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-10T00:00:00",
            "1704844800000",
            "２024-01-10T00:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatted_timestamps_parse_back() {
        for ms in [0, 1, 999, 86_399_999, 951_782_400_000, 1_709_251_234_567, TS_LIMIT - 1] {
            assert_eq!(parse_rfc3339(&crate::calendar::format_rfc3339_ms(ms)), Ok(ms));
        }
    }

    #[test]
    fn duplicates_surrogates_and_bad_utf8_are_invalid() {
        assert!(decode(r#"{"ts": 1, "user_id": "u", "type": "view", "type": "cart"}"#).is_err());
        assert!(decode(r#"{"ts": 1, "user_id": "u", "type": "view", "x": 1, "x": 2}"#).is_err());
        assert!(decode(r#"{"ts": 1, "user_id": "u", "type": "view", "x": {"a": 1, "a": 2}}"#).is_err());
        assert!(decode(r#"{"ts": 1, "user_id": "u", "t\u0079pe": "view", "type": "cart"}"#).is_err());
        assert!(decode(r#"{"ts": 1, "user_id": "a\ud83d", "type": "view"}"#).is_err());
        assert!(decode(r#"{"ts": 1, "user_id": "a\udee0\ud83d", "type": "view"}"#).is_err());
        assert!(decode(r#"{"ts": 1, "user_id": "u", "type": "view", "x": "\ud83d"}"#).is_err());
        assert_eq!(decode(r#"{"ts": 1, "user_id": "\ud83d\ude00", "type": "view"}"#).unwrap().user_id, "😀");
        assert!(decode_line(b"{\"ts\": 1, \"user_id\": \"\xff\", \"type\": \"view\"}", &UaPatterns::default()).is_err());
    }

    #[test]
    fn wrong_types_and_limits_are_invalid() {
        for line in [
            r#"{"ts": 1, "user_id": "u", "type": "view", "product_id": 1}"#,
            r#"{"ts": 1, "user_id": "u", "type": "view", "price": "1"}"#,
            r#"{"ts": 1, "user_id": "u", "type": "purchase", "price": -0.01}"#,
            r#"{"ts": 1, "user_id": "u", "type": "View"}"#,
            r#"{"ts": 1, "user_id": "", "type": "view"}"#,
            r#"{"ts": 1, "user_id": 5, "type": "view"}"#,
            r#"[{"ts": 1, "user_id": "u", "type": "view"}]"#,
            r#"{"ts": 1, "user_id": "u", "type": "view"} x"#,
            r#"{"ts": 1, "user_id": "u", "type": "view",}"#,
            "null",
            "",
        ] {
            assert!(decode(line).is_err(), "{line}");
        }
        let ok = format!(r#"{{"ts": 1, "user_id": "{}ab", "type": "view"}}"#, "€".repeat(42));
        assert!(decode(&ok).is_ok());
        let long = format!(r#"{{"ts": 1, "user_id": "{}", "type": "view"}}"#, "€".repeat(43));
        assert!(decode(&long).is_err());
    }

    #[test]
    fn blank_lines() {
        assert!(is_blank(b""));
        assert!(is_blank(b" \t \r"));
        assert!(!is_blank(b" x "));
    }

    #[test]
    fn never_panics_on_random_bytes() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let sample = br#"{"ts": "2024-01-10T00:00:01.5+01:00", "user_id": "\u00e9", "type": "view", "price": 1.5}"#;
        for _ in 0..20_000 {
            let mut line = sample.to_vec();
            let n = (next() % 4) as usize;
            for _ in 0..=n {
                let i = (next() as usize) % line.len();
                line[i] = next() as u8;
            }
            line.truncate((next() as usize) % (line.len() + 1));
            let _ = decode_line(&line, &UaPatterns::default());
        }
    }
}
