//! SFT warm-start data for the synthetic arithmetic tasks: step-by-step solutions ending in
//! `\boxed{answer}`, with a chosen fraction deliberately wrong so that the warm-started policy is
//! imperfect (the RL phase then has accuracy to gain, and the self-verifier has errors to detect).
//!
//! A solution does one operation per sentence, products and quotients first (left to right), then
//! sums and differences (left to right), exactly as [`super::synthetic`] evaluates the gold answer:
//!
//! ```text
//! Compute 7 + 8 * 6.   ->   8 * 6 = 48. 7 + 48 = 55. The answer is \boxed{55}.
//! ```
//!
//! A wrong solution has one slip: either one step's result is off by a small amount (and the later
//! steps carry the wrong value on correctly), or every step is right but the boxed answer is
//! miscopied. Both end in a boxed answer that differs from the gold answer.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::Zero;
use serde::{Deserialize, Serialize};

use super::synthetic::format_rational;
use super::{Task, TaskError};
use crate::rng::SplitMix64;

/// How wrong solutions are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlipKind {
    /// One step's result is off; later steps use the wrong value.
    Step,
    /// All steps right, the boxed answer miscopied.
    FinalCopy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftDataConfig {
    /// Fraction of solutions with a deliberate slip, in [0, 1].
    pub wrong_fraction: f64,
    /// Of the wrong ones, the fraction whose slip is a miscopied final answer (the rest: a step).
    pub final_copy_fraction: f64,
    /// Seed of which solutions are wrong and how.
    pub seed: u64,
}

impl Default for SftDataConfig {
    fn default() -> Self {
        Self {
            wrong_fraction: 0.3,
            final_copy_fraction: 0.25,
            seed: 0,
        }
    }
}

impl SftDataConfig {
    fn validate(&self) -> Result<(), TaskError> {
        for (name, v) in [
            ("wrong_fraction", self.wrong_fraction),
            ("final_copy_fraction", self.final_copy_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(TaskError::Config(format!(
                    "{name} must be in [0, 1] (got {v})"
                )));
            }
        }
        Ok(())
    }
}

/// One supervised pair. `question` is the task text (the prompt template is applied later, as for
/// RL prompts); `answer` is the gold answer, so the same file also serves as an eval set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftPair {
    pub id: String,
    pub question: String,
    pub response: String,
    pub answer: String,
    /// Whether `response` reaches the gold answer.
    pub correct: bool,
    /// The slip of a wrong response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slip: Option<SlipKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
        }
    }
    fn apply(self, a: &BigRational, b: &BigRational) -> Option<BigRational> {
        Some(match self {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div if b.is_zero() => return None,
            Op::Div => a / b,
        })
    }
}

/// One sentence of a solution: `lhs op rhs = result.`
#[derive(Debug, Clone, PartialEq)]
struct Step {
    lhs: BigRational,
    op: Op,
    rhs: BigRational,
    result: BigRational,
}

/// Parses "Compute 7 + 8 * 6." (the synthetic question form; reasoning-gym's `basic_arithmetic`
/// writes "Calculate 7 + 8 * 6.") into operands and operators.
fn parse_question(question: &str) -> Option<(Vec<BigRational>, Vec<Op>)> {
    let q = question.trim();
    let expr = q
        .strip_prefix("Compute ")
        .or_else(|| q.strip_prefix("Calculate "))?
        .strip_suffix('.')?;
    let mut operands = Vec::new();
    let mut ops = Vec::new();
    for (i, tok) in expr.split_whitespace().enumerate() {
        if i % 2 == 0 {
            let n: BigInt = tok.parse().ok()?;
            operands.push(BigRational::from_integer(n));
        } else {
            ops.push(match tok {
                "+" => Op::Add,
                "-" => Op::Sub,
                "*" => Op::Mul,
                "/" => Op::Div,
                _ => return None,
            });
        }
    }
    (!ops.is_empty() && operands.len() == ops.len() + 1).then_some((operands, ops))
}

/// The steps of the correct evaluation order; `slip` (step index, delta) makes that step's result
/// off by `delta`, and later steps use the wrong value.
fn solve(
    mut operands: Vec<BigRational>,
    mut ops: Vec<Op>,
    slip: Option<(usize, &BigRational)>,
) -> Option<Vec<Step>> {
    let mut steps = Vec::with_capacity(ops.len());
    while !ops.is_empty() {
        let i = ops
            .iter()
            .position(|o| matches!(o, Op::Mul | Op::Div))
            .unwrap_or(0);
        let op = ops.remove(i);
        let rhs = operands.remove(i + 1);
        let lhs = operands[i].clone();
        let mut result = op.apply(&lhs, &rhs)?;
        if let Some((at, delta)) = slip
            && at == steps.len()
        {
            result += delta;
        }
        operands[i] = result.clone();
        steps.push(Step {
            lhs,
            op,
            rhs,
            result,
        });
    }
    Some(steps)
}

fn render(steps: &[Step], boxed: &BigRational) -> String {
    let mut out = String::new();
    for s in steps {
        out.push_str(&format!(
            "{} {} {} = {}. ",
            format_rational(&s.lhs),
            s.op.symbol(),
            format_rational(&s.rhs),
            format_rational(&s.result)
        ));
    }
    out.push_str(&format!(
        "The answer is \\boxed{{{}}}.",
        format_rational(boxed)
    ));
    out
}

/// The correct step-by-step solution of a synthetic question, or `None` when the question is not
/// of the "Compute a op b ... ." form (or divides by zero).
pub fn correct_solution(question: &str) -> Option<(String, BigRational)> {
    let (operands, ops) = parse_question(question)?;
    let steps = solve(operands, ops, None)?;
    let value = steps.last()?.result.clone();
    Some((render(&steps, &value), value))
}

/// A small nonzero error: +-1..=3 for most slips, a +-10 for some (a dropped carry).
fn slip_delta(rng: &mut SplitMix64) -> BigRational {
    let magnitude = if rng.next_f64() < 0.25 {
        10
    } else {
        rng.range_u64(1, 3) as i64
    };
    let sign = if rng.next_u64() & 1 == 0 { 1 } else { -1 };
    BigRational::from_integer(BigInt::from(sign * magnitude))
}

/// The SFT pair of `task` (index `index` of the data set, which seeds its slip).
pub fn sft_pair(task: &Task, index: u64, config: &SftDataConfig) -> Result<SftPair, TaskError> {
    config.validate()?;
    let bad = || {
        TaskError::Config(format!(
            "task {}: {:?} is not a synthetic \"Compute a op b ... .\" question",
            task.id, task.question
        ))
    };
    let (operands, ops) = parse_question(&task.question).ok_or_else(bad)?;
    let steps = solve(operands.clone(), ops.clone(), None).ok_or_else(bad)?;
    let value = steps.last().ok_or_else(bad)?.result.clone();
    let mut rng = SplitMix64::new(config.seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
    rng.next_u64();
    let wrong = rng.next_f64() < config.wrong_fraction;
    let (response, slip) = if !wrong {
        (render(&steps, &value), None)
    } else if rng.next_f64() < config.final_copy_fraction {
        let boxed = &value + slip_delta(&mut rng);
        (render(&steps, &boxed), Some(SlipKind::FinalCopy))
    } else {
        let at = rng.range_u64(0, steps.len() as u64 - 1) as usize;
        let delta = slip_delta(&mut rng);
        let wrong_steps = solve(operands, ops, Some((at, &delta))).ok_or_else(bad)?;
        let wrong_value = wrong_steps.last().ok_or_else(bad)?.result.clone();
        if wrong_value == value {
            // A later "* 0"-like step can absorb the slip; miscopy the answer instead.
            let boxed = &value + delta;
            (render(&steps, &boxed), Some(SlipKind::FinalCopy))
        } else {
            (render(&wrong_steps, &wrong_value), Some(SlipKind::Step))
        }
    };
    Ok(SftPair {
        id: task.id.clone(),
        question: task.question.clone(),
        response,
        answer: task.gold.clone(),
        correct: slip.is_none(),
        slip,
    })
}

/// SFT pairs for `tasks` (pair i seeded by (config.seed, i)).
pub fn sft_pairs(tasks: &[Task], config: &SftDataConfig) -> Result<Vec<SftPair>, TaskError> {
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| sft_pair(t, i as u64, config))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::synthetic::{ArithOp, SyntheticConfig, SyntheticTasks};
    use crate::{Grader, GraderConfig};

    fn task(question: &str, gold: &str) -> Task {
        Task {
            id: "t".into(),
            question: question.into(),
            gold: gold.into(),
            data_source: String::new(),
            chat: Vec::new(),
        }
    }

    #[test]
    fn solution_follows_precedence() {
        let (text, v) = correct_solution("Compute 7 + 8 * 6.").unwrap();
        assert_eq!(text, "8 * 6 = 48. 7 + 48 = 55. The answer is \\boxed{55}.");
        assert_eq!(v, BigRational::from_integer(55.into()));
        let (text, _) = correct_solution("Compute 12 - 47 + 3.").unwrap();
        assert_eq!(
            text,
            "12 - 47 = -35. -35 + 3 = -32. The answer is \\boxed{-32}."
        );
        let (text, _) = correct_solution("Compute 6 / 4 + 1 * 2.").unwrap();
        assert_eq!(
            text,
            "6 / 4 = \\frac{3}{2}. 1 * 2 = 2. \\frac{3}{2} + 2 = \\frac{7}{2}. The answer is \\boxed{\\frac{7}{2}}."
        );
        assert!(correct_solution("What is 2 + 2?").is_none());
        assert!(correct_solution("Compute 2 +.").is_none());
        assert!(correct_solution("Compute 2 / 0.").is_none());
    }

    /// Every correct solution grades correct against the synthetic gold answer; every wrong one
    /// grades incorrect; the wrong fraction is close to the configured one.
    #[test]
    fn labels_agree_with_the_verifier() {
        let grader = Grader::new(GraderConfig::default());
        let synth = SyntheticConfig {
            min_digits: 1,
            max_digits: 2,
            ops: vec![ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div],
            chain_length: 3,
        };
        let tasks: Vec<Task> = SyntheticTasks::new(synth, 5).unwrap().take(2000).collect();
        let config = SftDataConfig {
            wrong_fraction: 0.3,
            ..Default::default()
        };
        let pairs = sft_pairs(&tasks, &config).unwrap();
        let mut wrong = 0;
        let mut copy = 0;
        for p in &pairs {
            let g = grader.grade(&p.answer, &p.response);
            assert_eq!(g.reward == 1, p.correct, "{p:?} graded {g:?}");
            assert!(p.response.ends_with("}."), "{}", p.response);
            wrong += usize::from(!p.correct);
            copy += usize::from(p.slip == Some(SlipKind::FinalCopy));
        }
        let frac = wrong as f64 / pairs.len() as f64;
        assert!((frac - 0.3).abs() < 0.04, "wrong fraction {frac}");
        let copy_frac = copy as f64 / wrong as f64;
        assert!(
            (copy_frac - 0.25).abs() < 0.08,
            "final-copy fraction {copy_frac}"
        );
        // Deterministic in the seed, different for another seed.
        assert_eq!(pairs, sft_pairs(&tasks, &config).unwrap());
        let other = sft_pairs(
            &tasks,
            &SftDataConfig {
                seed: 1,
                ..config.clone()
            },
        )
        .unwrap();
        assert_ne!(pairs, other);
    }

    /// Cross-check against an independent reference: every problem of the committed reasoning-gym
    /// sample (scripts/gen_reasoning_gym.py) gets a correct solution that grades against
    /// reasoning-gym's own answer.
    #[test]
    fn reasoning_gym_sample_is_solved() {
        // Run-time CARGO_MANIFEST_DIR first: see the coordinator's held-out test.
        let dir =
            std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
        let path = std::path::Path::new(&dir).join("../data/reasoning_gym_arithmetic.jsonl");
        let tasks =
            crate::tasks::jsonl::load_jsonl(&path, &crate::tasks::jsonl::JsonlFields::default())
                .unwrap();
        assert!(tasks.len() >= 100);
        let grader = Grader::new(GraderConfig::default());
        let config = SftDataConfig {
            wrong_fraction: 0.0,
            ..Default::default()
        };
        for (i, t) in tasks.iter().enumerate() {
            let p = sft_pair(t, i as u64, &config).unwrap();
            assert_eq!(grader.grade(&t.gold, &p.response).reward, 1, "{p:?}");
        }
    }

    #[test]
    fn a_step_slip_carries_through() {
        let config = SftDataConfig {
            wrong_fraction: 1.0,
            final_copy_fraction: 0.0,
            seed: 3,
        };
        let t = task("Compute 7 + 8 * 6.", "55");
        for i in 0..50 {
            let p = sft_pair(&t, i, &config).unwrap();
            assert!(!p.correct);
            // Each sentence's arithmetic is consistent except exactly one.
            let wrong_sentences = p
                .response
                .split(". ")
                .filter(|s| s.contains(" = "))
                .filter(|s| {
                    let (lhs, rhs) = s.split_once(" = ").unwrap();
                    let (a, op, b) = {
                        let v: Vec<&str> = lhs.split(' ').collect();
                        (v[0], v[1], v[2])
                    };
                    let (a, b, r): (i64, i64, i64) =
                        (a.parse().unwrap(), b.parse().unwrap(), rhs.parse().unwrap());
                    let expect = match op {
                        "+" => a + b,
                        "-" => a - b,
                        "*" => a * b,
                        _ => unreachable!(),
                    };
                    expect != r
                })
                .count();
            assert_eq!(wrong_sentences, 1, "{}", p.response);
        }
    }

    #[test]
    fn zero_wrong_fraction_is_all_correct_and_bad_input_is_named() {
        let config = SftDataConfig {
            wrong_fraction: 0.0,
            ..Default::default()
        };
        let p = sft_pair(&task("Compute 2 * 3 - 1.", "5"), 0, &config).unwrap();
        assert!(p.correct && p.slip.is_none());
        let err = sft_pair(&task("Solve x^2 = 4.", "2"), 0, &config).unwrap_err();
        assert!(err.to_string().contains("Solve x^2 = 4."), "{err}");
        let bad = SftDataConfig {
            wrong_fraction: 1.5,
            ..Default::default()
        };
        let err = sft_pair(&task("Compute 1 + 1.", "2"), 0, &bad).unwrap_err();
        assert!(err.to_string().contains("wrong_fraction"), "{err}");
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"response\"") && json.contains("\"answer\":\"5\""));
        assert!(!json.contains("slip"));
    }
}
