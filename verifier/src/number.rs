//! Numbers for grading: exact big rationals while they stay small, f64 once they would not.
//!
//! Every exact operation checks the size of its result against [`NumLimits`], so an answer like
//! `10^{10^{10^{10}}}` degrades to an (infinite) float instead of allocating without bound.

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

/// Size limits on exact arithmetic; beyond them a value is carried as f64.
#[derive(Debug, Clone, Copy)]
pub struct NumLimits {
    /// Largest numerator or denominator kept exactly, in bits.
    pub max_bits: u64,
    /// Largest integer exponent applied exactly.
    pub max_exponent: u64,
}

impl Default for NumLimits {
    fn default() -> Self {
        // 20k bits is ~6000 decimal digits: far above any real answer, and a multiply at that size
        // costs microseconds.
        Self {
            max_bits: 20_000,
            max_exponent: 10_000,
        }
    }
}

/// A scalar value: exact when possible.
#[derive(Debug, Clone)]
pub enum Num {
    Exact(BigRational),
    Approx(f64),
}

impl Num {
    pub fn int(v: i64) -> Self {
        Num::Exact(BigRational::from_integer(BigInt::from(v)))
    }

    pub fn to_f64(&self) -> f64 {
        match self {
            Num::Exact(r) => ratio_to_f64(r),
            Num::Approx(f) => *f,
        }
    }

    pub fn is_zero(&self) -> bool {
        match self {
            Num::Exact(r) => r.is_zero(),
            Num::Approx(f) => *f == 0.0,
        }
    }

    fn check(r: BigRational, limits: &NumLimits) -> Num {
        if r.numer().bits() > limits.max_bits || r.denom().bits() > limits.max_bits {
            Num::Approx(ratio_to_f64(&r))
        } else {
            Num::Exact(r)
        }
    }

    pub fn add(&self, o: &Num, l: &NumLimits) -> Num {
        match (self, o) {
            (Num::Exact(a), Num::Exact(b)) => Num::check(a + b, l),
            _ => Num::Approx(self.to_f64() + o.to_f64()),
        }
    }

    pub fn mul(&self, o: &Num, l: &NumLimits) -> Num {
        match (self, o) {
            (Num::Exact(a), Num::Exact(b)) => {
                // Check the size before multiplying: the product has at most the sum of the bits.
                if a.numer().bits() + b.numer().bits() > 2 * l.max_bits
                    || a.denom().bits() + b.denom().bits() > 2 * l.max_bits
                {
                    return Num::Approx(self.to_f64() * o.to_f64());
                }
                Num::check(a * b, l)
            }
            _ => Num::Approx(self.to_f64() * o.to_f64()),
        }
    }

    pub fn neg(&self) -> Num {
        match self {
            Num::Exact(a) => Num::Exact(-a.clone()),
            Num::Approx(f) => Num::Approx(-f),
        }
    }

    /// 1/x; `None` for an exact zero (division by zero has no value).
    pub fn recip(&self) -> Option<Num> {
        match self {
            Num::Exact(a) if a.is_zero() => None,
            Num::Exact(a) => Some(Num::Exact(a.recip())),
            Num::Approx(f) => Some(Num::Approx(1.0 / f)),
        }
    }

    /// x^y, exact for rational bases raised to small integer exponents and for perfect roots.
    pub fn pow(&self, e: &Num, l: &NumLimits) -> Option<Num> {
        if let (Num::Exact(b), Num::Exact(ex)) = (self, e) {
            if ex.is_integer() {
                if let Some(n) = ex.numer().to_i64()
                    && n.unsigned_abs() <= l.max_exponent
                {
                    let bits = b.numer().bits().max(b.denom().bits());
                    // Result size ≈ bits * |n|; refuse before computing a huge power.
                    if bits.saturating_mul(n.unsigned_abs()) <= l.max_bits {
                        if b.is_zero() && n < 0 {
                            return None;
                        }
                        let p = pow_ratio(b, n.unsigned_abs());
                        return Some(if n < 0 {
                            Num::Exact(p.recip())
                        } else {
                            Num::Exact(p)
                        });
                    }
                }
            } else if let (Some(p), Some(q)) = (ex.numer().to_i64(), ex.denom().to_u32()) {
                // Rational exponent p/q: exact when the base is a perfect q-th power.
                if q <= 64
                    && p.unsigned_abs() <= l.max_exponent
                    && !b.is_negative()
                    && let Some(root) = exact_root(b, q)
                {
                    return Num::Exact(root).pow(&Num::int(p), l);
                }
            }
        }
        let (b, x) = (self.to_f64(), e.to_f64());
        Some(Num::Approx(b.powf(x)))
    }

    /// Exact integer value, if this is one that fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Num::Exact(r) if r.is_integer() => r.numer().to_i64(),
            Num::Approx(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }
}

fn pow_ratio(b: &BigRational, n: u64) -> BigRational {
    // Square-and-multiply with a u64 exponent (num's Pow takes u32/usize variants).
    let mut result = BigRational::one();
    let mut base = b.clone();
    let mut n = n;
    while n > 0 {
        if n & 1 == 1 {
            result *= &base;
        }
        n >>= 1;
        if n > 0 {
            base = &base * &base;
        }
    }
    result
}

fn exact_root(b: &BigRational, q: u32) -> Option<BigRational> {
    let rn = b.numer().nth_root(q);
    let rd = b.denom().nth_root(q);
    if num_traits::pow(rn.clone(), q as usize) == *b.numer()
        && num_traits::pow(rd.clone(), q as usize) == *b.denom()
    {
        Some(BigRational::new(rn, rd))
    } else {
        None
    }
}

/// BigRational → f64 that also handles values whose numerator and denominator overflow f64.
pub fn ratio_to_f64(r: &BigRational) -> f64 {
    if let Some(f) = r.to_f64()
        && f.is_finite()
    {
        return f;
    }
    // Fall back to comparing magnitudes by bit length.
    let nb = r.numer().bits() as i64;
    let db = r.denom().bits() as i64;
    let sign = if r.is_negative() { -1.0 } else { 1.0 };
    if nb - db > 1100 {
        sign * f64::INFINITY
    } else if db - nb > 1100 {
        0.0
    } else {
        let shift = nb.max(db) - 60;
        let n = (r.numer().abs() >> shift.max(0) as usize)
            .to_f64()
            .unwrap_or(f64::NAN);
        let d = (r.denom() >> shift.max(0) as usize)
            .to_f64()
            .unwrap_or(f64::NAN);
        sign * n / d
    }
}

/// Parses a plain decimal literal ("123", "0.25", ".5") exactly.
pub fn parse_decimal(s: &str) -> Option<BigRational> {
    let (int_part, frac_part) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().all(|c| c.is_ascii_digit())
        || !frac_part.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    let numer: BigInt = if digits.is_empty() {
        BigInt::zero()
    } else {
        digits.parse().ok()?
    };
    let denom = num_traits::pow(BigInt::from(10u32), frac_part.len());
    Some(BigRational::new(numer, denom))
}

/// n! exactly, or None past the limits.
pub fn factorial(n: &Num, l: &NumLimits) -> Option<Num> {
    let n = n.as_i64()?;
    if n < 0 {
        return None;
    }
    // log2(n!) < n log2 n; keep it within max_bits.
    let approx_bits = (n as f64) * (n.max(2) as f64).log2();
    if approx_bits > l.max_bits as f64 {
        return Some(Num::Approx(f64::INFINITY));
    }
    let mut acc = BigInt::one();
    for k in 2..=n {
        acc *= k;
    }
    Some(Num::Exact(BigRational::from_integer(acc)))
}

/// Binomial coefficient C(n, k) for integer n, k.
pub fn binomial(n: &Num, k: &Num, l: &NumLimits) -> Option<Num> {
    let (n, k) = (n.as_i64()?, k.as_i64()?);
    if k < 0 || n < 0 || k > n {
        return Some(Num::int(0));
    }
    let k = k.min(n - k);
    if (k as f64) * (n.max(2) as f64).log2() > l.max_bits as f64 {
        return Some(Num::Approx(f64::INFINITY));
    }
    let mut acc = BigInt::one();
    for i in 0..k {
        acc *= n - i;
        acc = acc.div_floor(&BigInt::from(i + 1));
    }
    Some(Num::Exact(BigRational::from_integer(acc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_power_and_root() {
        let l = NumLimits::default();
        let eight = Num::int(8);
        let third = Num::Exact(BigRational::new(1.into(), 3.into()));
        let r = eight.pow(&third, &l).unwrap();
        assert!(matches!(r, Num::Exact(ref x) if *x == BigRational::from_integer(2.into())));
        let two = Num::int(2);
        let half = Num::Exact(BigRational::new(1.into(), 2.into()));
        assert!(matches!(two.pow(&half, &l).unwrap(), Num::Approx(_)));
    }

    #[test]
    fn huge_power_degrades_to_float() {
        let l = NumLimits::default();
        let r = Num::int(10).pow(&Num::int(10_000_000_000), &l).unwrap();
        assert!(matches!(r, Num::Approx(f) if f.is_infinite()));
    }

    #[test]
    fn decimal_parsing_is_exact() {
        assert_eq!(
            parse_decimal("0.25"),
            Some(BigRational::new(1.into(), 4.into()))
        );
        assert_eq!(
            parse_decimal(".5"),
            Some(BigRational::new(1.into(), 2.into()))
        );
        assert_eq!(parse_decimal("1.2.3"), None);
    }

    #[test]
    fn big_ratio_to_float() {
        let big = BigRational::from_integer(num_traits::pow(BigInt::from(10), 400));
        assert!(ratio_to_f64(&big).is_infinite());
        let r = BigRational::new(
            num_traits::pow(BigInt::from(10), 400) * 3,
            num_traits::pow(BigInt::from(10), 400),
        );
        assert!((ratio_to_f64(&r) - 3.0).abs() < 1e-12);
    }
}
