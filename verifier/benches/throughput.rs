//! Grading throughput on one core for a realistic mix of responses.
//!
//! Run: `taskset -c 0 cargo bench -p laser-verifier --bench throughput`. Prints a table; asserts
//! nothing. `-- --dump-mix FILE` also writes the mix as JSONL `{"gold", "answer"}` so
//! `scripts/verifier_bench_mathverify.py` can time math-verify on exactly the same responses.
//! A second table times each adversarial input of issue 4 through the bounded grader.

use laser_verifier::budget::Deadline;
use laser_verifier::{Grader, GraderConfig, grade_inline};
use std::time::{Duration, Instant};

/// ~1.5 KB of chain-of-thought, like a real policy sample, before the final answer.
fn reasoning(seed: usize) -> String {
    let mut s = String::new();
    for k in 0..12 {
        s.push_str(&format!(
            "Step {k}: we have {a} + {b} = {c}, and multiplying by $\\frac{{{a}}}{{{b}}}$ gives a new value. ",
            a = seed + k,
            b = k + 3,
            c = seed + 2 * k + 3
        ));
    }
    s
}

fn mix() -> Vec<(&'static str, String, String)> {
    let mut v = Vec::new();
    for i in 0..40 {
        let r = reasoning(i);
        v.push((
            "integer",
            format!("{}", 100 + i),
            format!("{r} So the answer is $\\boxed{{{}}}$.", 100 + i),
        ));
        v.push((
            "fraction",
            "\\frac{3}{4}".into(),
            format!("{r} Therefore \\boxed{{0.75}}."),
        ));
        v.push((
            "wrong",
            format!("{}", 7 + i),
            format!("{r} Thus \\boxed{{{}}}.", 8 + i),
        ));
        v.push((
            "symbolic",
            "x^2+2x+1".into(),
            format!("{r} Simplifying, \\boxed{{(x+1)^2}}"),
        ));
        v.push((
            "radical",
            "\\frac{\\sqrt{2}}{2}".into(),
            format!("{r} Hence $\\boxed{{\\frac{{1}}{{\\sqrt{{2}}}}}}$."),
        ));
        v.push((
            "set",
            "\\{1,-3\\}".into(),
            format!("{r} The roots are $x=1$ and $x=-3$, so \\boxed{{-3, 1}}."),
        ));
        v.push((
            "interval",
            "(-\\infty,2]".into(),
            format!("{r} So $x \\in \\boxed{{\\left(-\\infty, 2\\right]}}$."),
        ));
        v.push((
            "gsm8k",
            format!("Total is 4*{i} = {}\n#### {}", 4 * i, 4 * i),
            format!("{r} The answer is {}.", 4 * i),
        ));
        v.push((
            "no_answer",
            "5".into(),
            "I am not able to solve this problem with the given information.".into(),
        ));
    }
    v
}

fn dump_mix(path: &str, cases: &[(&str, String, String)]) {
    let mut text = String::new();
    for (_, gold, answer) in cases {
        let line = serde_json::json!({ "gold": gold, "answer": answer });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("--dump-mix {path}: {e}");
        std::process::exit(2);
    }
    println!("wrote the mix to {path}");
}

/// The adversarial inputs of issue 4, as (name, gold, response).
fn adversarial() -> Vec<(&'static str, String, String)> {
    let digits: String = (0..100_000)
        .map(|i| char::from(b'1' + (i % 9) as u8))
        .collect();
    vec![
        (
            "10 MB answer",
            "42".into(),
            format!("{} so \\boxed{{42}}", "step ".repeat(2 * 1024 * 1024)),
        ),
        (
            "10^{10^{10^{10}}}",
            "10^{10^{10^{10}}}".into(),
            "\\boxed{10^{10^{10^{10}}}}".into(),
        ),
        (
            "\\frac x10000 deep",
            "1".into(),
            format!(
                "\\boxed{{{}1{}}}",
                "\\frac{".repeat(10_000),
                "}{2}".repeat(10_000)
            ),
        ),
        (
            "100k-digit number",
            digits.clone(),
            format!("\\boxed{{{digits}}}"),
        ),
        (
            "unbalanced braces",
            "\\frac{1}{2}".into(),
            format!("\\boxed{{\\frac{{1}}{{2}}{}", "}{".repeat(50_000)),
        ),
        (
            "\\boxed no close",
            "42".into(),
            format!("\\boxed{{{}", "{".repeat(50_000)),
        ),
    ]
}

fn main() {
    let cases = mix();
    let args: Vec<String> = std::env::args().collect();
    if let Some(k) = args.iter().position(|a| a == "--dump-mix") {
        match args.get(k + 1) {
            Some(path) => dump_mix(path, &cases),
            None => {
                eprintln!("--dump-mix needs a file path");
                std::process::exit(2);
            }
        }
    }
    let config = GraderConfig::default();
    let rounds = 20;
    println!(
        "laser-verifier grading throughput ({} responses x {rounds} rounds, one core)",
        cases.len()
    );
    println!("{:<12} {:>10} {:>14}", "category", "answers", "answers/s");
    let mut per_cat: Vec<(&str, Duration, usize)> = Vec::new();
    // Inline grading: the work itself, on this thread.
    let total_start = Instant::now();
    for _ in 0..rounds {
        for (cat, gold, resp) in &cases {
            let t = Instant::now();
            let g = grade_inline(&config, gold, resp, Deadline::after(config.budget));
            std::hint::black_box(g);
            let dt = t.elapsed();
            match per_cat.iter_mut().find(|(c, _, _)| c == cat) {
                Some(e) => {
                    e.1 += dt;
                    e.2 += 1;
                }
                None => per_cat.push((cat, dt, 1)),
            }
        }
    }
    let inline_total = total_start.elapsed();
    for (cat, dt, n) in &per_cat {
        println!("{cat:<12} {n:>10} {:>14.0}", *n as f64 / dt.as_secs_f64());
    }
    let n = cases.len() * rounds;
    println!(
        "{:<12} {n:>10} {:>14.0}",
        "mix (inline)",
        n as f64 / inline_total.as_secs_f64()
    );
    // Through Grader::grade: adds the hand-off to the deadline-enforcing worker thread.
    let grader = Grader::new(config);
    let t = Instant::now();
    for _ in 0..rounds {
        for (_, gold, resp) in &cases {
            std::hint::black_box(grader.grade(gold, resp));
        }
    }
    println!(
        "{:<12} {n:>10} {:>14.0}",
        "mix (Grader)",
        n as f64 / t.elapsed().as_secs_f64()
    );
    // grade_batch: one lane per core this process may use (1 under `taskset -c 0`).
    let pairs: Vec<(&str, &str)> = cases
        .iter()
        .map(|(_, g, r)| (g.as_str(), r.as_str()))
        .collect();
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(grader.grade_batch(&pairs));
    }
    println!(
        "{:<12} {n:>10} {:>14.0}   ({} lanes)",
        "mix (batch)",
        n as f64 / t.elapsed().as_secs_f64(),
        grader.parallelism()
    );

    println!();
    println!("adversarial inputs (Grader::grade, 2 s budget)");
    println!("{:<20} {:>12} {:>10}  status", "input", "bytes", "ms");
    for (name, gold, resp) in adversarial() {
        let t = Instant::now();
        let g = grader.grade(&gold, &resp);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!("{name:<20} {:>12} {ms:>10.1}  {:?}", resp.len(), g.status);
    }
}
