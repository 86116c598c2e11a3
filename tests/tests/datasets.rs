//! Issue 28: `coordinator to-verl-parquet` turns a JSONL task file into verl's parquet layout,
//! which reads back (through the trainer's own reader) as the same tasks.

use std::process::Command;
use std::time::Duration;

use laser_integration_tests::{bin, run_bounded, temp_dir, workspace};
use laser_verifier::tasks::jsonl::{JsonlFields, load_jsonl};
use laser_verifier::tasks::parquet::load_parquet;

#[test]
fn the_converter_writes_verls_layout_and_it_reads_back_as_the_same_tasks() {
    let dir = temp_dir("to-verl");
    let input = workspace().join("data/reasoning_gym_arithmetic_eval.jsonl");
    let output = dir.join("eval.parquet");
    let mut cmd = Command::new(bin("coordinator"));
    cmd.arg("to-verl-parquet").arg(&input).arg(&output).args([
        "--data-source",
        "reasoning_gym/arithmetic",
        "--split",
        "test",
    ]);
    let (status, out, err) = run_bounded(&mut cmd, Duration::from_secs(60));
    assert!(status.success(), "{out}{err}");
    let jsonl = load_jsonl(&input, &JsonlFields::default()).unwrap();
    let parquet = load_parquet(&output, &JsonlFields::default()).unwrap();
    assert_eq!(parquet.len(), jsonl.len());
    for (i, (p, j)) in parquet.iter().zip(&jsonl).enumerate() {
        assert_eq!(p.gold, j.gold, "row {i}");
        assert_eq!(p.data_source, "reasoning_gym/arithmetic");
        // The prompt is one user turn: the question under the paper's suffix.
        assert_eq!(p.chat.len(), 1);
        assert!(p.question.starts_with(j.question.trim_end()) && p.question.contains("\\boxed{}"));
    }
    // A missing input names the file.
    let mut cmd = Command::new(bin("coordinator"));
    cmd.arg("to-verl-parquet")
        .arg(dir.join("nope.jsonl"))
        .arg(dir.join("x.parquet"));
    let (status, out, err) = run_bounded(&mut cmd, Duration::from_secs(60));
    assert!(
        !status.success() && err.contains("nope.jsonl"),
        "{out}{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
