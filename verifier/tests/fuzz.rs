//! Property tests over random unicode and LaTeX-like input: grading never panics, and always
//! finishes within its budget (a grade of `timeout` would mean the budget ran out).

use laser_verifier::{Grader, GraderConfig, Status, grade_inline};
use proptest::prelude::*;
use std::sync::LazyLock;

static GRADER: LazyLock<Grader> = LazyLock::new(|| Grader::new(GraderConfig::default()));

const PIECES: &[&str] = &[
    "\\frac",
    "\\dfrac",
    "\\sqrt",
    "\\boxed",
    "\\fbox",
    "\\left(",
    "\\right)",
    "\\left[",
    "\\right]",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "\\{",
    "\\}",
    "^",
    "_",
    "+",
    "-",
    "*",
    "/",
    "=",
    "<",
    "\\le",
    "\\ge",
    ",",
    ";",
    "&",
    "\\\\",
    "\\begin{pmatrix}",
    "\\end{pmatrix}",
    "\\cdot",
    "\\times",
    "\\pi",
    "\\infty",
    "\\cup",
    "\\text{",
    "\\mathrm{",
    "$",
    "$$",
    "\\[",
    "\\]",
    "\\%",
    "%",
    "^\\circ",
    "x",
    "y",
    "e",
    "i",
    "0",
    "1",
    "2",
    "9",
    "10",
    "0.5",
    ".",
    "!",
    "|",
    "\\log_",
    "\\sin",
    "\\binom",
    "1,000",
    "#### ",
    "final answer is ",
    "The answer is ",
    " and ",
    "\\,",
    "\\!",
    " ",
    "\n",
    // The grammar of issue 22: sums, times and ratios, bases, approximations, separators.
    "\\sum_{k=1}^{",
    "\\prod_{k=1}^{",
    "\\sum_{k=0}^{n}",
    "k",
    "n",
    ":",
    "12:00",
    "3:2",
    "_5",
    "204_5",
    "!=",
    "\\neq",
    "\\approx",
    "{,}",
    "11,\\!111",
    "1 000",
    "3,5",
    "€",
    "\\textnormal{",
    "\\textbf{",
    "\\mathrm{~km}",
    "\\begin{array}{cc}",
    "\\end{array}",
    "<think>",
    "</think>",
    "\\quad",
    " or ",
];

fn latex_like() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_unicode_never_panics(gold in "\\PC{0,80}", answer in "\\PC{0,200}") {
        let g = GRADER.grade(&gold, &answer);
        prop_assert_ne!(g.status, Status::Timeout);
        prop_assert_eq!(g.reward == 1, g.status == Status::Correct);
    }

    #[test]
    fn latex_like_input_never_panics(gold in latex_like(), answer in latex_like()) {
        let g = GRADER.grade(&gold, &answer);
        prop_assert_ne!(g.status, Status::Timeout);
        prop_assert_eq!(g.reward == 1, g.status == Status::Correct);
    }

    #[test]
    fn inline_grading_never_panics(gold in latex_like(), answer in latex_like()) {
        // On the calling thread, without the worker's catch_unwind: a panic would fail the test.
        let cfg = GraderConfig::default();
        let deadline = laser_verifier::budget::Deadline::after(cfg.budget);
        let g = grade_inline(&cfg, &gold, &answer, deadline);
        prop_assert_ne!(g.status, Status::Timeout);
    }

    #[test]
    fn an_answer_matches_itself(expr in latex_like()) {
        // Reflexivity: whatever a boxed answer extracts to, it equals itself as gold.
        let cfg = GraderConfig::default();
        let deadline = laser_verifier::budget::Deadline::after(cfg.budget);
        let inner = expr.replace(['{', '}', '$'], "");
        let g = grade_inline(&cfg, &format!("\\boxed{{{inner}}}"), &format!("\\boxed{{{inner}}}"), deadline);
        prop_assert!(matches!(g.status, Status::Correct | Status::NoAnswer | Status::Unparseable), "{:?}", g);
    }
}
