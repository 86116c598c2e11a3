//! The agreement corpus (`corpus.jsonl`, written by scripts/verifier_corpus.py): responses in the
//! style real models write, each with a careful human label and math-verify 0.9's stored verdict.
//! The grader must never call a wrong answer right, agree with the labels on at least 99% of
//! rows, and agree with math-verify wherever math-verify agrees with the label.

use laser_verifier::{Grader, GraderConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Row {
    id: String,
    gold: String,
    pred: String,
    human: bool,
    mv: bool,
}

#[test]
fn corpus_agreement_with_labels_and_math_verify() {
    let rows: Vec<Row> = include_str!("corpus.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("corpus.jsonl:{}: {e}", i + 1))
        })
        .collect();
    assert!(rows.len() >= 500, "{} rows", rows.len());
    let grader = Grader::new(GraderConfig::default());
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.gold.as_str(), r.pred.as_str()))
        .collect();
    let grades = grader.grade_batch(&pairs);

    let ours: Vec<bool> = grades.iter().map(|g| g.reward == 1).collect();
    let false_positives: Vec<&str> = rows
        .iter()
        .zip(&ours)
        .filter(|(r, o)| **o && !r.human)
        .map(|(r, _)| r.id.as_str())
        .collect();
    assert!(
        false_positives.is_empty(),
        "wrong answers graded correct: {false_positives:?}"
    );

    let agree_label = rows
        .iter()
        .zip(&ours)
        .filter(|(r, o)| **o == r.human)
        .count();
    assert!(
        agree_label * 100 >= rows.len() * 99,
        "agreement with the labels {agree_label}/{}",
        rows.len()
    );

    let mv_right: Vec<(&Row, bool)> = rows
        .iter()
        .zip(ours.iter().copied())
        .filter(|(r, _)| r.mv == r.human)
        .collect();
    let disagree: Vec<&str> = mv_right
        .iter()
        .filter(|(r, o)| *o != r.mv)
        .map(|(r, _)| r.id.as_str())
        .collect();
    assert!(
        disagree.len() * 200 <= mv_right.len(),
        "disagreements with math-verify where it matches the label: {disagree:?}"
    );
}
