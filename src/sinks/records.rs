//! The JSON shapes of what the stream sinks write, one place for the JSON
//! Lines files and the Kafka topics: trend deltas (SPEC section 6) and dead
//! letters (SPEC section 7).
//!
//! A dead letter is `{"reason", "detail", "source", "raw"}`. `raw` is the
//! line as text; a line that is not UTF-8 cannot be text, so `raw` then
//! shows it with U+FFFD for the bad bytes, for people, and `raw_base64` holds
//! its exact bytes (standard base64, with padding), so the original can
//! always be recovered.

use base64::Engine;
use clickflow_dataflows::messages::{TrendChange, TrendValues};
use serde_json::{json, Value};

/// Why a line is a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not a valid event (SPEC section 1).
    Invalid,
    /// Below its reader's watermark (SPEC section 2).
    Late,
    /// Beyond the wall clock plus `clock.max_future` (SPEC section 2).
    Future,
}

impl Reason {
    /// The `reason` string of the dead letter.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Invalid => "invalid",
            Reason::Late => "late",
            Reason::Future => "future",
        }
    }
}

/// The dead-letter record of SPEC section 7 (with `raw_base64` for bytes that are not UTF-8).
pub fn dead_letter_json(reason: Reason, detail: &str, source: &str, raw: &[u8]) -> Value {
    match std::str::from_utf8(raw) {
        Ok(text) => json!({"reason": reason.as_str(), "detail": detail, "source": source, "raw": text}),
        Err(_) => json!({
            "reason": reason.as_str(),
            "detail": detail,
            "source": source,
            "raw": String::from_utf8_lossy(raw),
            "raw_base64": base64::engine::general_purpose::STANDARD.encode(raw),
        }),
    }
}

fn values_json(v: &TrendValues) -> Value {
    json!({"window_ms": v.window_ms, "count": v.count, "baseline_count": v.baseline_count, "score": v.score})
}

/// The trend-delta message of SPEC section 6.
pub fn delta_json(c: &TrendChange) -> Value {
    let (window_ms, count, baseline_count, score) = match &c.new {
        Some(v) => (json!(v.window_ms), json!(v.count), json!(v.baseline_count), json!(v.score)),
        None => (Value::Null, Value::Null, Value::Null, Value::Null),
    };
    json!({
        "entity_type": c.kind.as_str(),
        "entity_id": c.id,
        "as_of": c.at,
        "window_ms": window_ms,
        "count": count,
        "baseline_count": baseline_count,
        "score": score,
        "prev": c.prev.as_ref().map_or(Value::Null, values_json),
        "deleted": c.new.is_none(),
    })
}

/// The message key of a trend delta: `<entity_type>:<entity_id>`.
pub fn delta_key(c: &TrendChange) -> String {
    format!("{}:{}", c.kind.as_str(), c.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_is_not_utf8_keeps_its_bytes_recoverable() {
        let raw = b"{\"user_id\": \"\xff\xfe\"}";
        let v = dead_letter_json(Reason::Invalid, "invalid UTF-8 at byte 13", "f:1", raw);
        assert_eq!(v["raw"], "{\"user_id\": \"\u{fffd}\u{fffd}\"}");
        let back = base64::engine::general_purpose::STANDARD.decode(v["raw_base64"].as_str().unwrap()).unwrap();
        assert_eq!(back, raw);
        let ok = dead_letter_json(Reason::Late, "d", "f:2", b"{}");
        assert_eq!(ok, json!({"reason": "late", "detail": "d", "source": "f:2", "raw": "{}"}), "UTF-8 lines have no raw_base64");
    }
}
