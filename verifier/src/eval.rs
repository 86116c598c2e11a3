//! Evaluating scalar expressions: exactly (big rationals) when there are no free variables, and in
//! f64 at chosen points when there are.

use crate::expr::{Expr, Func};
use crate::number::{Num, NumLimits, binomial, factorial};
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{ToPrimitive, Zero};
use std::collections::BTreeSet;

/// Free variables of a scalar expression. `e` and `i` are constants, not variables, except that
/// `i` is kept as a variable (complex answers compare as polynomials in i).
pub fn free_vars(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::Sym(s) if s != "e" => {
            out.insert(s.clone());
        }
        Expr::Add(v)
        | Expr::Mul(v)
        | Expr::Tuple(v)
        | Expr::Set(v)
        | Expr::Union(v)
        | Expr::Rel(v, _) => v.iter().for_each(|x| free_vars(x, out)),
        Expr::Neg(a) | Expr::Inv(a) | Expr::Func(_, a) | Expr::Factorial(a) | Expr::Percent(a) => {
            free_vars(a, out)
        }
        Expr::Pow(a, b) | Expr::Binom(a, b) => {
            free_vars(a, out);
            free_vars(b, out);
        }
        Expr::Log { base, arg } => {
            if let Some(b) = base {
                free_vars(b, out);
            }
            free_vars(arg, out);
        }
        Expr::Interval { lo, hi, .. } => {
            free_vars(lo, out);
            free_vars(hi, out);
        }
        Expr::Matrix(rows) => rows.iter().flatten().for_each(|x| free_vars(x, out)),
        Expr::Sum {
            var, lo, hi, body, ..
        } => {
            free_vars(lo, out);
            free_vars(hi, out);
            let mut inner = BTreeSet::new();
            free_vars(body, &mut inner);
            inner.remove(var);
            out.extend(inner);
        }
        _ => {}
    }
}

/// Most terms a `\sum` or `\prod` is expanded to, all nesting levels together: each of `d`
/// nested sums may have at most the `d`-th root of this many terms.
const MAX_SUM_TERMS: f64 = 10_000.0;

/// Sums nested in `e`, counting `e` itself when it is one.
fn sum_depth(e: &Expr) -> i32 {
    match e {
        Expr::Sum { lo, hi, body, .. } => 1 + sum_depth(body).max(sum_depth(lo)).max(sum_depth(hi)),
        Expr::Add(v) | Expr::Mul(v) => v.iter().map(sum_depth).max().unwrap_or(0),
        Expr::Neg(a) | Expr::Inv(a) | Expr::Func(_, a) | Expr::Factorial(a) | Expr::Percent(a) => {
            sum_depth(a)
        }
        Expr::Pow(a, b) | Expr::Binom(a, b) => sum_depth(a).max(sum_depth(b)),
        Expr::Log { base, arg } => base.as_deref().map_or(0, sum_depth).max(sum_depth(arg)),
        _ => 0,
    }
}

/// The integer bounds of a sum whose body holds `body_depth` nested sums, if its term count
/// fits the budget (an empty range sums to 0).
fn sum_range(lo: f64, hi: f64, body_depth: i32) -> Option<(i64, i64)> {
    let near_int = |x: f64| x.is_finite() && (x - x.round()).abs() < 1e-9;
    if !near_int(lo) || !near_int(hi) {
        return None;
    }
    let (lo, hi) = (lo.round() as i64, hi.round() as i64);
    let max_terms = MAX_SUM_TERMS.powf(1.0 / f64::from(body_depth + 1)).floor() as i64;
    (hi - lo < max_terms).then_some((lo, hi))
}

/// `e` with every `var` replaced by `value`.
fn substitute(e: &Expr, var: &str, value: &Expr) -> Expr {
    let sub = |x: &Expr| substitute(x, var, value);
    let boxed = |x: &Expr| Box::new(substitute(x, var, value));
    match e {
        Expr::Sym(s) if s == var => value.clone(),
        Expr::Add(v) => Expr::Add(v.iter().map(sub).collect()),
        Expr::Mul(v) => Expr::Mul(v.iter().map(sub).collect()),
        Expr::Neg(a) => Expr::Neg(boxed(a)),
        Expr::Inv(a) => Expr::Inv(boxed(a)),
        Expr::Pow(a, b) => Expr::Pow(boxed(a), boxed(b)),
        Expr::Func(f, a) => Expr::Func(*f, boxed(a)),
        Expr::Log { base, arg } => Expr::Log {
            base: base.as_deref().map(boxed),
            arg: boxed(arg),
        },
        Expr::Factorial(a) => Expr::Factorial(boxed(a)),
        Expr::Binom(a, b) => Expr::Binom(boxed(a), boxed(b)),
        Expr::Percent(a) => Expr::Percent(boxed(a)),
        Expr::Sum {
            var: inner,
            lo,
            hi,
            body,
            product,
        } => Expr::Sum {
            var: inner.clone(),
            lo: boxed(lo),
            hi: boxed(hi),
            // An inner sum over the same letter binds it afresh.
            body: if inner == var {
                body.clone()
            } else {
                boxed(body)
            },
            product: *product,
        },
        other => other.clone(),
    }
}

/// Whether a sum, product, factorial or binomial appears: defined at integers only, so such
/// an expression with free variables is compared at integer sample points.
pub fn needs_integer_points(e: &Expr) -> bool {
    match e {
        Expr::Sum { .. } | Expr::Factorial(_) | Expr::Binom(..) => true,
        Expr::Add(v) | Expr::Mul(v) => v.iter().any(needs_integer_points),
        Expr::Neg(a) | Expr::Inv(a) | Expr::Func(_, a) | Expr::Percent(a) => {
            needs_integer_points(a)
        }
        Expr::Pow(a, b) => needs_integer_points(a) || needs_integer_points(b),
        _ => false,
    }
}

/// Whether a decimal literal appears (then numbers compare with a tolerance, as floats do).
pub fn has_decimal(e: &Expr) -> bool {
    match e {
        Expr::Num { decimal, .. } => *decimal,
        Expr::Add(v) | Expr::Mul(v) => v.iter().any(has_decimal),
        Expr::Neg(a) | Expr::Inv(a) | Expr::Func(_, a) | Expr::Factorial(a) | Expr::Percent(a) => {
            has_decimal(a)
        }
        Expr::Pow(a, b) | Expr::Binom(a, b) => has_decimal(a) || has_decimal(b),
        Expr::Log { base, arg } => base.as_deref().is_some_and(has_decimal) || has_decimal(arg),
        Expr::Sum { lo, hi, body, .. } => has_decimal(lo) || has_decimal(hi) || has_decimal(body),
        _ => false,
    }
}

/// Exact (where possible) value of a closed scalar expression; `None` when it has free variables,
/// is not a scalar, or is undefined (division by zero).
pub fn eval_num(e: &Expr, l: &NumLimits) -> Option<Num> {
    Some(match e {
        Expr::Num { value, .. } => Num::Exact(value.clone()),
        Expr::Pi => Num::Approx(std::f64::consts::PI),
        Expr::E => Num::Approx(std::f64::consts::E),
        Expr::Sym(s) if s == "e" => Num::Approx(std::f64::consts::E),
        Expr::Inf => Num::Approx(f64::INFINITY),
        Expr::Add(v) => {
            let mut acc = Num::int(0);
            for t in v {
                acc = acc.add(&eval_num(t, l)?, l);
            }
            acc
        }
        Expr::Mul(v) => {
            let mut acc = Num::int(1);
            for t in v {
                acc = acc.mul(&eval_num(t, l)?, l);
            }
            acc
        }
        Expr::Neg(a) => eval_num(a, l)?.neg(),
        Expr::Inv(a) => eval_num(a, l)?.recip()?,
        Expr::Pow(a, b) => {
            let base = eval_num(a, l)?;
            let exp = eval_num(b, l)?;
            base.pow(&exp, l)?
        }
        Expr::Func(Func::Sqrt, a) => {
            let v = eval_num(a, l)?;
            if v.to_f64() < 0.0 {
                return None;
            }
            v.pow(
                &Num::Exact(BigRational::new(BigInt::from(1), BigInt::from(2))),
                l,
            )?
        }
        Expr::Func(Func::Abs, a) => match eval_num(a, l)? {
            Num::Exact(r) => Num::Exact(if r < BigRational::zero() { -r } else { r }),
            Num::Approx(f) => Num::Approx(f.abs()),
        },
        Expr::Func(Func::Floor | Func::Ceil, a) => {
            let v = eval_num(a, l)?;
            let up = matches!(e, Expr::Func(Func::Ceil, _));
            match v {
                Num::Exact(r) => Num::Exact(if up { r.ceil() } else { r.floor() }),
                Num::Approx(f) => Num::Approx(if up { f.ceil() } else { f.floor() }),
            }
        }
        Expr::Func(f, a) => Num::Approx(apply_func(*f, eval_num(a, l)?.to_f64())),
        Expr::Log { base, arg } => {
            let x = eval_num(arg, l)?;
            let b = match base {
                Some(b) => eval_num(b, l)?,
                None => Num::int(10),
            };
            // Exact logs of exact powers: log_2 8 = 3.
            if let (Num::Exact(xr), Num::Exact(br)) = (&x, &b)
                && let Some(k) = exact_log(xr, br)
            {
                return Some(Num::int(k));
            }
            Num::Approx(x.to_f64().ln() / b.to_f64().ln())
        }
        Expr::Factorial(a) => factorial(&eval_num(a, l)?, l)?,
        Expr::Binom(a, b) => binomial(&eval_num(a, l)?, &eval_num(b, l)?, l)?,
        Expr::Percent(a) => eval_num(a, l)?.mul(
            &Num::Exact(BigRational::new(BigInt::from(1), BigInt::from(100))),
            l,
        ),
        Expr::Sum {
            var,
            lo,
            hi,
            body,
            product,
        } => {
            let (lo, hi) = sum_range(
                eval_num(lo, l)?.to_f64(),
                eval_num(hi, l)?.to_f64(),
                sum_depth(body),
            )?;
            let mut acc = Num::int(i64::from(*product));
            for k in lo..=hi {
                let term = eval_num(
                    &substitute(
                        body,
                        var,
                        &Expr::Num {
                            value: BigRational::from_integer(BigInt::from(k)),
                            decimal: false,
                        },
                    ),
                    l,
                )?;
                acc = if *product {
                    acc.mul(&term, l)
                } else {
                    acc.add(&term, l)
                };
            }
            acc
        }
        _ => return None,
    })
}

fn exact_log(x: &BigRational, b: &BigRational) -> Option<i64> {
    if !x.is_integer() || !b.is_integer() {
        return None;
    }
    let (x, b) = (x.numer().to_u128()?, b.numer().to_u128()?);
    if b < 2 || x == 0 {
        return None;
    }
    let (mut acc, mut k) = (1u128, 0i64);
    while acc < x {
        acc = acc.checked_mul(b)?;
        k += 1;
    }
    (acc == x).then_some(k)
}

fn apply_func(f: Func, x: f64) -> f64 {
    match f {
        Func::Sqrt => x.sqrt(),
        Func::Sin => x.sin(),
        Func::Cos => x.cos(),
        Func::Tan => x.tan(),
        Func::Cot => 1.0 / x.tan(),
        Func::Sec => 1.0 / x.cos(),
        Func::Csc => 1.0 / x.sin(),
        Func::Asin => x.asin(),
        Func::Acos => x.acos(),
        Func::Atan => x.atan(),
        Func::Sinh => x.sinh(),
        Func::Cosh => x.cosh(),
        Func::Tanh => x.tanh(),
        Func::Ln => x.ln(),
        Func::Exp => x.exp(),
        Func::Abs => x.abs(),
        Func::Floor => x.floor(),
        Func::Ceil => x.ceil(),
    }
}

/// f64 value at a point: `vars[k]` is the value of `names[k]`. NaN when undefined there.
pub fn eval_f64(e: &Expr, names: &[String], vars: &[f64]) -> f64 {
    match e {
        Expr::Num { value, .. } => crate::number::ratio_to_f64(value),
        Expr::Pi => std::f64::consts::PI,
        Expr::E => std::f64::consts::E,
        Expr::Inf => f64::INFINITY,
        Expr::Sym(s) => match names.iter().position(|n| n == s) {
            Some(k) => vars[k],
            None if s == "e" => std::f64::consts::E,
            None => f64::NAN,
        },
        Expr::Add(v) => v.iter().map(|t| eval_f64(t, names, vars)).sum(),
        Expr::Mul(v) => v.iter().map(|t| eval_f64(t, names, vars)).product(),
        Expr::Neg(a) => -eval_f64(a, names, vars),
        Expr::Inv(a) => 1.0 / eval_f64(a, names, vars),
        Expr::Pow(a, b) => {
            let (x, y) = (eval_f64(a, names, vars), eval_f64(b, names, vars));
            // Odd roots of negatives are real: (-8)^(1/3) = -2.
            if x < 0.0 && y.fract() != 0.0 {
                let inv = 1.0 / y;
                if (inv - inv.round()).abs() < 1e-9 && (inv.round() as i64) % 2 != 0 {
                    return -(-x).powf(y);
                }
            }
            x.powf(y)
        }
        Expr::Func(f, a) => apply_func(*f, eval_f64(a, names, vars)),
        Expr::Log { base, arg } => {
            let b = base
                .as_ref()
                .map(|b| eval_f64(b, names, vars))
                .unwrap_or(10.0);
            eval_f64(arg, names, vars).ln() / b.ln()
        }
        Expr::Factorial(a) => gamma_int(eval_f64(a, names, vars)),
        Expr::Binom(a, b) => {
            let (n, k) = (eval_f64(a, names, vars), eval_f64(b, names, vars));
            gamma_int(n) / (gamma_int(k) * gamma_int(n - k))
        }
        Expr::Percent(a) => eval_f64(a, names, vars) / 100.0,
        Expr::Sum {
            var,
            lo,
            hi,
            body,
            product,
        } => {
            let range = sum_range(
                eval_f64(lo, names, vars),
                eval_f64(hi, names, vars),
                sum_depth(body),
            );
            let Some((lo, hi)) = range else {
                return f64::NAN;
            };
            // The summation letter shadows a free variable of the same name.
            let inner_names: Vec<String> = std::iter::once(var.clone())
                .chain(names.iter().cloned())
                .collect();
            let mut inner_vars: Vec<f64> =
                std::iter::once(0.0).chain(vars.iter().copied()).collect();
            let mut acc = if *product { 1.0 } else { 0.0 };
            for k in lo..=hi {
                inner_vars[0] = k as f64;
                let term = eval_f64(body, &inner_names, &inner_vars);
                acc = if *product { acc * term } else { acc + term };
            }
            acc
        }
        _ => f64::NAN,
    }
}

fn gamma_int(n: f64) -> f64 {
    if n < 0.0 || n.fract() != 0.0 {
        return f64::NAN;
    }
    if n > 170.0 {
        return f64::INFINITY;
    }
    (1..=n as u64).map(|k| k as f64).product()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{ParseLimits, parse_answer};

    fn val(s: &str) -> Num {
        eval_num(
            &parse_answer(s, &ParseLimits::default()).unwrap(),
            &NumLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn exact_values() {
        assert!(
            matches!(val("\\frac{1}{2}+\\frac{1}{3}"), Num::Exact(r) if r == BigRational::new(5.into(), 6.into()))
        );
        assert!(
            matches!(val("\\sqrt{16}"), Num::Exact(r) if r == BigRational::from_integer(4.into()))
        );
        assert!(
            matches!(val("\\log_2 8"), Num::Exact(r) if r == BigRational::from_integer(3.into()))
        );
        assert!(matches!(val("5!"), Num::Exact(r) if r == BigRational::from_integer(120.into())));
        assert!(
            matches!(val("\\binom{5}{2}"), Num::Exact(r) if r == BigRational::from_integer(10.into()))
        );
        assert!((val("\\sqrt{2}").to_f64() - std::f64::consts::SQRT_2).abs() < 1e-15);
    }

    #[test]
    fn division_by_zero_has_no_value() {
        let e = parse_answer("\\frac{1}{0}", &ParseLimits::default()).unwrap();
        assert!(eval_num(&e, &NumLimits::default()).is_none());
    }
}
