#!/usr/bin/env python3
"""Writes verifier/tests/corpus.jsonl: the evaluation corpus for laser-verifier (issue 22).

Each row is a (gold, response) pair in the style that real models (Qwen2.5-Math, Qwen3, DeepSeek-R1
distills, SmolLM2) write for MATH, OlympiadBench, DeepMath and GSM8K-like problems, with
    {"id", "source", "category", "gold", "pred", "human", "mv"}
`source` is handwritten | reasoning_gym | smollm2; `human` is what a careful human grader says (is the
response's final answer equal to the gold?); `mv` is math-verify 0.9's verdict, computed here with the
same call scripts/verifier_agreement.py makes (never written by hand). Every case is our own.

Categories follow the classes of issue 22: several_answers, structure, numbers, where, no_false_positives,
symbolic, plain.

Run with the math-verify environment (deterministic: a fixed seed, no clock, no network):
    ~/.cache/laser-mv/bin/python scripts/verifier_corpus.py
Refresh the cached reasoning-gym problems (verifier/tests/corpus_rg_problems.json), only when the draw
changes, with the reasoning-gym environment (see scripts/gen_reasoning_gym.py):
    ~/.cache/laser-rg/bin/python scripts/verifier_corpus.py --refresh-rg
SmolLM2 rows are read from verifier/tests/corpus_smollm2.jsonl when that file exists: SmolLM2-135M-Instruct
(scripts/fetch_smollm2.sh) sampled with `actor generate --chat --temperature 0.7 --max-new-tokens 256`, and
each response labelled by reading it. Resample (then set every "human" label again by reading) with
    ~/.cache/laser-mv/bin/python scripts/verifier_corpus.py --sample-smollm2 \
        $CARGO_TARGET_DIR/release/actor "$(scripts/fetch_smollm2.sh)"
Agreement of laser-verifier with the corpus: scripts/verifier_agreement.py --cases verifier/tests/corpus.jsonl.
"""
import argparse
import json
import math
import pathlib
import random
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTS = ROOT / "verifier" / "tests"
RG_CACHE = TESTS / "corpus_rg_problems.json"
SMOL = TESTS / "corpus_smollm2.jsonl"
OUT = TESTS / "corpus.jsonl"
SEED = 22
sys.path.insert(0, str(ROOT / "scripts"))
from gen_reasoning_gym import exact_value  # noqa: E402  (stdlib only)
T, F = True, False

# ---------------------------------------------------------------------------------------------------
# Response styles. A chain of thought (neutral steps that never state a final answer) and a closing in
# one of the shapes models write. `{a}` is the answer as the model writes it.
# ---------------------------------------------------------------------------------------------------
STEPS = [
    "Let me restate the problem to make sure I understand what is being asked.",
    "First, we collect the given quantities and write down what we need to find.",
    "We substitute the values into the expression and simplify step by step.",
    "Multiplying both sides by the common denominator gives an equation without fractions.",
    r"Note that $(a+b)^2 = a^2 + 2ab + b^2$, which we use to expand the square.",
    r"Checking a small case: for $n = 1$ the formula gives $1$, which matches.",
    "Now we simplify the resulting expression, combining like terms.",
    r"Since the discriminant $\Delta = b^2 - 4ac$ is positive here, there are two real roots.",
    "We should double-check the arithmetic in the previous step.",
    "By symmetry, it suffices to consider the first case; the other follows in the same way.",
    r"Using $\sin^2\theta + \cos^2\theta = 1$, the expression reduces considerably.",
    "Putting everything together, we can now read off the result.",
    "Let's verify this by plugging it back into the original condition.",
    "The constraint rules out the negative solution, since lengths are positive.",
]
THINK = [
    "Okay, so I need to figure this out. Let me start by reading the problem again carefully.",
    "Hmm, maybe I should try a different approach. What if I set up an equation first?",
    "Wait, that doesn't look right. Let me redo that computation more carefully.",
    "Alternatively, I could check the answer numerically to be safe.",
    "Let me think about the edge cases. If the variable is zero, the expression is undefined, so skip it.",
    "So the key step is the substitution. Let me write it out in full.",
    "Yeah, that seems consistent. Let me just double-check once more.",
    "Actually, I think I made a sign mistake earlier; fixing it now.",
]


def cot(rng, n=None):
    n = n if n is not None else rng.randint(3, 7)
    return "\n\n".join(f"Step {i + 1}: {rng.choice(STEPS)}" for i in range(n))


def think(rng, n=None):
    n = n if n is not None else rng.randint(4, 9)
    return "<think>\n" + "\n\n".join(rng.choice(THINK) for _ in range(n)) + "\n</think>\n\n"


STYLES = {
    "qwen_boxed": lambda rng, a: f"{cot(rng)}\n\nTherefore, the final answer is $\\boxed{{{a}}}$.",
    "qwen_paren": lambda rng, a: f"{cot(rng)}\n\nThus, the answer is \\(\\boxed{{{a}}}\\).",
    "final_block": lambda rng, a: f"{cot(rng)}\n\n**Final Answer**\n\\[\n\\boxed{{{a}}}\n\\]",
    "qwen3_block": lambda rng, a: f"{cot(rng)}\n\n### Final Answer\n$$\n\\boxed{{{a}}}\n$$",
    "minerva": lambda rng, a: f"{cot(rng)}\n\nFinal Answer: The final answer is ${a}$. I hope it is correct.",
    "r1_think": lambda rng, a: f"{think(rng)}{cot(rng, 3)}\n\n**Final Answer**\n\\[\n\\boxed{{{a}}}\n\\]",
    "r1_answer": lambda rng, a: f"{think(rng)}The answer is $\\boxed{{{a}}}$.",
}
BOXED_STYLES = [s for s in STYLES if s != "minerva"]


def styled(rng, a, n=2, boxed_only=False):
    """n responses for the answer `a`, each in a different style (drawn with rng)."""
    names = rng.sample(BOXED_STYLES if boxed_only else list(STYLES), n)
    return [STYLES[s](rng, a) for s in names]


# ---------------------------------------------------------------------------------------------------
# Handwritten cases. `A` entries are answers (wrapped in 2 styles each); `R` entries are whole responses
# (kept as written, with a chain of thought in front unless they start with "<think>" or "!").
# ---------------------------------------------------------------------------------------------------
def A(gold, ans, human, boxed_only=False, n=2):
    return ("A", gold, ans, human, boxed_only, n)


def R(gold, resp, human):
    return ("R", gold, resp, human, False, 1)


HAND = {
    "several_answers": [
        A(r"(3,2)", r"(p,q)=(3,2)", T, True),
        A(r"(3,2)", r"(3, 2)", T),
        A(r"(3,2)", r"(2,3)", F),
        A(r"$(3,2)$", r"p = 3, q = 2", T, True),
        A(r"(2,3)", r"(p,q)=(3,2)", F, True),
        A(r"5", r"x = 5", T),
        A(r"5", r"x = -5", F),
        A(r"$x=2$", r"2", T),
        A(r"$x=2$", r"x = 3", F),
        A(r"\{1, 3\}", r"\{3, 1\}", T),
        A(r"\{1, 3\}", r"1, 3", T),
        A(r"\{1, 3\}", r"1, 2, 3", F),
        A(r"\{1, 3\}", r"1", F),
        A(r"(1,2),(3,4)", r"(3,4),(1,2)", T),
        A(r"(1,2),(3,4)", r"(3,4),(2,1)", F),
        A(r"(1, 2), (2, 1)", r"(2,1), (1,2)", T),
        A(r"(1, 2), (2, 1)", r"(1,2)", F),
        A(r"(0,0),(1,1),(-1,1)", r"(x,y) \in \{(1,1),(0,0),(-1,1)\}", T, True),
        A(r"-2, 5", r"x = 5 \text{ or } x = -2", T, True),
        A(r"-2, 5", r"x = 5 \text{ or } x = 2", F, True),
        A(r"2, -\frac{1}{3}", r"-\frac{1}{3}, 2", T),
        A(r"2, -\frac{1}{3}", r"\frac{1}{3}, 2", F),
        A(r"1 \pm \sqrt{2}", r"1+\sqrt{2}, 1-\sqrt{2}", T, True),
        A(r"(1, -2, 3)", r"(1, -2, 3)", T),
        A(r"(1, -2, 3)", r"(3, -2, 1)", F),
        A(r"(a, b, c) = (1, 2, 3)", r"(1,2,3)", T),
        A(r"\{(2,3),(3,2)\}", r"\{(3,2),(2,3)\}", T),
        A(r"\{(2,3),(3,2)\}", r"\{(2,3)\}", F),
        R(r"k = 45, n = 2", r"So $k=\boxed{45}$ and $n=\boxed{2}$.", T),
        R(r"k = 45, n = 2", r"So $k=\boxed{45}$ and $n=\boxed{3}$.", F),
        R(r"45, 2", r"The values are $\boxed{45}$ and $\boxed{2}$.", T),
        R(r"\{1, 3\}", r"The solutions are $\boxed{3}$ and $\boxed{1}$.", T),
        R(r"\{1, 3\}", "The solutions are\n\\[\n\\boxed{1} \\quad \\boxed{3}\n\\]", T),
        R(r"\{1, 3\}", r"Hence $x = \boxed{1}$ or $x = \boxed{3}$.", T),
        R(r"\{1, 3\}", r"Hence $x = \boxed{1}$ or $x = \boxed{4}$.", F),
        R(r"\{1, 3\}", r"The roots are $\boxed{1}, \boxed{3}$.", T),
        R(r"(1,2),(3,4)", r"The pairs are $\boxed{(3,4)}$ and $\boxed{(1,2)}$.", T),
        R(r"(1,2),(3,4)", r"The pairs are $\boxed{(3,4)}$ and $\boxed{(2,1)}$.", F),
        R(r"-1, 2, 4", r"All real roots: $\boxed{4}, \boxed{-1}, \boxed{2}$.", T),
        R(r"-1, 2, 4", r"All real roots: $\boxed{4}, \boxed{-1}$.", F),
        R(r"(3,2)", r"Therefore $p = \boxed{3}$ and $q = \boxed{2}$.", T),
        R(r"0, 1", r"Therefore $f(0) = \boxed{0}$, and the other value is $\boxed{1}$.", T),
    ],
    "structure": [
        A(r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix}", T),
        A(r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\left[\begin{array}{cc} 1 & 2 \\ 3 & 4 \end{array}\right]", T),
        A(r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{pmatrix} 1 & 3 \\ 2 & 4 \end{pmatrix}", F),
        A(r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{pmatrix} 1 & 2 \\ 3 & 5 \end{pmatrix}", F),
        A(r"\begin{pmatrix} 2 \\ -1 \end{pmatrix}", r"\begin{pmatrix} 2 \\ -1 \end{pmatrix}", T),
        A(r"\begin{pmatrix} 2 \\ -1 \end{pmatrix}", r"\begin{bmatrix} 2 \\ -1 \end{bmatrix}", T),
        A(r"\begin{pmatrix} 2 \\ -1 \end{pmatrix}", r"\begin{pmatrix} -1 \\ 2 \end{pmatrix}", F),
        A(r"\begin{pmatrix} \frac{1}{2} & 0 \\ 0 & 2 \end{pmatrix}", r"\begin{pmatrix} 0.5 & 0 \\ 0 & 2 \end{pmatrix}", T),
        A(r"\begin{pmatrix} -3 \\ 6 \\ 1 \end{pmatrix}", r"\left[ \begin{array}{c} -3 \\ 6 \\ 1 \end{array} \right]", T),
        A(r"\begin{pmatrix} -3 \\ 6 \\ 1 \end{pmatrix}", r"\left[ \begin{array}{c} -3 \\ 6 \\ -1 \end{array} \right]", F),
        A(r"[-\frac{3}{2}, -1] \cup [1, \frac{3}{2}]", r"[1, \tfrac{3}{2}] \cup [-\tfrac{3}{2}, -1]", T),
        A(r"[-\frac{3}{2}, -1] \cup [1, \frac{3}{2}]", r"[-\frac{3}{2}, -1) \cup (1, \frac{3}{2}]", F),
        A(r"[-\frac{3}{2}, -1] \cup [1, \frac{3}{2}]", r"1 \le |z| \le \frac{3}{2}", T, True),
        A(r"[-\frac{3}{2}, -1] \cup [1, \frac{3}{2}]", r"1 < |z| \le \frac{3}{2}", F, True),
        A(r"(0,1)", r"0 < f(x) < 1", T, True),
        A(r"(0,1)", r"0 \le f(x) < 1", F, True),
        A(r"(0,1)", r"(0, 1)", T),
        A(r"(0,1)", r"[0, 1]", F),
        A(r"[1,3]", r"1 \le x \le 3", T),
        A(r"[1,3]", r"1 < x \le 3", F),
        A(r"[1,3]", r"x \in [1, 3]", T),
        A(r"(-\infty, 2]", r"x \le 2", T),
        A(r"(-\infty, 2]", r"x < 2", F),
        A(r"x \le 2", r"(-\infty, 2]", T),
        A(r"(-\infty,0)\cup(1,\infty)", r"(1,\infty)\cup(-\infty,0)", T),
        A(r"(-\infty,0)\cup(1,\infty)", r"x < 0 \text{ or } x > 1", T, True),
        A(r"(-\infty,0)\cup(1,\infty)", r"(-\infty,0]\cup(1,\infty)", F),
        A(r"(-\infty, -3) \cup (3, \infty)", r"|x| > 3", T, True),
        A(r"x \neq 2", r"x != 2", T, True),
        A(r"x \neq 2", r"x \ne 2", T, True),
        A(r"x \neq 2", r"x \neq -2", F, True),
        A(r"x \neq 2", r"x = 2", F, True),
        A(r"y = 2x + 1", r"y = 1 + 2x", T),
        A(r"y = 2x + 1", r"y = 2x - 1", F),
        A(r"y = 2x + 1", r"2x - y + 1 = 0", T, True),
        A(r"x^2 + y^2 = 25", r"y^2 + x^2 = 25", T),
        A(r"x^2 + y^2 = 25", r"x^2 + y^2 = 5", F),
        A(r"x^2 + y^2 = 25", r"(x-0)^2 + (y-0)^2 = 5^2", T, True),
        A(r"y = -\frac{1}{2}x + 3", r"y = -0.5x + 3", T),
        A(r"y = -\frac{1}{2}x + 3", r"y = \frac{1}{2}x + 3", F),
    ],
    "numbers": [
        A(r"11111", r"11,\!111", T),
        A(r"11111", r"11{,}111", T),
        A(r"11111", r"11,\!110", F),
        A(r"14916", r"14{,}916", T),
        A(r"14916", r"14{,}961", F),
        A(r"1000", r"1 000", T, True),
        A(r"1000", r"1\,000", T, True),
        A(r"1000", r"1,000", T),
        A(r"1000000", r"1,000,000", T),
        A(r"1000000", r"100,000", F),
        A(r"1250", r"\$1,250", T),
        A(r"\$1{,}250", r"1250", T),
        A(r"18.90", r"\$18.90", T),
        A(r"18.9", r"\$18.90", T),
        A(r"18.9", r"\$19.80", F),
        A(r"5", r"\$5", T),
        A(r"12", r"12 \text{ cm}", T),
        A(r"12", r"12\textbf{ cm}", T),
        A(r"12", r"12\textnormal{ cm}", T),
        A(r"12", r"12 \mathrm{~cm}", T),
        A(r"12", r"12 \text{ apples}", T),
        A(r"12", r"13 \text{ apples}", F),
        A(r"12", r"12 \text{ cm}^2", T),
        A(r"60", r"60 \text{ km/h}", T),
        A(r"60", r"16 \text{ km/h}", F),
        A(r"10\%", r"10\%", T),
        A(r"10\%", r"0.1", T),
        A(r"10\%", r"10", T),
        A(r"0.1", r"10\%", T),
        A(r"25\%", r"\frac{1}{4}", T),
        A(r"25\%", r"20\%", F),
        A(r"204_5", r"204_5", T),
        A(r"204_5", r"204_{5}", T),
        A(r"204_5", r"204_6", F),
        A(r"204_5", r"240_5", F),
        A(r"1101_2", r"1011_2", F),
        A(r"1101_2", r"1101_2", T),
        A(r"12:00", r"12:00", T),
        A(r"12:00", r"1:00", F),
        A(r"\text{9:30}", r"9:30 \text{ a.m.}", T),
        A(r"9:30", r"9:45", F),
        A(r"3:2", r"\frac{3}{2}", T),
        A(r"3:2", r"6:4", T),
        A(r"3:2", r"2:3", F),
        A(r"9:30", r"3:10", F),
        A(r"2:30", r"1:15", F),
        A(r"10:20", r"1:2", F, True),
        A(r"4:00", r"4:00", T),
        A(r"4:00", r"8:00", F),
        A(r"6:45", r"6:45 \text{ p.m.}", T, True),
        A(r"12", r"€12", T, True),
        A(r"12", r"12\text{€}", T, True),
        A(r"5", r"\pounds 5", T, True),
        A(r"1234.5", r"1\,234.5", T, True),
        A(r"1234.5", r"1,234.50", T),
        A(r"1234.5", r"1,243.50", F),
        A(r"30", r"30^\circ", T),
        A(r"30^\circ", r"30^{\circ}", T),
        A(r"30^\circ", r"60^\circ", F),
        A(r"12", r"\textbf{12}", T, True),
        A(r"12", r"12\,\mathrm{m}^2", T, True),
        R(r"3.5", "!Die Strecke betr\u00e4gt also 7 km, und die H\u00e4lfte davon ist 3,5 km.\n\nDie Antwort ist 3,5.", T),
        R(r"3.5", "!Wir teilen 7 durch 2.\n\nDie Antwort lautet $\\boxed{3,5}$.", T),
        R(r"2.25", "!On a donc $x = 2,25$.\n\nLa r\u00e9ponse est $\\boxed{2{,}25}$.", T),
        R(r"2.25", "!On a donc $x = 2,52$.\n\nLa r\u00e9ponse est $\\boxed{2{,}52}$.", F),
        R(r"0.75", "!Por lo tanto, la probabilidad es 0,75.\n\nLa respuesta es $0,75$.", T),
        R(r"0.75", "!Por lo tanto, la probabilidad es 0,57.\n\nLa respuesta es 0,57.", F),
    ],
    "where": [
        R(r"7", "!We add 3 and 4.\n\nFinal Answer: 7", T),
        R(r"7", "!We add 3 and 4.\n\nFinal Answer: $7$", T),
        R(r"7", "!We add 3 and 4.\n\nFinal Answer: 8", F),
        R(r"7", "!Adding, the answer is 7.", T),
        R(r"7", "!Adding, the answer is 6.", F),
        R(r"\frac{3}{4}", "!Dividing, we get the probability.\n\nAnswer: $\\frac{3}{4}$", T),
        R(r"\frac{3}{4}", "!Dividing, we get the probability.\n\n**Answer:** 3/4", T),
        R(r"\frac{3}{4}", "!Dividing, we get the probability.\n\n**Answer:** 4/3", F),
        R(r"7", "We compute the sum.\n\\[\n3 + 4 = 7\n\\]", T),
        R(r"7", "We compute the sum, which gives\n\\[\nx = 7\n\\]", T),
        R(r"7", "We compute the sum, which gives\n\\[\nx = 9\n\\]", F),
        R(r"2\sqrt{2}", "So the distance is\n$$\nd = \\sqrt{8} = 2\\sqrt{2}.\n$$", T),
        R(r"2\sqrt{2}", "So the distance is\n$$\nd = \\sqrt{8} = 2\\sqrt{3}.\n$$", F),
        R(r"7", "<think>\nLet me first try: it might be \\boxed{6}... no wait, 3 + 4 is 7.\n</think>\n\nThe answer is 7.", T),
        R(r"7", "<think>\nMaybe 6? Let me recount: 3 + 4 = 7.\n</think>\n\nSo \\boxed{7}", T),
        R(r"7", "<think>\nMaybe 7? Let me recount: 3 + 3 = 6.\n</think>\n\nSo \\boxed{6}", F),
        R(r"7", "!\\boxed{7}\n\n**Note:** the answer above is \\boxed{7}." + " Note: the answer is 7." * 40, T),
        R(r"7", "!\\boxed{8}\n\n**Note:** the answer above is \\boxed{8}." + " Note: the answer is 8." * 40, F),
        R(r"12", "The total is $\\boxed{12}$.\n\n**Final Answer**\n\\[\n\\boxed{12}\n\\]\n\n**Final Answer**\n\\[\n\\boxed{12}\n\\]" * 6, T),
        R(r"12", "The total is $\\boxed{12}$.\n\nWait, I double-check: 5 + 7 = 12, and 12 - 3 = 9 is not asked. So the answer stays 12.", T),
        R(r"12", "An intermediate result is $\\boxed{9}$, and after adding 3 we get the final answer $\\boxed{12}$.", T),
        R(r"12", "We first thought it was $\\boxed{12}$, but correcting the error the final answer is $\\boxed{13}$.", F),
        R(r"42", "The answer is 42.\n\nExplanation: there were 40 at first and 2 more came, so 40 + 2 = 42. The numbers 40 and 2 are the inputs.", T),
        R(r"42", "!#### 42", T),
        R(r"42", "Janet has 40 eggs and buys 2 more.\n#### 42", T),
        R(r"42", "Janet has 40 eggs and buys 3 more.\n#### 43", F),
        R(r"\frac{1}{2}", "The final answer is $\\frac{1}{2}$. I hope it is correct.", T),
        R(r"\frac{1}{2}", "The final answer is $\\frac{1}{3}$. I hope it is correct.", F),
        R(r"\frac{1}{2}", "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.\n\nProblem: Compute the next one.\nSolution: The final answer is $\\frac{1}{2}$. I hope it is correct.", T),
        R(r"5", "Let $n$ be the number of coins. The equations give $n = 5$, which is the answer.", T),
        R(r"5", "Let $n$ be the number of coins. Unfortunately, the computation was cut off before", F),
        R(r"x=2", "<think>\nx = 3? no, plugging in fails.\n</think>\n\nSo $x = 2$.", T),
        R(r"x=2", "<think>\nx = 2? no, plugging in fails.\n</think>\n\nSo $x = 3$.", F),
        R(r"\text{(C)}", "!Comparing the options, only one works.\n\nThe answer is $\\boxed{\\textbf{(C)}}$.", T),
        R(r"\text{(C)}", "!Comparing the options, only one works.\n\nThe answer is $\\boxed{C}$.", T),
        R(r"\text{(C)}", "!Comparing the options, only one works.\n\nThe answer is $\\boxed{D}$.", F),
        R(r"\text{(C)}", "!Comparing the options, only one works.\n\nThe answer is (C).", T),
        R(r"3", "So $x = 3$.\n\nThat's it. Let me note that earlier we saw $x = 7$ is impossible.", T),
        R(r"3", "So $x = 3$ is the answer, and $4$ was not.", T),
        R(r"3", "So $x = 4$ is the answer, and $3$ was not.", F),
        R(r"3", "We found\n\\[\nx = 3\n\\]\nand, for the record,\n\\[\ny = 4\n\\]", T),
        R(r"3", "!The answer is **3**.", T),
        R(r"3", "!**Answer: 3**", T),
        R(r"3", "!**Answer: 5**", F),
        R(r"\text{Monday}", "!Counting 15 days forward from Saturday, the answer is $\\boxed{\\text{Monday}}$.", T),
        R(r"\text{Monday}", "!Counting 15 days forward from Saturday, the answer is $\\boxed{\\text{Tuesday}}$.", F),
    ],
    "no_false_positives": [
        A(r"\sum_{k=1}^{n} k^2", r"\sum_{k=1}^{n} k^2", T),
        A(r"\sum_{k=1}^{n} k^2", r"\sum_{k=2}^{n} k^2", F),
        A(r"\sum_{k=1}^{n} k^2", r"\sum_{k=1}^{n-1} k^2", F),
        A(r"\sum_{k=1}^{10} k", r"\sum_{k=1}^{11} k", F),
        A(r"\sum_{k=1}^{10} k", r"55", T),
        A(r"\sum_{k=1}^{n} k^2", r"\frac{n(n+1)(2n+1)}{6}", T),
        A(r"1+\frac{1}{e}", r"1-\frac{1}{e}", F),
        A(r"1-\frac{1}{e}", r"\frac{e-1}{e}", T),
        A(r"1+\frac{1}{e}", r"1+e", F),
        A(r"-\frac{3}{4}", r"\frac{3}{4}", F),
        A(r"-\frac{3}{4}", r"-0.75", T),
        A(r"3 - \sqrt{5}", r"\sqrt{5} - 3", F),
        A(r"x^2 - 4", r"4 - x^2", F),
        A(r"(3,-1)", r"(-1,3)", F),
        A(r"(3,-1)", r"(3,1)", F),
        A(r"\frac{\sqrt{2}}{2}", r"\sqrt{2}", F),
        A(r"\frac{1}{3}", r"0.333", F),
        A(r"\frac{1}{3}", r"0.3333", F),
        A(r"2^{10}", r"2^{11}", F),
        A(r"2^{10}", r"1024", T),
        A(r"e^{-x}", r"e^{x}", F),
        A(r"\sin x", r"\cos x", F),
        A(r"\binom{10}{2}", r"\binom{10}{3}", F),
        A(r"\binom{10}{2}", r"45", T),
        A(r"[1,3]", r"(1,3)", F),
        A(r"\infty", r"-\infty", F),
        A(r"3\sqrt{2}", r"2\sqrt{3}", F),
        A(r"\frac{\pi}{4}", r"\frac{\pi}{3}", F),
        A(r"\frac{\pi}{4}", r"45", F),
        A(r"1", r"1.0001", F),
        A(r"\ln 2", r"\log_{2} e", F),
        A(r"\frac{n(n-1)}{2}", r"\frac{n(n+1)}{2}", F),
        A(r"(x+1)^2", r"x^2+1", F),
        A(r"\sqrt{a+b}", r"\sqrt{a}+\sqrt{b}", F),
        A(r"\frac{x}{2}", r"\frac{2}{x}", F),
        A(r"\sqrt{2}", r"1.414", F),
        A(r"\frac{x+1}{x-1}", r"\frac{x-1}{x+1}", F),
        A(r"\text{Monday}", r"\text{Tuesday}", F),
        R(r"6", "We simplify to get the answer $5\n+ 1 = 6$.", T),
        R(r"5", "Thus the answer is $5\n+1$.", F),
        R(r"x^2+1", "Thus the polynomial is $x^2\n+1$.", T),
        R(r"\frac{1}{2}", "The answer is $\\frac{1}\n{2}$.", T),
        R(r"5", "The answer is $\\boxed{5\n+1}$.", F),
        R(r"6", "The answer is $\\boxed{5\n+1}$.", T),
    ],
    "symbolic": [
        A(r"x^2+7x+10", r"(x+2)(x+5)", T),
        A(r"x^2+7x+10", r"(x+2)(x+4)", F),
        A(r"(x-1)(x+1)", r"x^2-1", T),
        A(r"(x-1)(x+1)", r"x^2+1", F),
        A(r"x^3 - 3x^2 + 3x - 1", r"(x-1)^3", T),
        A(r"x^3 - 3x^2 + 3x - 1", r"(x+1)^3", F),
        A(r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", T),
        A(r"\frac{\sqrt{3}}{3}", r"\frac{1}{\sqrt{3}}", T),
        A(r"\frac{\sqrt{3}}{3}", r"\sqrt{3}", F),
        A(r"2\sqrt{2}", r"\sqrt{8}", T),
        A(r"2\sqrt{2}", r"\sqrt{6}", F),
        A(r"\sqrt{5}-1", r"\frac{4}{\sqrt{5}+1}", T),
        A(r"\sin^2 x", r"1-\cos^2 x", T),
        A(r"\sin 2x", r"2\sin x\cos x", T),
        A(r"\sin 2x", r"2\sin x", F),
        A(r"\cos 2x", r"1 - 2\sin^2 x", T),
        A(r"\cos 2x", r"2\sin^2 x - 1", F),
        A(r"\tan x", r"\frac{\sin x}{\cos x}", T),
        A(r"\frac{3}{4}", r"\dfrac{3}{4}", T),
        A(r"\frac{3}{4}", r"\tfrac{3}{4}", T),
        A(r"\frac{3}{4}", r"\dfrac{4}{3}", F),
        A(r"\frac{\pi}{2}", r"\pi/2", T),
        A(r"\frac{\pi}{2}", r"0.5\pi", T),
        A(r"\frac{\pi}{2}", r"2\pi", F),
        A(r"\frac{2\pi}{3}", r"\frac{2}{3}\pi", T),
        A(r"\frac{2\pi}{3}", r"\frac{3\pi}{2}", F),
        A(r"\frac{1}{(x+1)(x+2)}", r"\frac{1}{x+1}-\frac{1}{x+2}", T),
        A(r"\frac{1}{(x+1)(x+2)}", r"\frac{1}{x+1}+\frac{1}{x+2}", F),
        A(r"\sqrt{x}", r"x^{1/2}", T),
        A(r"\log_2 8", r"3", T),
        A(r"e^{2\ln 3}", r"9", T),
        A(r"e^{2\ln 3}", r"6", F),
        A(r"\frac{a+b}{ab}", r"\frac{1}{a}+\frac{1}{b}", T),
        A(r"\frac{a+b}{ab}", r"\frac{1}{a+b}", F),
        A(r"2^{n+1}", r"2 \cdot 2^n", T),
        A(r"2^{n+1}", r"2^n + 1", F),
        A(r"\frac{n(n+1)}{2}", r"\frac{n^2+n}{2}", T),
        A(r"\frac{\pi^2}{6}", r"\pi^2/6", T),
        A(r"e^{-1}", r"\frac{1}{e}", T),
        A(r"\frac{1}{2}\ln 3", r"\ln\sqrt{3}", T),
        A(r"\frac{1}{2}\ln 3", r"\ln 3", F),
        A(r"\frac{x^2-1}{x-1}", r"x+1", T),
        A(r"x^2+2x+1", r"(x+1)^2", T),
    ],
    "plain": [
        A(r"18", r"18", T), A(r"18", r"\$18", T), A(r"18", r"18 \text{ dollars}", T), A(r"18", r"16", F),
        A(r"18", r"\$18.00", T), A(r"18", r"81", F),
        A(r"3.5", r"\frac{7}{2}", T), A(r"3.5", r"3.50", T), A(r"3.5", r"3.05", F), A(r"3.5", r"7/2", T),
        A(r"\frac{7}{2}", r"3.5", T), A(r"\frac{7}{2}", r"3\frac{1}{2}", T), A(r"\frac{7}{2}", r"\frac{2}{7}", F),
        A(r"0.25", r"\frac{1}{4}", T), A(r"0.25", r"25\%", T), A(r"0.25", r"0.52", F),
        A(r"-4", r"-4", T), A(r"-4", r"4", F), A(r"-4", r"-4.0", T),
        A(r"100", r"100", T), A(r"100", r"1000", F), A(r"100", r"10^2", T),
        A(r"0", r"0", T), A(r"0", r"0.0", T), A(r"0", r"-1", F),
        A(r"7", r"7.0", T), A(r"7", r"6.9999", F), A(r"7", r"\frac{14}{2}", T),
        A(r"1234", r"1234", T), A(r"1234", r"1243", F),
        R(r"24", "!Natalia sold 48 clips in April and half as many in May, so 48/2 = 24 in May.\nThe answer is 24.", T),
        R(r"72", "!Natalia sold 48 clips in April and half as many in May, so 48/2 = 24 in May.\nAltogether 48 + 24 = 72.\n#### 72", T),
        R(r"72", "!Natalia sold 48 clips in April and half as many in May, so 48/2 = 24 in May.\nThe answer is 24.", F),
        R(r"10", "!Weng earns 12/60 = 0.2 dollars per minute. For 50 minutes she earns 0.2 x 50 = 10 dollars.\nThe answer is $10.", T),
        R(r"10", "!Weng earns 12/60 = 0.2 dollars per minute. For 50 minutes she earns 0.2 x 50 = 10 dollars.\nThe answer is \\$12.", F),
        R(r"5", "!Betty has 100/2 = 50 dollars. Her parents give 15 and grandparents 30, so she has 50 + 15 + 30 = 95. She needs 100 - 95 = 5 more.\n\nThe answer is: 5", T),
        R(r"5", "!Betty has 100/2 = 50 dollars. Her parents give 15 and grandparents 30, so she has 50 + 15 + 30 = 95.\n\nThe answer is: 95", F),
    ],
}

# Long chain of thought: a few responses of several thousand characters (bounded, to keep the file small).
LONG = [
    ("where", r"\frac{5}{12}", "LONG_T", r"\frac{5}{12}", T),
    ("where", r"\frac{5}{12}", "LONG_T", r"\frac{7}{12}", F),
    ("where", r"144", "LONG_P", r"144", T),
    ("where", r"144", "LONG_P", r"121", F),
    ("where", r"(2,-3)", "LONG_T", r"(2, -3)", T),
    ("where", r"(2,-3)", "LONG_P", r"(-3, 2)", F),
]


def long_response(rng, kind, ans):
    if kind == "LONG_T":
        return think(rng, 40) + cot(rng, 8) + f"\n\n**Final Answer**\n\\[\n\\boxed{{{ans}}}\n\\]"
    return cot(rng, 45) + f"\n\nTherefore, the final answer is $\\boxed{{{ans}}}$."


def handwritten_rows(rng):
    rows = []
    for cat, entries in HAND.items():
        k = 0
        for kind, gold, body, human, boxed_only, n in entries:
            if kind == "A":
                preds = styled(rng, body, n, boxed_only)
            elif body.startswith("!"):
                preds = [body[1:]]
            elif body.startswith("<think>"):
                preds = [body]
            else:
                preds = [f"{cot(rng)}\n\n{body}"]
            for p in preds:
                rows.append(dict(id=f"hw-{cat}-{k:03d}", source="handwritten", category=cat, gold=gold, pred=p, human=human))
                k += 1
    for j, (cat, gold, kind, ans, human) in enumerate(LONG):
        rows.append(dict(id=f"hw-long-{j:02d}", source="handwritten", category=cat, gold=gold,
                         pred=long_response(rng, kind, ans), human=human))
    return rows


# ---------------------------------------------------------------------------------------------------
# reasoning-gym: problems drawn once (cached), responses written here in model style.
# ---------------------------------------------------------------------------------------------------
RG_DRAW = [  # (dataset, how many, config)
    ("basic_arithmetic", 20, dict(min_terms=2, max_terms=4, min_digits=1, max_digits=3)),
    ("chain_sum", 14, dict(min_terms=2, max_terms=5, min_digits=1, max_digits=3)),
    ("fraction_simplification", 16, {}),
    ("gcd", 10, dict(min_numbers=2, max_numbers=2)),
    ("lcm", 10, dict(min_numbers=2, max_numbers=2)),
    ("simple_equations", 14, {}),
    ("leg_counting", 8, {}),
    ("complex_arithmetic", 8, {}),
]


def refresh_rg():
    import reasoning_gym
    from reasoning_gym.arithmetic.leg_counting import ANIMALS

    problems = []
    for i, (name, n, config) in enumerate(RG_DRAW):
        ds = reasoning_gym.create_dataset(name, size=n, seed=SEED + 100 * i, **config)
        for j in range(n):
            item = ds[j]
            meta = item.get("metadata", {})
            keep = {k: meta[k] for k in ("variable", "expression", "equation", "numbers", "numerator", "denominator",
                                         "animals", "num1", "num2", "operation") if k in meta}
            if "animals" in keep:  # legs per animal, for the worked solution
                keep["legs"] = {a: ANIMALS[a] for a in keep["animals"]}
            problems.append(dict(id=f"rg-{name}-{j:02d}", dataset=name, question=item["question"],
                                 answer=str(item["answer"]).strip(), metadata=keep))
    RG_CACHE.write_text(json.dumps(problems, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(problems)} problems to {RG_CACHE}")


def with_commas(n):
    return f"{n:,}".replace(",", "{,}")


def slip(rng, v):
    """A plausible arithmetic slip: v off by a little, a sign or a digit."""
    return rng.choice([v + 1, v - 1, v + rng.randint(2, 12), -v if v else 1, v * 10 if v else 10])


def eval_steps(rng, expression, wrong):
    """Evaluate an integer + - * expression one operation at a time (usual precedence), writing each step;
    with `wrong`, one step is miscomputed and the error carries on. Returns (lines, final value)."""
    toks = expression.replace("- -", "+ ").split()
    vals = [int(toks[0])] + [int(t) for t in toks[2::2]]
    ops = toks[1::2]
    bad = rng.randrange(len(ops)) if wrong and ops else -1
    lines, k = [], 0
    while ops:
        i = next((j for j, o in enumerate(ops) if o in "*/"), 0)
        a, o, b = vals[i], ops[i], vals[i + 1]
        r = a * b if o == "*" else a + b if o == "+" else a - b
        if k == bad:
            r = slip(rng, r)
        lines.append(f"${a} {o.replace('*', chr(92) + 'times')} {b} = {r}$" if b >= 0 else
                     f"${a} {o.replace('*', chr(92) + 'times')} ({b}) = {r}$")
        vals[i:i + 2] = [r]
        del ops[i]
        k += 1
    return lines, vals[0]


def worked(rng, p, wrong):
    """A worked solution for one reasoning-gym problem: (steps text, final answer as an int or string).
    With `wrong`, the solution makes a slip and ends at a different answer."""
    ds, m, g = p["dataset"], p["metadata"], p["answer"]
    if ds in ("basic_arithmetic", "chain_sum") and re.fullmatch(r"[-\d *+/ ]+", m.get("expression", "")) \
            and "/" not in m["expression"]:
        lines, v = eval_steps(rng, m["expression"], wrong)
        if wrong and v == int(g):
            v = slip(rng, v)
        return "We evaluate step by step, multiplications first, then from left to right.\n\n" + \
            "\n".join(f"- {l}" for l in lines), v
    if ds == "gcd":
        a, b = sorted(m["numbers"], reverse=True)
        lines = []
        while b:
            lines.append(f"${a} = {a // b} \\times {b} + {a % b}$")
            a, b = b, a % b
        v = slip(rng, a) if wrong else a
        v = v if v > 0 else a + 1
        return "Use the Euclidean algorithm.\n\n" + "\n".join(lines) + \
            f"\n\nThe last nonzero remainder is {v}.", v
    if ds == "lcm":
        a, b = m["numbers"]
        gg = math.gcd(a, b)
        v = a * b // gg
        if wrong:
            v = a * b if gg > 1 and rng.random() < 0.5 else slip(rng, v)
        return (f"First, $\\gcd({a}, {b}) = {gg}$. Then\n\\[\n\\operatorname{{lcm}}({a}, {b}) = "
                f"\\frac{{{a} \\cdot {b}}}{{{gg}}}\n\\]"), v
    if ds == "simple_equations":
        x, eq = m["variable"], m["equation"]
        v = int(g)
        lhs = eq.split("=")[0]
        check = exact_value(lhs.replace(x, f"({v})"))
        if wrong:
            v = slip(rng, v)
        return (f"We isolate ${x}$ in ${eq.replace('*', ' ')}$: move the constant term to the right-hand side, "
                f"then divide by the coefficient of ${x}$. So ${x} = {v}$.\n\nCheck: the left-hand side at "
                f"${x} = {int(g)}$ is ${check.numerator if check is not None and check.denominator == 1 else lhs}$."), v
    if ds == "fraction_simplification":
        a, b = m["numerator"], m["denominator"]
        gg = math.gcd(a, b)
        sa, sb = a // gg, b // gg
        if wrong:
            sa, sb = rng.choice([(sb, sa), (sa + 1, sb), (sa, sb + 1)])
        return (f"$\\gcd({a}, {b}) = {gg}$, so we divide both by {gg}: ${a} \\div {gg} = {a // gg}$ and "
                f"${b} \\div {gg} = {b // gg}$."), (sa, sb)
    if ds == "leg_counting":
        legs = m["legs"]
        terms = [f"{n} \\times {legs[a]}" for a, n in m["animals"].items()]
        v = sum(n * legs[a] for a, n in m["animals"].items())
        if wrong:
            v = slip(rng, v)
        return ("Each animal's legs: " + ", ".join(f"a {a} has {legs[a]}" for a in m["animals"]) +
                f".\n\nTotal: ${' + '.join(terms)}$."), v
    if ds in ("basic_arithmetic", "chain_sum"):  # parentheses or division: one line, after a chain of thought
        v = int(g)
        if wrong:
            v = slip(rng, v)
        expr = m.get("expression", "").replace("*", "\\times").replace("/", "\\div")
        return f"{cot(rng, 3)}\n\nWorking through ${expr}$ in order of operations.", v
    return cot(rng), None  # complex_arithmetic: the answer is written by the caller


def rg_responses(rng, p):
    """(category, pred, human) rows for one problem: one right in a drawn format, often one wrong."""
    g, ds = p["answer"], p["dataset"]
    lead = rng.choice(["", "", "Let's solve this carefully.\n\n", "We are asked: " + p["question"].strip().splitlines()[-1][:160] + "\n\n"])
    rows = []
    if ds == "complex_arithmetic":
        right = re.sub(r"\.0(?!\d)", "", g)
        for ans, human in ((right, T), (g.replace("+", "#").replace("-", "+").replace("#", "-")
                                        if ("+" in g[1:] or "-" in g[1:]) else g + " + 1.0i", F)):
            rows.append(("plain", lead + rng.choice(styled(rng, ans, 1)), human))
        return rows
    if ds == "fraction_simplification":
        for wrong in (False, True):
            steps, (a, b) = worked(rng, p, wrong)
            ans = rng.choice([f"\\frac{{{a}}}{{{b}}}", f"\\dfrac{{{a}}}{{{b}}}", f"{a}/{b}"])
            rows.append(("plain", lead + steps + "\n\n" + rng.choice(styled(rng, ans, 1)).split("\n\n")[-1], not wrong))
        return rows

    def render(ans, how):
        if how == "box":
            return rng.choice(styled(rng, ans, 1, boxed_only=True)).split("\n\n")[-1]
        if how == "minerva":
            return f"Final Answer: The final answer is ${ans}$. I hope it is correct."
        if how == "answer_is":
            return f"So the answer is {ans}."
        if how == "final_colon":
            return f"Final Answer: {ans}"
        return f"Hence\n\\[\n{ans}\n\\]"

    for wrong in (False, True):
        if wrong and rng.random() < 0.45:
            continue
        steps, v = worked(rng, p, wrong)
        forms = [("plain", f"{v}", "box"), ("plain", f"{v}", "minerva"), ("where", f"{v}", "answer_is"),
                 ("where", f"{v}", "final_colon"), ("where", f"{v}", "display")]
        if abs(v) >= 1000:
            forms += [("numbers", with_commas(v), "box"), ("numbers", f"{v:,}", "answer_is")]
        if ds == "simple_equations":
            forms.append(("several_answers", f"{p['metadata']['variable']} = {v}", "box"))
        if ds == "leg_counting":
            forms.append(("numbers", f"{v} \\text{{ legs}}", "box"))
        cat, ans, how = rng.choice(forms)
        think_part = think(rng, 3) if rng.random() < 0.25 else ""
        rows.append((cat, think_part + lead + steps + "\n\n" + render(ans, how), not wrong))
    return rows


def rg_rows(rng):
    if not RG_CACHE.exists():
        sys.exit(f"{RG_CACHE} is missing: run with --refresh-rg under the reasoning-gym environment")
    rows = []
    for p in json.loads(RG_CACHE.read_text()):
        for k, (cat, pred, human) in enumerate(rg_responses(rng, p)):
            rows.append(dict(id=f"{p['id']}-{k}", source="reasoning_gym", category=cat, gold=p["answer"],
                             pred=pred, human=human))
    return rows


SMOL_PROMPT = "{question} Put your final answer in \\boxed{{}}."


def sample_smollm2(actor, gguf):
    """Sample SmolLM2 responses for easy cached reasoning-gym problems (and the easiest of the committed
    data/reasoning_gym_arithmetic_eval.jsonl) with `actor generate`, and write them
    to corpus_smollm2.jsonl with "human": null; each label is then set by reading the response."""
    import subprocess

    problems = [p for p in json.loads(RG_CACHE.read_text())
                if p["dataset"] in ("basic_arithmetic", "chain_sum", "gcd", "lcm")]
    picked = [p for p in problems if p["dataset"] == "basic_arithmetic"][:10] + \
        [p for p in problems if p["dataset"] == "chain_sum"][:6] + [p for p in problems if p["dataset"] in ("gcd", "lcm")][:4]
    # The easiest problems too (one or two operations on digits), where a 135M model is sometimes right.
    tiny = [json.loads(l) for l in (ROOT / "data" / "reasoning_gym_arithmetic_eval.jsonl").read_text().splitlines()]
    picked += [dict(t, id=t["id"].replace("rg-", "rgtiny-")) for t in tiny
               if t["metadata"]["expression"].count(" ") == 2][:14]
    rows = []
    for i, p in enumerate(picked):
        prompt = SMOL_PROMPT.format(question=p["question"].strip())
        cmd = ["nice", "-n", "15", actor, "generate", "--model", gguf, "--chat", "--prompt", prompt,
               "--temperature", "0.7", "--max-new-tokens", "256", "--n", "2", "--seed", str(SEED + i), "--json"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
        for line in out.splitlines():
            if line.startswith("{"):
                s = json.loads(line)
                rows.append(dict(id=f"smol-{p['id']}-{s['index']}", source="smollm2", category="where",
                                 gold=p["answer"], pred=s["text"], human=None, prompt=prompt))
        print(f"{i + 1}/{len(picked)} sampled", file=sys.stderr)
    SMOL.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} responses to {SMOL}; label each (human) by reading it")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refresh-rg", action="store_true", help="redraw the cached reasoning-gym problems")
    ap.add_argument("--sample-smollm2", nargs=2, metavar=("ACTOR", "GGUF"),
                    help="resample the SmolLM2 rows with this `actor` binary and GGUF (labels are then set by hand)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if args.refresh_rg:
        refresh_rg()
        return
    if args.sample_smollm2:
        sample_smollm2(*args.sample_smollm2)
        return
    from verifier_agreement import mv_grade  # needs math-verify: run under ~/.cache/laser-mv

    rng = random.Random(SEED)
    rows = handwritten_rows(rng) + rg_rows(rng)
    if SMOL.exists():
        smol = [json.loads(l) for l in SMOL.read_text().splitlines() if l.strip()]
        unlabelled = [r["id"] for r in smol if r["human"] is None]
        if unlabelled:
            sys.exit(f"{SMOL}: rows without a human label: {unlabelled[:5]}")
        rows += smol
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate ids"
    keys = ("id", "source", "category", "gold", "pred", "human", "mv")
    with open(args.out, "w", encoding="utf-8") as f:
        for r in rows:
            r["mv"] = mv_grade(r["gold"], r["pred"])
            f.write(json.dumps({k: r[k] for k in keys}, ensure_ascii=False) + "\n")
    neg = sum(not r["human"] for r in rows)
    print(f"wrote {len(rows)} rows ({neg} negatives) to {args.out}")


if __name__ == "__main__":
    main()
