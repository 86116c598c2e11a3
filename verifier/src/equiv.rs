//! Is the predicted answer equivalent to the gold one?
//!
//! The rules follow math-verify's, so rewards match what users of that library expect:
//! - `x = 5` against `5` compares the right-hand side (the comparison is not symmetric: a gold
//!   assignment is unwrapped only when the prediction is not an equation);
//! - sets compare order-insensitively, tuples in order, an open interval `(a, b)` also as a pair;
//! - closed-form numbers compare exactly as rationals; once a decimal is written, within the
//!   relative tolerance (or equal after rounding to 6 places, as math-verify rounds floats);
//! - expressions with free variables compare by evaluation at several fixed pseudo-random points;
//! - a gold inequality like `1 < x < 2` equals the interval `(1, 2)`.

use crate::budget::Deadline;
use crate::eval::{eval_f64, eval_num, free_vars, has_decimal, needs_integer_points};
use crate::expr::{Expr, Func, RelOp, display};
use crate::number::{Num, NumLimits, ratio_to_f64};
use crate::rng::SplitMix64;
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive};
use std::collections::BTreeSet;

/// Comparison settings.
#[derive(Debug, Clone, Copy)]
pub struct EquivConfig {
    /// Relative tolerance for numbers when a decimal literal is involved.
    pub rel_tol: f64,
    /// `50\%` also equals 0.5 (it always equals 50).
    pub percent_equals_decimal: bool,
    /// Limits on exact arithmetic.
    pub num_limits: NumLimits,
}

impl Default for EquivConfig {
    fn default() -> Self {
        Self {
            rel_tol: 1e-6,
            percent_equals_decimal: true,
            num_limits: NumLimits::default(),
        }
    }
}

/// Tolerance for comparing values with no decimal literal that still had to be computed in f64
/// (√2, π): float noise only.
const TIGHT_TOL: f64 = 1e-10;

pub struct Comparer<'a> {
    pub cfg: &'a EquivConfig,
    pub deadline: &'a Deadline,
}

impl Comparer<'_> {
    /// The top-level comparison, with math-verify's asymmetric handling of equations.
    pub fn equivalent(&self, gold: &Expr, pred: &Expr) -> bool {
        if self.deadline.expired() {
            return false;
        }
        let gold_eq = is_equation(gold);
        let pred_eq = is_equation(pred);
        let mut gold = match gold {
            Expr::Rel(v, _) if is_assignment(gold) => {
                Expr::Rel(vec![v[0].clone(), last(v).clone()], vec![RelOp::Eq])
            }
            other => other.clone(),
        };
        let mut pred = match pred {
            Expr::Rel(v, _) if is_assignment(pred) => {
                Expr::Rel(vec![v[0].clone(), last(v).clone()], vec![RelOp::Eq])
            }
            other => other.clone(),
        };
        if pred_eq && !gold_eq {
            if let Expr::Rel(v, _) = &pred {
                pred = last(v).clone();
            }
        } else if is_assignment(&gold)
            && !pred_eq
            && let Expr::Rel(v, _) = &gold
        {
            gold = last(v).clone();
        }
        if matches!(gold, Expr::Rel(..))
            && is_set_like(&pred)
            && let Some(s) = relation_as_set(&gold)
        {
            gold = s;
        }
        // The other way round too (math-verify only converts the gold): an inequality answer
        // against an interval or union gold, `x < 2 or x > 3` against (-oo, 2) U (3, oo).
        if is_set_like(&gold) && !matches!(gold, Expr::Set(_) | Expr::Tuple(_)) {
            if let Some(s) = relations_as_set(&pred) {
                pred = s;
            }
            if let Some(s) = relations_as_set(&gold) {
                gold = s;
            }
        } else if is_set_like(&pred)
            && !matches!(pred, Expr::Set(_) | Expr::Tuple(_))
            && let Some(s) = relations_as_set(&gold)
        {
            gold = s;
        }
        self.compare(&gold, &pred)
    }

    fn compare(&self, g: &Expr, p: &Expr) -> bool {
        if display(g) == display(p) {
            return true;
        }
        match (g, p) {
            (Expr::Rel(..), Expr::Rel(..)) => self.compare_relations(g, p),
            (Expr::Rel(..), _) | (_, Expr::Rel(..)) => false,
            (Expr::Matrix(a), Expr::Matrix(b)) => {
                a.len() == b.len()
                    && a.iter().zip(b).all(|(ra, rb)| {
                        ra.len() == rb.len()
                            && ra.iter().zip(rb).all(|(x, y)| self.equivalent(x, y))
                    })
            }
            (Expr::Matrix(_), _) | (_, Expr::Matrix(_)) => false,
            _ if is_set_like(g) || is_set_like(p) => self.compare_sets(g, p),
            _ => self.scalar_eq(g, p),
        }
    }

    fn compare_sets(&self, g: &Expr, p: &Expr) -> bool {
        let wrap = |e: &Expr| {
            if is_set_like(e) {
                e.clone()
            } else {
                Expr::Set(vec![e.clone()])
            }
        };
        let (g, p) = (wrap(g), wrap(p));
        // One answer written twice ("\frac{1}{2} or equivalently 0.5") is one element.
        let (g, p) = (self.dedup_set(g), self.dedup_set(p));
        match (&g, &p) {
            (
                Expr::Interval {
                    lo: gl,
                    hi: gh,
                    lo_closed: glc,
                    hi_closed: ghc,
                },
                Expr::Interval {
                    lo: pl,
                    hi: ph,
                    lo_closed: plc,
                    hi_closed: phc,
                },
            ) => glc == plc && ghc == phc && self.equivalent(gl, pl) && self.equivalent(gh, ph),
            (Expr::Union(a), Expr::Union(b)) => self.unordered(a, b),
            (Expr::Union(a), other) | (other, Expr::Union(a)) if a.len() == 1 => {
                self.compare_sets(&a[0], other)
            }
            (Expr::Set(a), Expr::Set(b)) => self.unordered(a, b),
            (Expr::Set(a), Expr::Tuple(b)) => self.unordered(a, b),
            (Expr::Tuple(a), Expr::Tuple(b) | Expr::Set(b)) => self.ordered(a, b),
            (
                Expr::Interval {
                    lo,
                    hi,
                    lo_closed: false,
                    hi_closed: false,
                },
                Expr::Set(b) | Expr::Tuple(b),
            ) if b.len() == 2 => self.equivalent(lo, &b[0]) && self.equivalent(hi, &b[1]),
            (
                Expr::Set(a) | Expr::Tuple(a),
                Expr::Interval {
                    lo,
                    hi,
                    lo_closed: false,
                    hi_closed: false,
                },
            ) if a.len() == 2 => self.equivalent(&a[0], lo) && self.equivalent(&a[1], hi),
            _ => false,
        }
    }

    /// A set with equivalent elements merged (the first spelling kept).
    fn dedup_set(&self, e: Expr) -> Expr {
        let Expr::Set(items) = e else { return e };
        let mut kept: Vec<Expr> = Vec::with_capacity(items.len());
        for x in items {
            if self.deadline.expired() || !kept.iter().any(|k| self.equivalent(k, &x)) {
                kept.push(x);
            }
        }
        Expr::Set(kept)
    }

    fn ordered(&self, a: &[Expr], b: &[Expr]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| self.equivalent(x, y))
    }

    /// Multiset equality: every gold element matched to a distinct predicted one.
    fn unordered(&self, a: &[Expr], b: &[Expr]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut used = vec![false; b.len()];
        for x in a {
            let mut found = false;
            for (j, y) in b.iter().enumerate() {
                if self.deadline.expired() {
                    return false;
                }
                if !used[j] && self.equivalent(x, y) {
                    used[j] = true;
                    found = true;
                    break;
                }
            }
            if !found {
                return false;
            }
        }
        true
    }

    fn compare_relations(&self, g: &Expr, p: &Expr) -> bool {
        let (Expr::Rel(gv, gops), Expr::Rel(pv, pops)) = (g, p) else {
            return false;
        };
        if gops.len() != pops.len() {
            return false;
        }
        (0..gops.len()).all(|k| {
            self.same_relation((&gv[k], gops[k], &gv[k + 1]), (&pv[k], pops[k], &pv[k + 1]))
        })
    }

    /// a op b ⇔ c op' d: same difference (or a positive multiple of it), or the flipped form.
    fn same_relation(
        &self,
        (a, op, b): (&Expr, RelOp, &Expr),
        (c, op2, d): (&Expr, RelOp, &Expr),
    ) -> bool {
        let diff_g = sub(a, b);
        let diff_p = sub(c, d);
        let symmetric = matches!(op, RelOp::Eq | RelOp::Ne);
        if op == op2 && self.scalar_eq(&diff_g, &diff_p) {
            return true;
        }
        if op.flipped() == op2 && self.scalar_eq(&diff_g, &sub(d, c)) {
            return true;
        }
        // Scaled forms (2y = 4x + 2 vs y = 2x + 1): the differences have a constant ratio.
        match self.constant_ratio(&diff_g, &diff_p) {
            Some(r) if symmetric => op == op2 && r != 0.0,
            Some(r) if r > 0.0 => op == op2,
            Some(r) if r < 0.0 => op.flipped() == op2,
            _ => false,
        }
    }

    /// f/g when it is the same nonzero constant at every sample point (both need free variables).
    fn constant_ratio(&self, f: &Expr, g: &Expr) -> Option<f64> {
        let names = vars_of(&[f, g]);
        if names.is_empty() {
            return None;
        }
        let mut ratio: Option<f64> = None;
        let mut valid = 0;
        for point in sample_points(names.len()) {
            let (x, y) = (eval_f64(f, &names, &point), eval_f64(g, &names, &point));
            if !x.is_finite() || !y.is_finite() || y.abs() < 1e-12 {
                continue;
            }
            let r = x / y;
            match ratio {
                None => ratio = Some(r),
                Some(r0) if close(r0, r, TIGHT_TOL * 100.0) => {}
                Some(_) => return None,
            }
            valid += 1;
        }
        (valid >= 3).then_some(ratio?).filter(|r| *r != 0.0)
    }

    /// Scalars, including percent readings.
    fn scalar_eq(&self, g: &Expr, p: &Expr) -> bool {
        let variants = |e: &Expr| -> Vec<Expr> {
            match e {
                Expr::Percent(x) if self.cfg.percent_equals_decimal => {
                    vec![
                        (**x).clone(),
                        Expr::Mul(vec![(**x).clone(), Expr::Inv(Box::new(hundred()))]),
                    ]
                }
                Expr::Percent(x) => vec![(**x).clone()],
                other => vec![other.clone()],
            }
        };
        let (gs, ps) = (variants(g), variants(p));
        gs.iter().any(|a| ps.iter().any(|b| self.scalar_core(a, b)))
    }

    fn scalar_core(&self, a: &Expr, b: &Expr) -> bool {
        if display(a) == display(b) {
            return true;
        }
        if let (Some(x), Some(y)) = (letters(a), letters(b)) {
            // A word against letters ("\text{Monday}" vs "Monday", which parses as a product of
            // single letters): compare the spelling. Two products are ordinary algebra (xy = yx).
            let is_word = |e: &Expr| matches!(e, Expr::Sym(s) if s.chars().count() > 1);
            if is_word(a) || is_word(b) {
                return x == y;
            }
        }
        if let Some(equal) = based_numbers_equal(a, b) {
            return equal;
        }
        let names = vars_of(&[a, b]);
        let decimals = has_decimal(a) || has_decimal(b);
        if names.is_empty() {
            let (Some(x), Some(y)) = (
                eval_num(a, &self.cfg.num_limits),
                eval_num(b, &self.cfg.num_limits),
            ) else {
                return false;
            };
            return match (&x, &y) {
                (Num::Exact(p), Num::Exact(q)) if !decimals => p == q,
                (Num::Exact(p), Num::Exact(q)) => {
                    // Both exact: measure the difference exactly, then apply the tolerance.
                    let diff = ratio_to_f64(&(p - q).abs());
                    let scale = ratio_to_f64(&p.abs()).max(ratio_to_f64(&q.abs()));
                    diff <= self.cfg.rel_tol * scale || rounded6_equal(p, q)
                }
                _ => {
                    let (fx, fy) = (x.to_f64(), y.to_f64());
                    // Overflowed values (10^{10^{10}}) carry no digits to compare; genuine
                    // infinities were already matched by their written form.
                    if !fx.is_finite() || !fy.is_finite() {
                        return false;
                    }
                    let tol = if decimals {
                        self.cfg.rel_tol
                    } else {
                        TIGHT_TOL
                    };
                    close(fx, fy, tol) || (decimals && round6(fx) == round6(fy) && fx.is_finite())
                }
            };
        }
        // Free variables: compare values at sample points.
        let tol = if decimals {
            self.cfg.rel_tol
        } else {
            TIGHT_TOL * 1000.0
        };
        let mut valid = 0;
        let points = if needs_integer_points(a) || needs_integer_points(b) {
            integer_points(names.len())
        } else {
            sample_points(names.len())
        };
        for point in points {
            if self.deadline.expired() {
                return false;
            }
            let (x, y) = (eval_f64(a, &names, &point), eval_f64(b, &names, &point));
            match (x.is_finite(), y.is_finite()) {
                (true, true) => {
                    if !close(x, y, tol) {
                        return false;
                    }
                    valid += 1;
                }
                (false, false) => {}
                _ => return false,
            }
        }
        valid >= 3
    }
}

fn hundred() -> Expr {
    Expr::Num {
        value: BigRational::from_integer(BigInt::from(100)),
        decimal: false,
    }
}

fn sub(a: &Expr, b: &Expr) -> Expr {
    Expr::Add(vec![a.clone(), Expr::Neg(Box::new(b.clone()))])
}

fn last(v: &[Expr]) -> &Expr {
    // Rel always holds at least two expressions (the parser builds it from an operator).
    &v[v.len() - 1]
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return false;
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    let diff = (a - b).abs();
    diff <= rel * a.abs().max(b.abs()) || diff <= 1e-12
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn rounded6_equal(p: &BigRational, q: &BigRational) -> bool {
    let scale = BigRational::from_integer(BigInt::from(1_000_000));
    let (a, b) = ((p * &scale).round(), (q * &scale).round());
    a == b && a.to_integer().to_f64().is_some()
}

fn vars_of(exprs: &[&Expr]) -> Vec<String> {
    let mut set = BTreeSet::new();
    for e in exprs {
        free_vars(e, &mut set);
    }
    set.into_iter().collect()
}

/// Fixed pseudo-random sample points: half positive (inside most functions' domains), half
/// signed. Deterministic so a grade never changes between runs.
fn sample_points(n_vars: usize) -> Vec<Vec<f64>> {
    let mut rng = SplitMix64::new(0x5eed_1a5e_2025);
    (0..12)
        .map(|k| {
            (0..n_vars)
                .map(|_| {
                    let u = rng.next_f64();
                    if k < 6 { 0.3 + 2.6 * u } else { -2.9 + 5.8 * u }
                })
                .collect()
        })
        .collect()
}

/// Integer sample points in 1..=12, for expressions whose sums run to a variable bound.
fn integer_points(n_vars: usize) -> Vec<Vec<f64>> {
    let mut rng = SplitMix64::new(0x5eed_1a5e_2026);
    (0..12)
        .map(|_| {
            (0..n_vars)
                .map(|_| (1.0 + (12.0 * rng.next_f64()).floor()).min(12.0))
                .collect()
        })
        .collect()
}

/// `204_5` (digits in base 5): equal to the same digits in the same base, or to the bare digits
/// `204` (the base then read from the question, as math-verify does), never to its value 54.
/// None when neither side is such a number.
fn based_numbers_equal(a: &Expr, b: &Expr) -> Option<bool> {
    let based = |e: &Expr| match e {
        Expr::Sym(s) => {
            let (digits, base) = s.split_once('_')?;
            let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit());
            (all_digits(digits) && all_digits(base)).then(|| digits.to_string())
        }
        _ => None,
    };
    let plain = |e: &Expr| match e {
        Expr::Num {
            value,
            decimal: false,
        } if value.is_integer() => Some(value.numer().to_string()),
        _ => None,
    };
    match (based(a), based(b)) {
        (Some(_), Some(_)) => Some(display(a) == display(b)),
        (Some(d), None) => Some(plain(b).is_some_and(|p| p == d)),
        (None, Some(d)) => Some(plain(a).is_some_and(|p| p == d)),
        (None, None) => None,
    }
}

/// A relation, or a list of relations joined by "or", as the set of values it allows.
/// Equations are left alone: `x = 1, y = 2` is a solution tuple, not a set of values.
fn relations_as_set(e: &Expr) -> Option<Expr> {
    let inequality = |x: &Expr| matches!(x, Expr::Rel(_, ops) if !ops.contains(&RelOp::Eq));
    let one_variable = |items: &[Expr]| {
        let mut vars = BTreeSet::new();
        items.iter().for_each(|x| free_vars(x, &mut vars));
        vars.len() == 1
    };
    match e {
        Expr::Rel(..) if inequality(e) => relation_as_set(e),
        Expr::Set(items)
            if items.len() > 1 && items.iter().all(inequality) && one_variable(items) =>
        {
            let parts: Option<Vec<Expr>> = items.iter().map(relation_as_set).collect();
            let mut flat = Vec::new();
            for p in parts? {
                match p {
                    Expr::Union(v) => flat.extend(v),
                    other => flat.push(other),
                }
            }
            Some(Expr::Union(flat))
        }
        _ => None,
    }
}

fn is_set_like(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Set(_) | Expr::Tuple(_) | Expr::Interval { .. } | Expr::Union(_)
    )
}

fn is_equation(e: &Expr) -> bool {
    matches!(e, Expr::Rel(_, ops) if ops.iter().all(|o| *o == RelOp::Eq))
}

/// An equation whose left side is only symbols: `x = 5`, `f(x) = ...`, `ab = 3`,
/// `(a, b, c) = (1, 2, 3)`.
fn is_assignment(e: &Expr) -> bool {
    let symbols_tuple = |x: &Expr| match x {
        Expr::Tuple(v) => v.iter().all(only_symbols),
        Expr::Interval { lo, hi, .. } => only_symbols(lo) && only_symbols(hi),
        _ => false,
    };
    match e {
        Expr::Rel(v, ops) if ops.iter().all(|o| *o == RelOp::Eq) => {
            only_symbols(&v[0]) || symbols_tuple(&v[0])
        }
        _ => false,
    }
}

fn only_symbols(e: &Expr) -> bool {
    match e {
        Expr::Sym(_) => true,
        Expr::Mul(v) => v.iter().all(only_symbols),
        _ => false,
    }
}

/// The letters of a symbol or a product of symbols.
fn letters(e: &Expr) -> Option<String> {
    match e {
        Expr::Sym(s) => Some(s.chars().filter(|c| !c.is_whitespace()).collect()),
        Expr::Mul(v) => v.iter().map(letters).collect(),
        _ => None,
    }
}

/// `x > 2` → (2, ∞); `1 < x \le 3` → (1, 3]; `x = 4` → {4}. Only for one bare variable.
fn relation_as_set(e: &Expr) -> Option<Expr> {
    let Expr::Rel(v, ops) = e else { return None };
    // `1 \le |z| \le 3/2`: the values of z, a union of two intervals mirrored about 0.
    if let ([a, Expr::Func(Func::Abs, inner), b], [o1, o2]) = (v.as_slice(), ops.as_slice())
        && matches!(**inner, Expr::Sym(_))
    {
        let plain = Expr::Rel(
            vec![a.clone(), (**inner).clone(), b.clone()],
            vec![*o1, *o2],
        );
        let Some(Expr::Interval {
            lo,
            hi,
            lo_closed,
            hi_closed,
        }) = relation_as_set(&plain)
        else {
            return None;
        };
        let neg = |x: &Expr| Expr::Neg(Box::new(x.clone()));
        let mirrored = Expr::Interval {
            lo: Box::new(neg(&hi)),
            hi: Box::new(neg(&lo)),
            lo_closed: hi_closed,
            hi_closed: lo_closed,
        };
        let positive = Expr::Interval {
            lo,
            hi,
            lo_closed,
            hi_closed,
        };
        return Some(Expr::Union(vec![mirrored, positive]));
    }
    // `|x| > 3`: outside (-3, 3); `|x| \le 2`: [-2, 2].
    if let ([Expr::Func(Func::Abs, inner), c], [op]) | ([c, Expr::Func(Func::Abs, inner)], [op]) =
        (v.as_slice(), ops.as_slice())
        && matches!(**inner, Expr::Sym(_))
    {
        let mut fv = BTreeSet::new();
        free_vars(c, &mut fv);
        if !fv.is_empty() {
            return None;
        }
        let op = if matches!(v[0], Expr::Func(Func::Abs, _)) {
            *op
        } else {
            op.flipped()
        };
        let neg_c = Expr::Neg(Box::new(c.clone()));
        let interval = |lo: Expr, hi: Expr, lo_closed: bool, hi_closed: bool| Expr::Interval {
            lo: Box::new(lo),
            hi: Box::new(hi),
            lo_closed,
            hi_closed,
        };
        let neg_inf = || Expr::Neg(Box::new(Expr::Inf));
        return match op {
            RelOp::Lt | RelOp::Le => {
                let closed = op == RelOp::Le;
                Some(interval(neg_c, c.clone(), closed, closed))
            }
            RelOp::Gt | RelOp::Ge => {
                let closed = op == RelOp::Ge;
                Some(Expr::Union(vec![
                    interval(neg_inf(), neg_c, false, closed),
                    interval(c.clone(), Expr::Inf, closed, false),
                ]))
            }
            RelOp::Eq => Some(Expr::Set(vec![neg_c, c.clone()])),
            RelOp::Ne => None,
        };
    }
    // A bare variable, or a function value f(x) read as the range it lies in: `0 < f(x) < 1`.
    let is_var = |x: &Expr| only_symbols(x);
    let closed = |x: &Expr| {
        let mut s = BTreeSet::new();
        free_vars(x, &mut s);
        s.is_empty()
    };
    let neg_inf = || Expr::Neg(Box::new(Expr::Inf));
    let interval = |lo: Expr, hi: Expr, lo_closed: bool, hi_closed: bool| Expr::Interval {
        lo: Box::new(lo),
        hi: Box::new(hi),
        lo_closed,
        hi_closed,
    };
    match (v.as_slice(), ops.as_slice()) {
        ([x, c], [op]) | ([c, x], [op]) if is_var(x) && closed(c) => {
            // Normalise to "x op c".
            let op = if is_var(&v[0]) { *op } else { op.flipped() };
            Some(match op {
                RelOp::Eq => Expr::Set(vec![c.clone()]),
                RelOp::Gt => interval(c.clone(), Expr::Inf, false, false),
                RelOp::Ge => interval(c.clone(), Expr::Inf, true, false),
                RelOp::Lt => interval(neg_inf(), c.clone(), false, false),
                RelOp::Le => interval(neg_inf(), c.clone(), false, true),
                RelOp::Ne => Expr::Union(vec![
                    interval(neg_inf(), c.clone(), false, false),
                    interval(c.clone(), Expr::Inf, false, false),
                ]),
            })
        }
        ([a, x, b], [o1, o2]) if is_var(x) && closed(a) && closed(b) => {
            let lower = |o: RelOp| matches!(o, RelOp::Lt | RelOp::Le);
            if lower(*o1) && lower(*o2) {
                Some(interval(
                    a.clone(),
                    b.clone(),
                    *o1 == RelOp::Le,
                    *o2 == RelOp::Le,
                ))
            } else if !lower(*o1) && !lower(*o2) && *o1 != RelOp::Eq && *o2 != RelOp::Eq {
                Some(interval(
                    b.clone(),
                    a.clone(),
                    *o2 == RelOp::Ge,
                    *o1 == RelOp::Ge,
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}
