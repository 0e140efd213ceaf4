//! A user's feature record as Redis hash fields (SPEC section 7): one field
//! per non-null feature, its JSON text (numbers as they are, arrays and
//! objects as JSON strings). Records are flat JSON objects written by the
//! user stage, so they are split into `(key, raw value)` slices by a small
//! string-aware scanner instead of being parsed into a tree: the writer does
//! this for every changed user of every tick.

use anyhow::{Context, Result};

/// Skips the JSON string starting at `b[i] == b'"'`; the index after it.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Skips the JSON value starting at `b[i]`; the index after it.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'[' | b'{' => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let start = i;
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

/// The top-level `(key, raw JSON value)` pairs of a JSON object, without
/// building a tree (feature records are flat objects the user stage wrote).
pub fn object_fields(s: &str) -> Option<Vec<(&str, &str)>> {
    let b = s.as_bytes();
    let ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut i = ws(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(i + 1);
    let mut out = Vec::with_capacity(64);
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let end = skip_string(b, i)?;
        let key = &s[i + 1..end - 1];
        if key.contains('\\') {
            return None;
        }
        i = ws(end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(i + 1);
        let value_end = skip_value(b, i)?;
        out.push((key, &s[i..value_end]));
        i = ws(value_end);
        match b.get(i) {
            Some(b',') => i = ws(i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

/// The hash fields of a user's feature record: every non-null feature, as
/// its JSON text (numbers, and arrays and objects as JSON strings), plus
/// `as_of`.
pub fn user_fields(features: &str, at: u64) -> Result<Vec<(String, String)>> {
    let pairs = object_fields(features).context("a feature record is not a JSON object")?;
    let mut fields = Vec::with_capacity(pairs.len() + 1);
    fields.push(("as_of".to_string(), at.to_string()));
    for (k, v) in pairs {
        match v {
            "null" => {}
            v if v.starts_with('"') => fields.push((k.to_owned(), serde_json::from_str::<String>(v).context("a feature record has a bad string")?)),
            v => fields.push((k.to_owned(), v.to_owned())),
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn user_fields_flatten_the_record() {
        let f = user_fields(r#"{"views_1d":3, "spend_1d": 10.5,"hour_hist_1d":[1,2],"browse_devices_1d":{"m":1,"a\"}]{":2},"last_purchase_ts":null}"#, 7).unwrap();
        let map: HashMap<String, String> = f.into_iter().collect();
        assert_eq!(map["views_1d"], "3");
        assert_eq!(map["spend_1d"], "10.5");
        assert_eq!(map["hour_hist_1d"], "[1,2]");
        assert_eq!(map["browse_devices_1d"], r#"{"m":1,"a\"}]{":2}"#, "brackets and quotes inside device names");
        assert_eq!(map["as_of"], "7");
        assert!(!map.contains_key("last_purchase_ts"), "null features are absent");
        assert_eq!(map.len(), 5);
        assert!(user_fields("[1]", 7).is_err());
        assert!(user_fields(r#"{"a":1"#, 7).is_err(), "truncated");
    }
}
