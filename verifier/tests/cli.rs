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

#[test]
fn large_parallel_batch_stays_in_order() {
    let mut input = String::new();
    for k in 0..300 {
        // Odd lines are wrong by one; every line's extracted answer names its own index.
        let answer = if k % 2 == 0 { k } else { k + 1 };
        input.push_str(&serde_json::json!({"gold": k.to_string(), "answer": format!("so \\boxed{{{answer}}}")}).to_string());
        input.push('\n');
    }
    let mut child = verifier()
        .args(["grade", "--batch", "--parallelism", "3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 300);
    for (k, g) in lines.iter().enumerate() {
        let answer = if k % 2 == 0 { k } else { k + 1 };
        assert_eq!(g["extracted"], answer.to_string(), "line {}", k + 1);
        assert_eq!(g["reward"], u8::from(k % 2 == 0), "line {}", k + 1);
    }
}

#[test]
fn percent_flag_changes_the_verdict() {
    let run = |extra: &[&str]| {
        let out = verifier()
            .args([
                "grade",
                "--gold",
                "50\\%",
                "--answer",
                "\\boxed{0.5}",
                "--json",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["status"].clone()
    };
    assert_eq!(run(&[]), "correct");
    assert_eq!(run(&["--no-percent-decimal"]), "incorrect");
    // Bad settings are refused with the flag's name.
    let out = verifier()
        .args(["grade", "--gold", "1", "--answer", "1", "--rel-tol", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rel-tol"));
}
