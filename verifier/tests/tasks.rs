//! Task sources: synthetic arithmetic and the JSONL loader.

use laser_verifier::eval::eval_num;
use laser_verifier::expr::{ParseLimits, parse_answer};
use laser_verifier::number::{Num, NumLimits};
use laser_verifier::tasks::jsonl::{JsonlFields, gold_from_solution, load_jsonl};
use laser_verifier::tasks::synthetic::{ArithOp, SyntheticConfig, SyntheticTasks};
use laser_verifier::{Grader, GraderConfig, TaskError};
use std::path::PathBuf;

#[test]
fn synthetic_is_deterministic_for_a_seed() {
    let cfg = SyntheticConfig::default();
    let a: Vec<_> = SyntheticTasks::new(cfg.clone(), 42)
        .unwrap()
        .take(50)
        .collect();
    let b: Vec<_> = SyntheticTasks::new(cfg.clone(), 42)
        .unwrap()
        .take(50)
        .collect();
    assert_eq!(a, b);
    let c: Vec<_> = SyntheticTasks::new(cfg.clone(), 43)
        .unwrap()
        .take(50)
        .collect();
    assert_ne!(a, c);
    // Resuming at index 20 continues the same stream.
    let resumed: Vec<_> = SyntheticTasks::new(cfg, 42)
        .unwrap()
        .starting_at(20)
        .take(30)
        .collect();
    assert_eq!(resumed, a[20..]);
    // Distinct problems, not one repeated.
    let distinct: std::collections::BTreeSet<_> = a.iter().map(|t| t.question.clone()).collect();
    assert!(distinct.len() > 40);
}

#[test]
fn synthetic_gold_is_the_exact_value_and_knobs_are_respected() {
    let cfg = SyntheticConfig {
        min_digits: 2,
        max_digits: 3,
        ops: vec![ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div],
        chain_length: 4,
    };
    let grader = Grader::new(GraderConfig::default());
    let mut saw_fraction = false;
    for t in SyntheticTasks::new(cfg, 7).unwrap().take(200) {
        let expr = t
            .question
            .strip_prefix("Compute ")
            .and_then(|s| s.strip_suffix('.'))
            .unwrap();
        let tokens: Vec<&str> = expr.split(' ').collect();
        assert_eq!(tokens.len(), 9, "{expr}");
        for (k, tok) in tokens.iter().enumerate() {
            if k % 2 == 0 {
                assert!(
                    (2..=3).contains(&tok.len()) && tok.bytes().all(|b| b.is_ascii_digit()),
                    "{tok}"
                );
            } else {
                assert!(["+", "-", "*", "/"].contains(tok), "{tok}");
            }
        }
        // Independent check: the grader's own parser evaluates the question exactly.
        let value = eval_num(
            &parse_answer(expr, &ParseLimits::default()).unwrap(),
            &NumLimits::default(),
        )
        .unwrap();
        let gold = eval_num(
            &parse_answer(&t.gold, &ParseLimits::default()).unwrap(),
            &NumLimits::default(),
        )
        .unwrap();
        match (value, gold) {
            (Num::Exact(v), Num::Exact(g)) => {
                assert_eq!(v, g, "{expr} vs gold {}", t.gold);
                saw_fraction |= !g.is_integer();
            }
            other => panic!("not exact: {other:?}"),
        }
        assert_eq!(
            grader
                .grade(&t.gold, &format!("The answer is \\boxed{{{}}}.", t.gold))
                .reward,
            1
        );
    }
    assert!(
        saw_fraction,
        "division should produce some fractional answers"
    );
}

#[test]
fn synthetic_rejects_bad_knobs() {
    let bad = SyntheticConfig {
        chain_length: 0,
        ..SyntheticConfig::default()
    };
    let err = SyntheticTasks::new(bad, 1).unwrap_err();
    assert!(err.to_string().contains("chain_length"), "{err}");
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("laser-verifier-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn jsonl_loads_with_default_and_custom_fields() {
    let path = temp_file(
        "ok.jsonl",
        concat!(
            "{\"question\": \"1+1?\", \"answer\": \"2\"}\n",
            "\n",
            "{\"prompt\": \"Half of 1?\", \"solution\": \"It is $\\\\boxed{\\\\frac{1}{2}}$.\", \"id\": \"h\"}\n",
            "{\"question\": \"GSM\", \"answer\": \"3*4 = 12\\n#### 12\"}\n",
            "{\"question\": \"num\", \"answer\": 5}\n",
        ),
    );
    let tasks = load_jsonl(&path, &JsonlFields::default()).unwrap();
    let golds: Vec<&str> = tasks.iter().map(|t| t.gold.as_str()).collect();
    assert_eq!(golds, ["2", "\\frac{1}{2}", "12", "5"]);
    assert_eq!(tasks[1].id, "h");
    assert_eq!(tasks[1].question, "Half of 1?");
    assert_eq!(tasks[0].id, "ok.jsonl:1");

    let custom = temp_file(
        "custom.jsonl",
        "{\"problem_text\": \"Q\", \"final\": \"\\\\boxed{9}\"}\n",
    );
    let fields = JsonlFields {
        question: vec!["problem_text".into()],
        answer: vec!["final".into()],
        id: vec![],
        ..JsonlFields::default()
    };
    let tasks = load_jsonl(&custom, &fields).unwrap();
    assert_eq!(
        (tasks[0].question.as_str(), tasks[0].gold.as_str()),
        ("Q", "9")
    );
}

#[test]
fn jsonl_errors_name_file_and_line() {
    let cases = [
        (
            "badjson.jsonl",
            "{\"question\": \"q\", \"answer\": \"1\"}\n{oops\n",
            2,
            "invalid JSON",
        ),
        ("noq.jsonl", "{\"answer\": \"1\"}\n", 1, "`question`"),
        (
            "noa.jsonl",
            "{\"question\": \"q\", \"answer\": \"1\"}\n\n{\"question\": \"q\"}\n",
            3,
            "`answer`",
        ),
        ("array.jsonl", "[1, 2]\n", 1, "JSON object"),
        (
            "kind.jsonl",
            "{\"question\": [\"q\"], \"answer\": {\"v\": 1}}\n",
            1,
            "message 0 needs a string `role`",
        ),
        (
            "answer_kind.jsonl",
            "{\"question\": \"q\", \"answer\": {\"v\": 1}}\n",
            1,
            "column `answer` must be a string or number",
        ),
        (
            "empty_gold.jsonl",
            "{\"question\": \"q\", \"answer\": \"\\\\boxed{}\"}\n",
            1,
            "empty gold",
        ),
    ];
    for (name, contents, line, needle) in cases {
        let path = temp_file(name, contents);
        match load_jsonl(&path, &JsonlFields::default()) {
            Err(TaskError::Line {
                path: p,
                line: l,
                message,
            }) => {
                assert_eq!(p, path);
                assert_eq!(l, line, "{name}: {message}");
                assert!(message.contains(needle), "{name}: {message}");
                let shown = load_jsonl(&path, &JsonlFields::default())
                    .unwrap_err()
                    .to_string();
                assert!(shown.contains(&format!("{name}:{line}:")), "{shown}");
            }
            other => panic!("{name}: expected a line error, got {other:?}"),
        }
    }
    let missing = std::env::temp_dir().join("laser-verifier-no-such-file.jsonl");
    let err = load_jsonl(&missing, &JsonlFields::default()).unwrap_err();
    assert!(
        matches!(err, TaskError::Io { .. })
            && err
                .to_string()
                .contains("laser-verifier-no-such-file.jsonl")
    );
    let blank = temp_file("blank.jsonl", "\n\n");
    assert!(matches!(
        load_jsonl(&blank, &JsonlFields::default()),
        Err(TaskError::Empty { .. })
    ));
}

#[test]
fn gold_extraction_from_solutions() {
    assert_eq!(
        gold_from_solution("so $\\boxed{\\{1,2\\}}$").as_deref(),
        Some("\\{1,2\\}")
    );
    assert_eq!(
        gold_from_solution("work\n#### 1,234").as_deref(),
        Some("1,234")
    );
    assert_eq!(gold_from_solution("  17 ").as_deref(), Some("17"));
    assert_eq!(gold_from_solution("   "), None);
}
