//! Exact window sums of prices (SPEC section 5, `spend_W`).
//!
//! A window's spend must come back exactly to its previous value when a
//! price leaves it, whatever order prices come and go in, and must stay
//! within SPEC section 8's tolerance (`1e-9` relative, or absolute below 1)
//! for every price an event may carry (any finite double `>= 0`). So a
//! [`Spend`] keeps two exact parts:
//!
//! * prices below [`LARGE`] (2^30, about 1.07e9) in fixed point, units of
//!   2^-64, in an `i128`: every such price at or above 2^-12 is represented
//!   exactly (its last mantissa bit is at least 2^-64), smaller ones are off
//!   by at most 2^-65 each, far inside the absolute tolerance. A price adds
//!   less than 2^94, and a window holds fewer than 2^32 events, so the sum
//!   stays below 2^126: it cannot overflow;
//! * prices at or above [`LARGE`] as a multiset of their exact bit patterns
//!   (rare: a few entries, kept only by users that have them).
//!
//! The value is the fixed part plus the large prices, summed in ascending
//! order: all terms are positive, so the relative error is at most
//! `terms * 2^-53`. A sum beyond the largest double saturates at `f64::MAX`.

/// Prices at or above this are kept exactly as doubles, not in fixed point.
pub const LARGE: f64 = 1_073_741_824.0;

/// 2^64: one unit of the fixed point is 2^-64.
const SCALE: f64 = 18_446_744_073_709_551_616.0;

/// The sum of the prices in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spend {
    /// Prices below [`LARGE`], in units of 2^-64.
    fixed: i128,
    /// Prices at or above [`LARGE`]: `(f64 bits, how many)`, sorted by value.
    large: Vec<(u64, u32)>,
}

impl Spend {
    /// Adds (`diff = 1`) or removes (`diff = -1`) one price.
    pub fn apply(&mut self, price: f64, diff: i32) {
        debug_assert!(price >= 0.0 && price.is_finite(), "prices are finite and not negative");
        if price < LARGE {
            self.fixed += i128::from(diff) * (price * SCALE).round() as i128;
            return;
        }
        let bits = price.to_bits();
        // Positive doubles order like their bit patterns.
        match self.large.binary_search_by_key(&bits, |e| e.0) {
            Ok(i) => {
                let n = i64::from(self.large[i].1) + i64::from(diff);
                debug_assert!(n >= 0, "a price removed that was never added");
                if n <= 0 {
                    self.large.remove(i);
                } else {
                    self.large[i].1 = n as u32;
                }
            }
            Err(i) => {
                debug_assert!(diff > 0, "a price removed that was never added");
                if diff > 0 {
                    self.large.insert(i, (bits, diff as u32));
                }
            }
        }
    }

    /// The sum, as the nearest double (within the SPEC's tolerance).
    pub fn value(&self) -> f64 {
        let mut sum = self.fixed as f64 / SCALE;
        for &(bits, n) in &self.large {
            sum += f64::from_bits(bits) * f64::from(n);
        }
        sum.min(f64::MAX)
    }

    /// Heap bytes held (the large prices; zero for almost every user).
    pub fn heap_bytes(&self) -> usize {
        self.large.capacity() * std::mem::size_of::<(u64, u32)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `|a - b| <= 1e-9 * max(|a|, |b|, 1)` (SPEC section 8).
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    /// The reference: positive terms summed smallest first in f64, whose
    /// relative error is at most `n * 2^-53`.
    fn reference(prices: &[f64]) -> f64 {
        let mut sorted = prices.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted.iter().sum::<f64>().min(f64::MAX)
    }

    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// A price from every range an event may carry: tiny, cents, 2^30 and
    /// around it, beyond 2^63, up to 1e300 and the largest double.
    fn price(state: &mut u64) -> f64 {
        let r = rng(state);
        match r % 8 {
            0 => (r >> 8) as f64 / 100.0 % 1000.0,
            1 => f64::from_bits(r >> 12) * 1e-300,
            2 => LARGE * (1.0 + ((r >> 20) % 3) as f64 * f64::EPSILON) - 1.0 + ((r >> 30) % 3) as f64,
            3 => 5e18 + (r % 1000) as f64 * 1e15,
            4 => 1e300,
            5 => 10f64.powi(((r >> 8) % 300) as i32),
            6 => 0.1 + 0.2,
            _ => 0.0,
        }
    }

    #[test]
    fn spend_stays_within_the_spec_tolerance_for_every_accepted_price() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for round in 0..200 {
            let n = 1 + rng(&mut state) % 40;
            let prices: Vec<f64> = (0..n).map(|_| price(&mut state)).collect();
            let mut s = Spend::default();
            for &p in &prices {
                s.apply(p, 1);
            }
            let (got, want) = (s.value(), reference(&prices));
            assert!(got.is_finite(), "round {round}: {got}");
            assert!(close(got, want), "round {round}: {got} vs {want} for {prices:?}");
        }
    }

    #[test]
    fn removing_prices_in_any_order_restores_the_exact_sum() {
        let mut state = 12345;
        for _ in 0..100 {
            let prices: Vec<f64> = (0..30).map(|_| price(&mut state)).collect();
            let mut s = Spend::default();
            for &p in &prices {
                s.apply(p, 1);
            }
            let mut left = prices.clone();
            while !left.is_empty() {
                let i = (rng(&mut state) % left.len() as u64) as usize;
                s.apply(left.swap_remove(i), -1);
                let mut fresh = Spend::default();
                for &p in &left {
                    fresh.apply(p, 1);
                }
                assert_eq!(s, fresh, "the same state as if the removed price never came");
                assert_eq!(s.value().to_bits(), fresh.value().to_bits());
            }
            assert_eq!(s.value(), 0.0);
        }
    }

    #[test]
    fn huge_sums_neither_wrap_nor_overflow() {
        let mut s = Spend::default();
        for _ in 0..3 {
            s.apply(5e18, 1);
        }
        assert!(close(s.value(), 1.5e19), "past 2^63: {}", s.value());
        s.apply(1e300, 1);
        assert!(close(s.value(), 1e300));
        s.apply(f64::MAX, 1);
        s.apply(f64::MAX, 1);
        assert_eq!(s.value(), f64::MAX, "beyond the largest double: saturated");
        let mut small = Spend::default();
        for _ in 0..100_000 {
            small.apply(LARGE - 1.0, 1);
        }
        assert!(close(small.value(), 100_000.0 * (LARGE - 1.0)));
    }

    #[test]
    fn cents_are_exact() {
        let mut s = Spend::default();
        s.apply(0.1, 1);
        s.apply(0.2, 1);
        assert_eq!(s.value(), 0.1 + 0.2, "the double nearest the exact sum");
        s.apply(1e9 + 0.1, 1);
        s.apply(1e9 + 0.1, -1);
        assert_eq!(s.value(), 0.1 + 0.2, "no residue from a large price");
    }
}
