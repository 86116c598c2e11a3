//! Grading throughput on one core for a realistic mix of responses.
//!
//! Run: `cargo bench -p laser-verifier --bench throughput`. Prints a table; asserts nothing.

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

fn main() {
    let cases = mix();
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
}
