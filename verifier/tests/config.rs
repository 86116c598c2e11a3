//! The grading knobs of `GraderConfig` change verdicts the way they say.

use laser_verifier::{Grader, GraderConfig, Status};

fn grade_with(config: GraderConfig, gold: &str, answer: &str) -> Status {
    Grader::new(config).grade(gold, answer).status
}

#[test]
fn percent_versus_decimal_is_configurable() {
    let on = GraderConfig::default();
    let off = GraderConfig {
        percent_equals_decimal: false,
        ..GraderConfig::default()
    };
    assert_eq!(
        grade_with(on.clone(), "50\\%", "\\boxed{0.5}"),
        Status::Correct
    );
    assert_eq!(
        grade_with(off.clone(), "50\\%", "\\boxed{0.5}"),
        Status::Incorrect
    );
    // The number itself is accepted either way, and a wrong one never.
    assert_eq!(
        grade_with(on.clone(), "50\\%", "\\boxed{50}"),
        Status::Correct
    );
    assert_eq!(
        grade_with(off.clone(), "50\\%", "\\boxed{50\\%}"),
        Status::Correct
    );
    assert_eq!(grade_with(off, "0.25", "\\boxed{25\\%}"), Status::Incorrect);
    assert_eq!(grade_with(on, "0.25", "\\boxed{26\\%}"), Status::Incorrect);
}

#[test]
fn last_number_fallback_is_configurable() {
    let off = GraderConfig {
        last_number_fallback: false,
        bare_answer_fallback: false,
        ..GraderConfig::default()
    };
    let text = "We count them all: there are 12 apples";
    assert_eq!(
        grade_with(GraderConfig::default(), "12", text),
        Status::Correct
    );
    assert_eq!(grade_with(off.clone(), "12", text), Status::NoAnswer);
    // Marked answers do not depend on the fallback.
    assert_eq!(grade_with(off, "12", "so \\boxed{12}"), Status::Correct);
}

#[test]
fn relative_tolerance_is_configurable() {
    let loose = GraderConfig {
        rel_tol: 1e-4,
        ..GraderConfig::default()
    };
    // 3.1416 vs 3.14159: relative difference 3.2e-6.
    assert_eq!(
        grade_with(GraderConfig::default(), "3.14159", "\\boxed{3.1416}"),
        Status::Incorrect
    );
    assert_eq!(
        grade_with(loose.clone(), "3.14159", "\\boxed{3.1416}"),
        Status::Correct
    );
    assert_eq!(
        grade_with(loose, "3.14159", "\\boxed{3.15}"),
        Status::Incorrect
    );
    // Within the default 1e-6.
    assert_eq!(
        grade_with(GraderConfig::default(), "2.5", "\\boxed{2.5000001}"),
        Status::Correct
    );
    // Exact values with no decimal written are compared exactly, not within the tolerance.
    let very_loose = GraderConfig {
        rel_tol: 0.1,
        ..GraderConfig::default()
    };
    assert_eq!(
        grade_with(
            very_loose,
            "\\frac{1}{3}",
            "\\boxed{\\frac{1}{3}+\\frac{1}{100}}"
        ),
        Status::Incorrect
    );
}
