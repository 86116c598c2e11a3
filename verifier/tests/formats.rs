//! The answer formats real models write (issue 22), one test per class: each row is (gold,
//! response, expected reward), positives and the near misses that must not pass.

use laser_verifier::{Grader, GraderConfig};

fn check(class: &str, rows: &[(&str, &str, bool)]) {
    let grader = Grader::new(GraderConfig::default());
    let mut wrong = Vec::new();
    for (gold, response, expected) in rows {
        let g = grader.grade(gold, response);
        if (g.reward == 1) != *expected {
            wrong.push(format!(
                "gold={gold:?} response={response:?} expected={expected} got {:?} (extracted {:?})",
                g.status, g.extracted
            ));
        }
    }
    assert!(wrong.is_empty(), "{class}:\n{}", wrong.join("\n"));
}

#[test]
fn several_answers_in_any_order_and_joined_boxes() {
    check(
        "several answers",
        &[
            (r"(3,2)", r"So $\boxed{(p,q)=(3,2)}$.", true),
            (r"5", r"Therefore $\boxed{x = 5}$.", true),
            (
                r"k=45, n=2",
                r"We get $\boxed{k=45}$ and $\boxed{n=2}$.",
                true,
            ),
            (r"45, 2", r"We get $\boxed{k=45}$ and $\boxed{n=2}$.", true),
            (
                r"(1,2),(3,4)",
                r"The pairs are $\boxed{(3,4),(1,2)}$.",
                true,
            ),
            (
                r"\{(1,2),(3,4)\}",
                r"$\boxed{(3,4)}$ and $\boxed{(1,2)}$",
                true,
            ),
            (r"2, 3", r"The roots are $\boxed{2} \quad \boxed{3}$.", true),
            (r"2, 3", r"The roots are $\boxed{3}$ or $\boxed{2}$.", true),
            (
                r"\frac{1}{2}",
                r"$\boxed{\frac{1}{2}}$ or equivalently $\boxed{0.5}$",
                true,
            ),
            (r"1,2", r"The solutions are $x = 1$ and $x = 2$.", true),
            (r"(1,3)", r"$\boxed{(3,1)}$", false),
            (r"a=2,b=3", r"$\boxed{a=3,b=2}$", false),
            (
                r"2, 3",
                r"The roots are $\boxed{2} \quad \boxed{4}$.",
                false,
            ),
            (r"2", r"$\boxed{2 \text{ and } 3}$", false),
        ],
    );
}

#[test]
fn matrices_intervals_inequalities_and_equations() {
    check(
        "structure",
        &[
            (
                r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
                r"$\boxed{\begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix}}$",
                true,
            ),
            (
                r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
                r"$\boxed{\left[\begin{array}{cc} 1 & 2 \\ 3 & 4 \end{array}\right]}$",
                true,
            ),
            (
                r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
                r"$\boxed{\left[\begin{array}{cc} 1 & 3 \\ 2 & 4 \end{array}\right]}$",
                false,
            ),
            (
                r"[-\frac{3}{2},-1]\cup[1,\frac{3}{2}]",
                r"$\boxed{1 \le |z| \le 3/2}$",
                true,
            ),
            (
                r"[-\frac{3}{2},-1]\cup[1,\frac{3}{2}]",
                r"$\boxed{1 < |z| \le 3/2}$",
                false,
            ),
            (r"(0,1)", r"$\boxed{0<f(x)<1}$", true),
            (r"(0,1)", r"$\boxed{0 \le f(x)<1}$", false),
            (r"[1,2)", r"$\boxed{1\le x<2}$", true),
            (
                r"(-\infty,2)\cup(3,\infty)",
                r"$\boxed{x<2 \text{ or } x>3}$",
                true,
            ),
            (
                r"(-\infty,2)\cup(3,\infty)",
                r"$\boxed{x<2 \text{ or } x\ge 3}$",
                false,
            ),
            (r"x \neq 2", r"$\boxed{x != 2}$", true),
            (r"x \neq 2", r"$\boxed{x \ne 3}$", false),
            (r"y = 2x + 1", r"$\boxed{2x + 1 = y}$", true),
            (r"y = 2x + 1", r"$\boxed{y = 1 + 2x}$", true),
            (r"y = 2x + 1", r"$\boxed{y = 2x - 1}$", false),
        ],
    );
}

#[test]
fn numbers_as_people_write_them() {
    check(
        "numbers",
        &[
            (r"11111", r"$\boxed{11,\!111}$", true),
            (r"14916", r"$\boxed{14{,}916}$", true),
            (r"1000", r"$\boxed{1 000}$", true),
            (r"1000000", r"$\boxed{1 000 000}$", true),
            (r"3.5", r"Die Antwort ist $\boxed{3{,}5}$.", true),
            (r"3.5", r"La réponse finale est 3,5.", true),
            (r"35", r"The answer is 3,5.", false),
            (r"0.25", r"$\boxed{25\%}$", true),
            (r"25", r"$\boxed{25\%}$", true),
            (r"12", r"$\boxed{12 \text{ cm}}$", true),
            (r"12", r"$\boxed{\textbf{12 apples}}$", true),
            (r"12", r"$\boxed{12\textnormal{ meters}}$", true),
            (r"90", r"$\boxed{90 \mathrm{~km} / \mathrm{h}}$", true),
            (r"18", r"$\boxed{\$18}$", true),
            (r"18", r"It costs $\boxed{€18}$.", true),
            (r"19", r"It costs $\boxed{€18}$.", false),
            (r"204_5", r"$\boxed{204_{5}}$", true),
            (r"204_5", r"$\boxed{204}$", true),
            (r"54", r"$\boxed{204_5}$", false),
            (r"204_5", r"$\boxed{204_6}$", false),
            (r"12:00", r"$\boxed{12:00}$", true),
            (r"12:00", r"$\boxed{1:00}$", false),
            (r"1:00", r"$\boxed{13:00}$", false),
            (r"9:30", r"$\boxed{9:03}$", false),
            (r"\frac{3}{2}", r"$\boxed{3:2}$", true),
            (r"6", r"$\boxed{3:2}$", false),
        ],
    );
}

#[test]
fn where_the_answer_is() {
    let long_thought = "Let me think about this step by step. ".repeat(400);
    let after_think = format!(
        "<think>\n{long_thought} 6 times 7 is 42.\n</think>\n\n**Final Answer**\n\\[\n\\boxed{{42}}\n\\]"
    );
    let kept_going = format!(
        "The final answer is $\\boxed{{10}}$.{}",
        "\n\nNote: the answer is 10, since 3 + 7 = 10 and 12 - 2 = 10.".repeat(2000)
    );
    check(
        "where",
        &[
            (r"42", &after_think, true),
            (r"41", &after_think, false),
            (r"10", &kept_going, true),
            (r"42", r"Final Answer: $42$", true),
            (
                r"42",
                "So we get\n\\[\n6 \\times 7 = 42\n\\]\nThat's it.",
                true,
            ),
            (r"\frac{7}{2}", r"Therefore, the answer is 7/2.", true),
            (
                r"7",
                r"<think>3+4=7 so \boxed{7}</think> Final: \boxed{8}",
                false,
            ),
            (
                r"\frac{\pi}{4}",
                r"$\boxed{\frac{\pi}{4} \approx 0.785}$",
                true,
            ),
            (r"\frac{1}{2}", "Thus $\\frac{1}\n{2}$", false),
        ],
    );
}

#[test]
fn different_expressions_never_grade_equal() {
    check(
        "no false positives",
        &[
            (r"1+\frac{1}{e}", r"$\boxed{1-\frac{1}{e}}$", false),
            (r"\frac{e-1}{e}", r"$\boxed{1-\frac{1}{e}}$", true),
            (
                r"\sum_{k=2}^{n} k^2",
                r"$\boxed{\sum_{k=1}^{n} k^2}$",
                false,
            ),
            (r"\sum_{k=1}^{n} k", r"$\boxed{\sum_{k=0}^{n} k}$", true),
            (r"\frac{n(n+1)}{2}", r"$\boxed{\sum_{k=1}^{n} k}$", true),
            (r"\frac{n(n-1)}{2}", r"$\boxed{\sum_{k=1}^{n} k}$", false),
            (r"55", r"$\boxed{\sum_{k=1}^{10} k}$", true),
            (r"3628800", r"$\boxed{\prod_{k=1}^{10} k}$", true),
            (r"\frac{n(n+1)}{2}", r"$\boxed{\binom{n+1}{2}}$", true),
            (r"\frac{n(n+1)}{2}", r"$\boxed{\binom{n}{2}}$", false),
            (
                r"x^2-1",
                r"The expression simplifies to $(x-1)(x+1)$.",
                true,
            ),
            (
                r"x^2+1",
                r"The expression simplifies to $(x-1)(x+1)$.",
                false,
            ),
            (r"\frac{\sqrt{2}}{2}", r"$\boxed{\frac{1}{\sqrt{2}}}$", true),
            (
                r"\frac{\sqrt{3}}{2}",
                r"$\boxed{\frac{1}{\sqrt{2}}}$",
                false,
            ),
            (r"2\sqrt{2}", r"$\boxed{\sqrt{8}}$", true),
            (r"\frac{1}{3}", r"$\boxed{0.33}$", false),
        ],
    );
}
