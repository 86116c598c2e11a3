//! Built-in synthetic arithmetic: seeded, with difficulty knobs, gold answers computed exactly.
//!
//! Task `i` of seed `s` depends only on (s, i), so a run can resume at any index and two runs with
//! the same seed see the same problems.

use super::{Task, TaskError};
use crate::rng::SplitMix64;
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, Zero};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }
}

/// Difficulty knobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyntheticConfig {
    /// Digits per operand, inclusive range.
    pub min_digits: u32,
    pub max_digits: u32,
    /// Operations to draw from.
    pub ops: Vec<ArithOp>,
    /// Number of operations per problem (operands = chain_length + 1).
    pub chain_length: usize,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            min_digits: 1,
            max_digits: 2,
            ops: vec![ArithOp::Add, ArithOp::Sub, ArithOp::Mul],
            chain_length: 2,
        }
    }
}

impl SyntheticConfig {
    fn validate(&self) -> Result<(), TaskError> {
        if self.min_digits == 0 || self.min_digits > self.max_digits {
            return Err(TaskError::Config(format!(
                "digits must satisfy 1 <= min_digits <= max_digits (got {}..={})",
                self.min_digits, self.max_digits
            )));
        }
        if self.max_digits > 18 {
            return Err(TaskError::Config(format!(
                "max_digits must be at most 18 (got {})",
                self.max_digits
            )));
        }
        if self.ops.is_empty() {
            return Err(TaskError::Config("ops must not be empty".into()));
        }
        if self.chain_length == 0 || self.chain_length > 64 {
            return Err(TaskError::Config(format!(
                "chain_length must be in 1..=64 (got {})",
                self.chain_length
            )));
        }
        Ok(())
    }
}

/// An endless, seeded stream of arithmetic tasks.
#[derive(Debug, Clone)]
pub struct SyntheticTasks {
    config: SyntheticConfig,
    seed: u64,
    next_index: u64,
}

impl SyntheticTasks {
    pub fn new(config: SyntheticConfig, seed: u64) -> Result<Self, TaskError> {
        config.validate()?;
        Ok(Self {
            config,
            seed,
            next_index: 0,
        })
    }

    /// Continue from task `index` (for resumed runs).
    pub fn starting_at(mut self, index: u64) -> Self {
        self.next_index = index;
        self
    }

    /// Task number `index` of this seed.
    pub fn task(&self, index: u64) -> Task {
        // Mix seed and index so neighbouring indices get unrelated streams.
        let mut rng = SplitMix64::new(self.seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        let c = &self.config;
        let n = c.chain_length + 1;
        let mut operands = Vec::with_capacity(n);
        let mut ops = Vec::with_capacity(c.chain_length);
        for k in 0..n {
            if k > 0 {
                ops.push(c.ops[rng.range_u64(0, c.ops.len() as u64 - 1) as usize]);
            }
            let digits = rng.range_u64(c.min_digits as u64, c.max_digits as u64) as u32;
            // At least 1: a zero divisor would have no answer.
            let lo = if digits == 1 {
                1
            } else {
                10u64.pow(digits - 1)
            };
            let hi = 10u64.pow(digits) - 1;
            operands.push(rng.range_u64(lo, hi));
        }
        let mut question_expr = operands[0].to_string();
        for (op, v) in ops.iter().zip(&operands[1..]) {
            question_expr.push_str(&format!(" {} {v}", op.symbol()));
        }
        let value = evaluate(&operands, &ops);
        Task {
            id: format!("synthetic-{}-{index}", self.seed),
            question: format!("Compute {question_expr}."),
            gold: format_rational(&value),
            data_source: String::new(),
            chat: Vec::new(),
        }
    }
}

impl Iterator for SyntheticTasks {
    type Item = Task;

    fn next(&mut self) -> Option<Task> {
        let t = self.task(self.next_index);
        self.next_index += 1;
        Some(t)
    }
}

/// Exact value with the usual precedence (* and / before + and -), left to right.
fn evaluate(operands: &[u64], ops: &[ArithOp]) -> BigRational {
    let r = |v: u64| BigRational::from_integer(BigInt::from(v));
    let mut total = BigRational::zero();
    let mut term = r(operands[0]);
    let mut sign = BigRational::one();
    for (op, &v) in ops.iter().zip(&operands[1..]) {
        match op {
            ArithOp::Mul => term *= r(v),
            ArithOp::Div => term /= r(v),
            ArithOp::Add | ArithOp::Sub => {
                total += &sign * &term;
                sign = if *op == ArithOp::Add {
                    BigRational::one()
                } else {
                    -BigRational::one()
                };
                term = r(v);
            }
        }
    }
    total + sign * term
}

/// "42", "-7", "\frac{3}{4}", "-\frac{5}{2}".
pub fn format_rational(v: &BigRational) -> String {
    if v.is_integer() {
        return v.numer().to_string();
    }
    let sign = if v.is_negative() { "-" } else { "" };
    format!("{sign}\\frac{{{}}}{{{}}}", v.numer().abs(), v.denom())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_respected() {
        // 2 + 3 * 4 - 6 / 4 = 12.5
        let v = evaluate(
            &[2, 3, 4, 6, 4],
            &[ArithOp::Add, ArithOp::Mul, ArithOp::Sub, ArithOp::Div],
        );
        assert_eq!(v, BigRational::new(25.into(), 2.into()));
        assert_eq!(format_rational(&v), "\\frac{25}{2}");
        assert_eq!(
            format_rational(&BigRational::new((-5).into(), 2.into())),
            "-\\frac{5}{2}"
        );
    }

    #[test]
    fn bad_config_is_rejected() {
        let bad = SyntheticConfig {
            min_digits: 3,
            max_digits: 2,
            ..Default::default()
        };
        assert!(matches!(
            SyntheticTasks::new(bad, 1),
            Err(TaskError::Config(_))
        ));
        let no_ops = SyntheticConfig {
            ops: vec![],
            ..Default::default()
        };
        assert!(SyntheticTasks::new(no_ops, 1).is_err());
    }
}
