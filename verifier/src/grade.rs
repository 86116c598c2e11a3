//! The grader: response + gold solution → [`Grade`] (reward 0/1, status, extracted answer).

use crate::budget::{Deadline, JobFailure, Worker};
use crate::equiv::{Comparer, EquivConfig};
use crate::expr::{Expr, ParseLimits, parse_answer};
use crate::extract::{Candidate, ExtractOptions, candidates, gold_candidates};
use crate::normalize::{compact, nesting_depth, normalize};
use crate::number::NumLimits;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a response was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Correct,
    Incorrect,
    /// Nothing answer-like in the response.
    NoAnswer,
    /// An answer was found but could not be read as mathematics (and did not match as text), or
    /// the gold solution had no answer.
    Unparseable,
    /// The answer used up its budget.
    Timeout,
}

/// The verifier's verdict on one response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grade {
    /// r_v: 1 when correct, else 0.
    pub reward: u8,
    pub status: Status,
    /// The answer taken from the response, for logs.
    pub extracted: Option<String>,
}

impl Grade {
    fn new(status: Status, extracted: Option<String>) -> Self {
        Self {
            reward: u8::from(status == Status::Correct),
            status,
            extracted,
        }
    }
}

/// Grading settings.
#[derive(Debug, Clone)]
pub struct GraderConfig {
    /// Relative tolerance for numbers written with decimals (default 1e-6).
    pub rel_tol: f64,
    /// `50\%` also equals 0.5, not only 50.
    pub percent_equals_decimal: bool,
    /// Fall back to the last number in the response when there is no marked answer.
    pub last_number_fallback: bool,
    /// Take a short formula-only response ("x+1") as the answer when nothing else matches.
    pub bare_answer_fallback: bool,
    /// Wall-clock budget per answer, enforced on a worker thread.
    pub budget: Duration,
    /// Longer responses are cut to their last this-many bytes (the final answer is at the end).
    pub max_response_bytes: usize,
    /// Answers longer than this are compared as text only, never parsed.
    pub max_answer_chars: usize,
    /// Maximum bracket/command nesting the parser accepts.
    pub max_depth: usize,
    /// Largest integer exponent evaluated exactly.
    pub max_exponent: u64,
    /// Largest exact numerator/denominator, in bits.
    pub max_bits: u64,
}

impl Default for GraderConfig {
    fn default() -> Self {
        Self {
            rel_tol: 1e-6,
            percent_equals_decimal: true,
            last_number_fallback: true,
            bare_answer_fallback: true,
            budget: Duration::from_secs(2),
            max_response_bytes: 1 << 20,
            max_answer_chars: 4096,
            max_depth: 128,
            max_exponent: 10_000,
            max_bits: 20_000,
        }
    }
}

/// Grades responses against gold solutions, each within its own budget.
pub struct Grader {
    config: Arc<GraderConfig>,
    worker: Mutex<Option<Worker<Grade>>>,
}

impl Grader {
    pub fn new(config: GraderConfig) -> Self {
        Self {
            config: Arc::new(config),
            worker: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &GraderConfig {
        &self.config
    }

    /// Grades one response. Never panics and returns within the budget (plus thread hand-off).
    pub fn grade(&self, gold: &str, response: &str) -> Grade {
        let deadline = Deadline::after(self.config.budget);
        let gold = tail(gold, self.config.max_response_bytes).to_string();
        let response = tail(response, self.config.max_response_bytes).to_string();
        // A poisoned lock only means an earlier caller panicked while holding it; the worker
        // slot is still valid.
        let mut slot = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            match Worker::spawn() {
                Ok(w) => *slot = Some(w),
                // No thread available: grade inline, with the cooperative limits only.
                Err(_) => return grade_inline(&self.config, &gold, &response, deadline),
            }
        }
        let Some(worker) = slot.as_ref() else {
            return grade_inline(&self.config, &gold, &response, deadline);
        };
        let config = Arc::clone(&self.config);
        let result = worker.run(
            move || grade_inline(&config, &gold, &response, deadline),
            deadline,
        );
        match result {
            Ok(g) => g,
            Err(JobFailure::TimedOut) => {
                // Abandon the busy worker; the next answer gets a fresh one.
                *slot = None;
                Grade::new(Status::Timeout, None)
            }
            Err(JobFailure::Crashed) => {
                *slot = None;
                Grade::new(Status::Unparseable, None)
            }
        }
    }

    /// Grades (gold, response) pairs in order; each has its own budget.
    pub fn grade_batch<G: AsRef<str>, R: AsRef<str>>(&self, pairs: &[(G, R)]) -> Vec<Grade> {
        pairs
            .iter()
            .map(|(g, r)| self.grade(g.as_ref(), r.as_ref()))
            .collect()
    }
}

/// The last `max` bytes of `s`, on a character boundary.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

struct Chosen {
    raw: String,
    normalized: String,
    parsed: Option<Expr>,
}

/// The first candidate that parses, else the first one (kept as text).
fn choose(cands: Vec<Candidate>, config: &GraderConfig, deadline: &Deadline) -> Option<Chosen> {
    let limits = ParseLimits {
        max_depth: config.max_depth,
        ..ParseLimits::default()
    };
    let mut fallback: Option<Chosen> = None;
    for c in cands {
        if deadline.expired() {
            break;
        }
        let normalized = normalize_bounded(&c.text, config);
        let parsed = parse_bounded(&normalized, config, &limits);
        let chosen = Chosen {
            raw: c.text,
            normalized,
            parsed,
        };
        if chosen.parsed.is_some() {
            return Some(chosen);
        }
        if fallback.is_none() {
            fallback = Some(chosen);
        }
    }
    fallback
}

fn normalize_bounded(text: &str, config: &GraderConfig) -> String {
    if text.len() > config.max_answer_chars * 4 {
        // Too long to be an answer worth normalising; keep it for the text comparison.
        return text.trim().to_string();
    }
    normalize(text)
}

fn parse_bounded(normalized: &str, config: &GraderConfig, limits: &ParseLimits) -> Option<Expr> {
    if normalized.is_empty()
        || normalized.chars().count() > config.max_answer_chars
        || nesting_depth(normalized) > config.max_depth
    {
        return None;
    }
    parse_answer(normalized, limits).ok()
}

/// Grades on the calling thread with the cooperative limits only (no hard timeout). [`Grader`]
/// runs this on its worker.
pub fn grade_inline(
    config: &GraderConfig,
    gold: &str,
    response: &str,
    deadline: Deadline,
) -> Grade {
    let opts = ExtractOptions {
        last_number_fallback: config.last_number_fallback,
        whole_fallback: config.bare_answer_fallback,
    };
    let response = tail(response, config.max_response_bytes);
    let pred_cands = candidates(response, &opts);
    if pred_cands.is_empty() {
        return Grade::new(Status::NoAnswer, None);
    }
    let Some(pred) = choose(pred_cands, config, &deadline) else {
        return Grade::new(Status::Timeout, None);
    };
    let extracted = Some(pred.raw.clone());
    let gold_cands = gold_candidates(tail(gold, config.max_response_bytes));
    let Some(gold) = choose(gold_cands, config, &deadline) else {
        let status = if deadline.expired() {
            Status::Timeout
        } else {
            Status::Unparseable
        };
        return Grade::new(status, extracted);
    };
    if !gold.normalized.is_empty() && compact(&gold.normalized) == compact(&pred.normalized) {
        return Grade::new(Status::Correct, extracted);
    }
    if let (Some(g), Some(p)) = (
        plain_integer(&gold.normalized),
        plain_integer(&pred.normalized),
    ) {
        // Integers of any length compare by their digits, without parsing (100,000 digits).
        let status = if g == p {
            Status::Correct
        } else {
            Status::Incorrect
        };
        return Grade::new(status, extracted);
    }
    let status = match (&gold.parsed, &pred.parsed) {
        (Some(g), Some(p)) => {
            let cfg = EquivConfig {
                rel_tol: config.rel_tol,
                percent_equals_decimal: config.percent_equals_decimal,
                num_limits: NumLimits {
                    max_bits: config.max_bits,
                    max_exponent: config.max_exponent,
                },
            };
            let cmp = Comparer {
                cfg: &cfg,
                deadline: &deadline,
            };
            if cmp.equivalent(g, p) {
                Status::Correct
            } else if deadline.expired() {
                Status::Timeout
            } else {
                Status::Incorrect
            }
        }
        (_, None) => Status::Unparseable,
        (None, Some(_)) => Status::Incorrect,
    };
    Grade::new(status, extracted)
}

/// Digits of a plain integer answer ("-0042" → "-42"), or None.
fn plain_integer(s: &str) -> Option<String> {
    let (sign, digits) = match s.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    Some(if trimmed.is_empty() {
        "0".to_string()
    } else {
        format!("{sign}{trimmed}")
    })
}
