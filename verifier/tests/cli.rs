//! Runs the `verifier` binary.

use std::io::Write;
use std::process::{Command, Stdio};

fn verifier() -> Command {
    Command::new(env!("CARGO_BIN_EXE_verifier"))
}

#[test]
fn single_grade_as_json() {
    let out = verifier()
        .args([
            "grade",
            "--gold",
            "\\frac{1}{2}",
            "--answer",
            "so \\boxed{0.5}",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"reward": 1, "status": "correct", "extracted": "0.5"})
    );
    // Negative numbers are values, not flags.
    let out = verifier()
        .args(["grade", "--gold", "-4", "--answer", "-5"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("reward=0 status=incorrect"));
}

#[test]
fn batch_keeps_order_and_reports_bad_lines() {
    let input = concat!(
        "{\"gold\": \"7\", \"answer\": \"\\\\boxed{7}\"}\n",
        "not json\n",
        "{\"gold\": \"7\", \"answer\": \"I give up\"}\n",
        "{\"gold\": \"7\"}\n",
        "{\"gold\": \"x^2\", \"answer\": \"$x \\\\cdot x$\"}\n",
    );
    let mut child = verifier()
        .args(["grade", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // Bad lines make the exit status non-zero, after every line was answered.
    assert!(!out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(
        lines[0],
        serde_json::json!({"reward": 1, "status": "correct", "extracted": "7"})
    );
    assert_eq!(lines[1]["line"], 2);
    assert!(
        lines[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("line 2: invalid input")
    );
    assert_eq!(
        lines[2],
        serde_json::json!({"reward": 0, "status": "no_answer", "extracted": null})
    );
    assert_eq!(lines[3]["line"], 4);
    assert!(
        lines[3]["error"].as_str().unwrap().contains("answer"),
        "{}",
        lines[3]
    );
    assert_eq!(lines[4]["reward"], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2:") && stderr.contains("line 4:"),
        "{stderr}"
    );
}

#[test]
fn tasks_command_prints_prompts() {
    let out = verifier()
        .args([
            "tasks",
            "synthetic",
            "--n",
            "3",
            "--seed",
            "5",
            "--template",
            "chat",
            "--system",
            "Be brief.",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["prompt"][0]["role"], "system");
    assert!(
        lines[0]["prompt"][1]["content"]
            .as_str()
            .unwrap()
            .ends_with("within \\boxed{}.")
    );
}
