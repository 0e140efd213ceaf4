//! Units the config files are written in: [`Duration`], a whole number and
//! a unit (`"15m"`).
//!
//! Its own module, below every config section, so that the sections
//! ([`crate::config`], [`crate::cluster`], [`crate::kafka`]) can all use it
//! without importing each other.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A duration written as a whole number and a unit: `ms`, `s`, `m`, `h`, `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration {
    /// The value in milliseconds.
    pub ms: u64,
}

impl Duration {
    /// A duration of `ms` milliseconds.
    pub const fn ms(ms: u64) -> Self {
        Duration { ms }
    }

    /// Parses `"15m"`, `"1s"`, `"250ms"`, `"7d"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let factor = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("invalid duration {s:?}: expected a whole number and a unit (ms, s, m, h, d), e.g. \"15m\"")),
        };
        let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}: expected a whole number before the unit, e.g. \"15m\""))?;
        n.checked_mul(factor).map(Duration::ms).ok_or_else(|| format!("duration {s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"15m\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
                Duration::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("15m").unwrap().ms, 900_000);
        assert_eq!(Duration::parse("250ms").unwrap().ms, 250);
        assert_eq!(Duration::parse("7d").unwrap().ms, 604_800_000);
        for bad in ["15", "m", "1.5h", "-1s", "15 m", "15M", ""] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }
}
