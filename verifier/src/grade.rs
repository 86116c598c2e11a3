//! The grader: response + gold solution → [`Grade`] (reward 0/1, status, extracted answer).

use crate::budget::{Deadline, JobFailure, Worker};
use crate::equiv::{Comparer, EquivConfig};
use crate::expr::{Expr, ParseLimits, parse_answer};
use crate::extract::{
    Candidate, ExtractOptions, candidates, gold_candidates, localized_decimal,
    writes_decimal_commas,
};
use crate::normalize::{compact, nesting_depth, normalize};
use crate::number::NumLimits;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// Answers graded at once by [`Grader::grade_batch`]; 0 means one per available core.
    pub parallelism: usize,
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
            parallelism: 0,
        }
    }
}

/// Grades responses against gold solutions, each within its own budget.
///
/// A grader owns a few *lanes*, each holding one worker thread. An answer is graded on a lane's
/// worker while the calling thread waits at most the budget; a worker that overruns is abandoned
/// and its lane gets a fresh one, so a pathological answer costs its own budget and nothing more.
/// Share one grader (`&Grader` is `Sync`) rather than making one per answer: workers are reused.
pub struct Grader {
    config: Arc<GraderConfig>,
    /// The grading work run on a worker: [`grade_inline`], replaced only by tests that need a
    /// grader which ignores its deadline.
    grade_fn: GradeFn,
    lanes: Vec<Mutex<Option<Worker<Grade>>>>,
    /// Round-robin pick for [`Grader::grade`] callers that find every lane busy.
    next_lane: AtomicUsize,
}

impl Grader {
    pub fn new(config: GraderConfig) -> Self {
        let lanes = match config.parallelism {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Self {
            config: Arc::new(config),
            grade_fn: grade_inline,
            lanes: (0..lanes).map(|_| Mutex::new(None)).collect(),
            next_lane: AtomicUsize::new(0),
        }
    }

    pub fn config(&self) -> &GraderConfig {
        &self.config
    }

    /// How many answers [`Grader::grade_batch`] grades at once.
    pub fn parallelism(&self) -> usize {
        self.lanes.len()
    }

    /// Grades one response. Never panics, and returns within the budget (plus thread hand-off)
    /// once a lane is free; the budget starts when grading starts, not while waiting for a lane.
    pub fn grade(&self, gold: &str, response: &str) -> Grade {
        let free = self.lanes.iter().find_map(|lane| lane.try_lock().ok());
        let mut lane = match free {
            Some(guard) => guard,
            None => {
                let k = self.next_lane.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
                lock(&self.lanes[k])
            }
        };
        self.grade_on_lane(&mut lane, gold, response)
    }

    /// Grades (gold, response) pairs, up to [`Grader::parallelism`] at once, each with its own
    /// budget. The result is in input order. A batch of n answers on p lanes takes at most about
    /// ceil(n / p) budgets, however pathological the answers.
    pub fn grade_batch<G, R>(&self, pairs: &[(G, R)]) -> Vec<Grade>
    where
        G: AsRef<str> + Sync,
        R: AsRef<str> + Sync,
    {
        let next = AtomicUsize::new(0);
        let lanes = self.lanes.len().min(pairs.len());
        let mut graded: Vec<(usize, Grade)> = std::thread::scope(|scope| {
            let handles: Vec<_> = self.lanes[..lanes]
                .iter()
                .map(|lane| {
                    let next = &next;
                    scope.spawn(move || {
                        let mut lane = lock(lane);
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some((g, r)) = pairs.get(i) else { break };
                            out.push((i, self.grade_on_lane(&mut lane, g.as_ref(), r.as_ref())));
                        }
                        out
                    })
                })
                .collect();
            // grade_on_lane contains every panic of the grading itself; a lane thread that still
            // died leaves its answers ungraded, filled in below.
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        graded.sort_by_key(|(i, _)| *i);
        let mut out = Vec::with_capacity(pairs.len());
        let mut it = graded.into_iter().peekable();
        for i in 0..pairs.len() {
            match it.next_if(|(j, _)| *j == i) {
                Some((_, g)) => out.push(g),
                None => out.push(Grade::new(Status::Unparseable, None)),
            }
        }
        out
    }

    /// Grades on `lane`'s worker (spawning one if the lane has none) with a hard deadline.
    fn grade_on_lane(&self, lane: &mut Option<Worker<Grade>>, gold: &str, response: &str) -> Grade {
        let deadline = Deadline::after(self.config.budget);
        let gold = tail(gold, self.config.max_response_bytes).to_string();
        let response = tail(response, self.config.max_response_bytes).to_string();
        if lane.is_none() {
            match Worker::spawn() {
                Ok(w) => *lane = Some(w),
                // No thread available: grade inline, with the cooperative limits only.
                Err(_) => return (self.grade_fn)(&self.config, &gold, &response, deadline),
            }
        }
        let Some(worker) = lane.as_ref() else {
            return (self.grade_fn)(&self.config, &gold, &response, deadline);
        };
        let config = Arc::clone(&self.config);
        let grade_fn = self.grade_fn;
        let result = worker.run(
            move || grade_fn(&config, &gold, &response, deadline),
            deadline,
        );
        match result {
            Ok(g) => g,
            Err(JobFailure::TimedOut) => {
                // Abandon the busy worker (it finishes on its own); the next answer gets a fresh one.
                *lane = None;
                Grade::new(Status::Timeout, None)
            }
            Err(JobFailure::Crashed) => {
                *lane = None;
                Grade::new(Status::Unparseable, None)
            }
        }
    }
}

type GradeFn = fn(&GraderConfig, &str, &str, Deadline) -> Grade;

/// A poisoned lane only means an earlier grading call panicked while holding it; the worker slot
/// is still valid (at worst it holds a worker that gets replaced on its next failure).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
    let mut pred_cands = candidates(response, &opts);
    if pred_cands.is_empty() {
        return Grade::new(Status::NoAnswer, None);
    }
    if pred_cands
        .iter()
        .any(|c| localized_decimal(&c.text).is_some())
        && writes_decimal_commas(response)
    {
        for c in &mut pred_cands {
            if let Some(decimal) = localized_decimal(&c.text) {
                c.text = decimal;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    static SLOW_JOB_FINISHED: AtomicBool = AtomicBool::new(false);

    /// Grades normally, except that the response "hang" ignores the deadline for 3 s, the way a
    /// grader stuck in some unbounded loop would.
    fn uncooperative(config: &GraderConfig, gold: &str, resp: &str, deadline: Deadline) -> Grade {
        if resp == "hang" {
            std::thread::sleep(Duration::from_secs(3));
            SLOW_JOB_FINISHED.store(true, Ordering::SeqCst);
        }
        grade_inline(config, gold, resp, deadline)
    }

    #[test]
    fn a_hanging_answer_costs_only_its_own_budget() {
        let mut grader = Grader::new(GraderConfig {
            budget: Duration::from_millis(200),
            parallelism: 2,
            ..GraderConfig::default()
        });
        grader.grade_fn = uncooperative;
        let mut pairs = vec![("1".to_string(), "hang".to_string())];
        for k in 0..20 {
            pairs.push((k.to_string(), format!("so \\boxed{{{k}}}")));
        }
        pairs.push(("3".into(), "\\boxed{4}".into()));
        let grades = grader.grade_batch(&pairs);
        // The batch came back before the hanging job ended: the timeout did not wait for it.
        assert!(!SLOW_JOB_FINISHED.load(Ordering::SeqCst));
        assert_eq!(grades.len(), pairs.len());
        assert_eq!(grades[0].status, Status::Timeout);
        assert_eq!(grades[0].reward, 0);
        for (k, g) in grades[1..21].iter().enumerate() {
            assert_eq!(
                (g.status, g.extracted.clone()),
                (Status::Correct, Some(k.to_string()))
            );
        }
        assert_eq!(grades[21].status, Status::Incorrect);
        // The abandoned worker was replaced: the grader keeps working.
        assert_eq!(grader.grade("5", "\\boxed{5}").status, Status::Correct);
        assert_eq!(grader.grade("1", "hang").status, Status::Timeout);
    }

    #[test]
    fn batch_matches_one_by_one_grading_in_order() {
        let grader = Grader::new(GraderConfig {
            parallelism: 3,
            ..GraderConfig::default()
        });
        assert_eq!(grader.parallelism(), 3);
        let pairs: Vec<(String, String)> = (0..50)
            .map(|k| match k % 4 {
                0 => (format!("{k}"), format!("\\boxed{{{k}}}")),
                1 => ("\\frac{1}{2}".into(), format!("the answer is {k}")),
                2 => ("x^2".into(), "$x \\cdot x$".into()),
                _ => ("7".into(), "no idea".into()),
            })
            .collect();
        let batch = grader.grade_batch(&pairs);
        let single: Vec<Grade> = pairs.iter().map(|(g, r)| grader.grade(g, r)).collect();
        assert_eq!(batch, single);
        assert_eq!(batch[2].status, Status::Correct);
        assert_eq!(batch[3].status, Status::NoAnswer);
        assert!(grader.grade_batch::<&str, &str>(&[]).is_empty());
    }

    #[test]
    fn grade_serialises_for_the_wire() {
        let g = Grade::new(Status::NoAnswer, None);
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            r#"{"reward":0,"status":"no_answer","extracted":null}"#
        );
        let back: Grade =
            serde_json::from_str(r#"{"reward":1,"status":"correct","extracted":"7"}"#).unwrap();
        assert_eq!(back, Grade::new(Status::Correct, Some("7".into())));
    }
}
