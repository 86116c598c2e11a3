//! Pathological answers: each is graded within its 2 s budget (status is never `timeout`, which
//! the grader reports the moment the budget runs out) and nothing crashes.

use laser_verifier::{Grade, Grader, GraderConfig, Status};

fn grade(gold: &str, answer: &str) -> Grade {
    let grader = Grader::new(GraderConfig::default());
    let g = grader.grade(gold, answer);
    assert_ne!(
        g.status,
        Status::Timeout,
        "budget exceeded for a {}-byte answer",
        answer.len()
    );
    g
}

#[test]
fn ten_megabyte_answer() {
    let filler = "step ".repeat(2 * 1024 * 1024);
    assert!(filler.len() >= 10 * 1024 * 1024);
    let g = grade("42", &format!("{filler} so the answer is \\boxed{{42}}"));
    assert_eq!(g.status, Status::Correct);
    // Ten megabytes with no answer at all.
    let g = grade("42", &"x".repeat(10 * 1024 * 1024));
    assert_eq!(g.reward, 0);
    // Ten megabytes inside one box.
    let g = grade(
        "42",
        &format!("\\boxed{{{}}}", "9".repeat(10 * 1024 * 1024)),
    );
    assert_eq!(g.reward, 0);
}

#[test]
fn tower_of_powers() {
    let tower = "10^{10^{10^{10}}}";
    assert_eq!(
        grade(tower, &format!("\\boxed{{{tower}}}")).status,
        Status::Correct
    );
    // Both sides overflow any float: they must not be called equal just because both are huge.
    assert_eq!(grade(tower, "\\boxed{10^{10^{10^{9}}}}").reward, 0);
    assert_eq!(
        grade("1", "\\boxed{10^{10^{10^{10}}}}").status,
        Status::Incorrect
    );
    assert_eq!(
        grade("2^{100}", "\\boxed{1267650600228229401496703205376}").status,
        Status::Correct
    );
}

#[test]
fn frac_nested_ten_thousand_deep() {
    let deep = format!("{}1{}", "\\frac{".repeat(10_000), "}{2}".repeat(10_000));
    let g = grade("1", &format!("\\boxed{{{deep}}}"));
    assert_eq!(g.reward, 0);
    // The box is too deep to parse; a later candidate (the innermost bare \frac{1}{2}) may be read.
    assert!(
        matches!(g.status, Status::Unparseable | Status::Incorrect),
        "{g:?}"
    );
    // As the gold side too.
    assert_eq!(grade(&deep, "\\boxed{1}").reward, 0);
    // Deep parentheses and deep unary minus, which a recursive parser would follow.
    assert_eq!(
        grade(
            "1",
            &format!("\\boxed{{{}1{}}}", "(".repeat(100_000), ")".repeat(100_000))
        )
        .reward,
        0
    );
    assert_eq!(
        grade("1", &format!("\\boxed{{{}1}}", "-".repeat(100_000))).reward,
        0
    );
    assert_eq!(
        grade("1", &format!("\\boxed{{1{}}}", "!".repeat(100_000))).reward,
        0
    );
}

#[test]
fn number_with_a_hundred_thousand_digits() {
    let n: String = (0..100_000)
        .map(|i| char::from(b'1' + (i % 9) as u8))
        .collect();
    assert_eq!(
        grade(&n, &format!("\\boxed{{{n}}}")).status,
        Status::Correct
    );
    let mut other = n.clone();
    other.pop();
    other.push('0');
    assert_eq!(
        grade(&n, &format!("\\boxed{{{other}}}")).status,
        Status::Incorrect
    );
    // Inside an expression it cannot be parsed exactly, and is not mistaken for a match.
    assert_eq!(grade("1", &format!("\\boxed{{{n}+1}}")).reward, 0);
    assert_eq!(
        grade(&n, &format!("The answer is {n}.")).status,
        Status::Correct
    );
}

#[test]
fn unbalanced_braces() {
    for answer in [
        "\\boxed{\\frac{1}{2}",
        "}}}}{{{{",
        "\\boxed{1}}}}",
        "{{{{{{1",
        "\\frac{1}{2",
        "$\\left( 1, 2$",
        "\\boxed{)(}",
    ] {
        let g = grade("\\frac{1}{2}", answer);
        assert!(
            g.status != Status::Correct || answer.contains("\\frac{1}{2"),
            "{answer}: {g:?}"
        );
    }
    // Unbalanced gold.
    assert_eq!(grade("{{{", "\\boxed{1}").reward, 0);
}

#[test]
fn boxed_without_closing_brace() {
    // A truncated response still has its answer read to the end of the text.
    assert_eq!(grade("42", "so we get \\boxed{42").status, Status::Correct);
    assert_eq!(grade("42", "so we get \\boxed{").reward, 0);
    assert_eq!(grade("42", "\\boxed").reward, 0);
    assert_eq!(
        grade("42", &format!("\\boxed{{{}", "{".repeat(50_000))).reward,
        0
    );
}

#[test]
fn a_slow_answer_costs_only_its_own_budget() {
    // A tiny budget forces the hard timeout on a large answer; the next answer is graded normally.
    let grader = Grader::new(GraderConfig {
        budget: std::time::Duration::from_nanos(1),
        ..GraderConfig::default()
    });
    let big = format!("{} \\boxed{{42}}", "1 + ".repeat(200_000));
    assert_eq!(grader.grade("42", &big).status, Status::Timeout);
    let grader = Grader::new(GraderConfig::default());
    let grades = grader.grade_batch(&[("42", big.as_str()), ("7", "\\boxed{7}")]);
    assert_eq!(grades[1].status, Status::Correct);
}

#[test]
fn sums_with_huge_or_nested_ranges_are_refused_not_run() {
    // Expanding these would take minutes: each is refused (not equal), within the budget.
    assert_eq!(grade("1", "\\boxed{\\sum_{k=1}^{10^{12}} k}").reward, 0);
    let nested = "\\boxed{\\sum_{i=1}^{9999}\\sum_{j=1}^{9999}\\sum_{k=1}^{9999} ijk}";
    assert_eq!(grade("1", nested).reward, 0);
    let symbolic = "\\boxed{\\sum_{i=1}^{n}\\sum_{j=1}^{10^{9}} j}";
    assert_eq!(grade("n", symbolic).reward, 0);
    // A small one is still evaluated exactly.
    assert_eq!(
        grade("5050", "\\boxed{\\sum_{k=1}^{100} k}").status,
        Status::Correct
    );
    let deep = format!("\\boxed{{{}1{}}}", "\\sum_{k=1}^{3}".repeat(500), "");
    // Too deep to parse: graded (through a later candidate, as for deep fractions) in budget.
    grade("1", &deep);
}

#[test]
fn long_runs_of_new_separators_and_colons() {
    let colons = format!("\\boxed{{{}}}", "12:00:".repeat(50_000));
    assert_eq!(grade("12:00", &colons).reward, 0);
    let grouped = format!("\\boxed{{1{}}}", " 000".repeat(100_000));
    assert_eq!(grade("1", &grouped).reward, 0);
    let braced = format!("\\boxed{{1{}}}", "{,}5".repeat(100_000));
    assert_eq!(grade("1", &braced).reward, 0);
}

#[test]
fn responses_that_keep_repeating_their_answer() {
    // A model that goes on after its answer: tens of thousands of anchors, environments and
    // numbers. Extraction is linear in them, so these grade (correctly) within the budget.
    let notes = format!(
        "Solve. {}",
        "Note: the answer is $10$, since $3+7=10$. ".repeat(20_000)
    );
    assert_eq!(grade("10", &notes).status, Status::Correct);
    let finals = "The final answer is 10. ".repeat(40_000);
    assert_eq!(grade("10", &finals).status, Status::Correct);
    let fracs = format!(
        "{} so $\\frac{{1}}{{2}}$",
        "\\frac{1}{2} and ".repeat(50_000)
    );
    assert_eq!(grade("\\frac{1}{2}", &fracs).status, Status::Correct);
    let anchors = format!(
        "{}{}",
        "answer answer ".repeat(50_000),
        "$1$ ".repeat(50_000)
    );
    assert_eq!(grade("1", &anchors).status, Status::Correct);
}
