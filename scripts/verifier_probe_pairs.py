#!/usr/bin/env python3
"""Writes (gold, response) probe pairs as JSONL on stdout, for measuring agreement with math-verify
beyond our labelled cases (scripts/verifier_agreement.py --cases FILE). No expected verdicts: the
probe only asks whether laser-verifier and math-verify decide alike. Every pair is our own.

    python3 scripts/verifier_probe_pairs.py > /tmp/probe.jsonl
"""
import json
import random

random.seed(3)
R = ["First, we compute the sum of 3 and 4 which is 7. Then multiply by 2 to get 14.\n",
     "Let $x$ be the number. We have $2x + 3 = 11$, so $x = 4$.\n",
     "We consider the cases n = 1, 2, 3 separately.\n", ""]

# Gold answers with equivalent and wrong rewrites, each put in several answer wrappers.
GOLDS_A = {
 "7": ["7", "7.0", "07", "8", "-7", "\\frac{14}{2}", "7.00001", "6.9999999"],
 "\\frac{1}{2}": ["0.5", "1/2", "\\dfrac12", "\\frac{2}{4}", "0.50", "\\frac12", "2^{-1}", "0.49", "1/3", "50\\%"],
 "\\frac{\\sqrt{3}}{2}": ["\\sqrt{3}/2", "\\frac{1}{2}\\sqrt{3}", "0.866025", "0.8660254", "\\frac{\\sqrt{3}}{3}", "\\sqrt{3/4}", "\\frac{3}{2\\sqrt{3}}"],
 "2\\sqrt{5}": ["\\sqrt{20}", "2 \\sqrt 5", "4.472136", "\\sqrt{5}*2", "2\\sqrt{3}", "5\\sqrt{2}"],
 "(3,-1)": ["(3, -1)", "\\left(3,-1\\right)", "(-1,3)", "(3,1)", "x=3, y=-1", "3, -1"],
 "[-2,7]": ["[-2, 7]", "-2 \\le x \\le 7", "(-2,7)", "[-2,7)", "\\left[-2,7\\right]", "x \\in [-2,7]"],
 "(-\\infty, 0) \\cup (1, \\infty)": ["(-\\infty,0)\\cup(1,\\infty)", "(1,\\infty)\\cup(-\\infty,0)", "(-\\infty,0]\\cup(1,\\infty)", "x<0 \\text{ or } x>1"],
 "\\{1, 3\\}": ["\\{3,1\\}", "1, 3", "3, 1", "\\{1,2\\}", "1 \\text{ and } 3", "x=1, x=3"],
 "x^2+7x+10": ["(x+2)(x+5)", "x^2 + 7x + 10", "x^{2}+7x+10", "(x+2)(x+4)", "10+7x+x^2", "y = x^2+7x+10"],
 "\\text{(C)}": ["C", "(C)", "\\text{C}", "\\textbf{(C)}", "D", "c"],
 "\\pi": ["3.14159265", "\\pi", "180^\\circ", "3.14", "\\frac{2\\pi}{2}"],
 "\\frac{\\pi}{3}": ["60^\\circ", "\\pi/3", "1.0471976", "\\frac{1}{3}\\pi", "\\frac{\\pi}{6}"],
 "10\\%": ["10", "0.1", "10\\%", "0.10", "10 percent", "1"],
 "0.25": ["\\frac{1}{4}", "25\\%", "1/4", "0.250", ".25", "0.26"],
 "1,000,000": ["1000000", "10^6", "1\\,000\\,000", "1 000 000", "100000"],
 "\\$18.50": ["18.5", "\\$18.50", "18.50", "\\$18.5", "18.05", "1850"],
 "y=2x+3": ["2x+3", "y = 3 + 2x", "y-2x=3", "2y=4x+6", "y=2x-3"],
 "x > 5": ["(5,\\infty)", "x>5", "5<x", "x \\geq 5", "[5,\\infty)"],
 "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}": ["\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"],
 "\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}": ["(1,-2)", "\\begin{pmatrix}1\\\\-2\\end{pmatrix}", "\\begin{pmatrix} -2 \\\\ 1 \\end{pmatrix}"],
 "45^\\circ": ["45", "45^{\\circ}", "45 degrees", "\\frac{\\pi}{4}", "46"],
 "5\\text{ cm}": ["5", "5 cm", "5\\text{cm}", "5\\mathrm{cm}", "6"],
 "3x": ["3x", "x3", "3\\cdot x", "3 \\times x", "x+x+x", "3y"],
 "\\sqrt{2}": ["1.41421356", "2^{1/2}", "\\sqrt2", "1.414", "\\frac{2}{\\sqrt{2}}"],
 "-\\frac{3}{4}": ["-0.75", "\\frac{-3}{4}", "-3/4", "0.75", "\\frac{3}{-4}"],
 "2i": ["2i", "i2", "2\\cdot i", "-2i", "\\sqrt{-4}"],
 "e^2": ["e^{2}", "7.389056", "e\\cdot e", "2e", "\\exp(2)"],
 "\\log_2 8": ["3", "\\log_2{8}", "\\frac{\\ln 8}{\\ln 2}", "4"],
 "\\binom{5}{2}": ["10", "\\frac{5!}{2!3!}", "C(5,2)", "20"],
 "1.5": ["\\frac{3}{2}", "1\\frac{1}{2}", "3/2", "1.50", "1.6"],
 "12": ["12 apples", "\\text{12}", "12.0", "twelve", "1 2", "\\$12"],
 "a+b": ["b+a", "a + b", "a-b", "ab"],
 "\\infty": ["\\infty", "oo", "+\\infty", "-\\infty", "\\text{infinity}"],
 "x=2": ["2", "x = 2", "x=3", "2=x"],
 "1, 2": ["\\{1,2\\}", "2,1", "1 and 2", "(1,2)", "[1,2]"],
}
WRAP_A = ["\\boxed{%s}", "The final answer is $%s$.", "So the answer is $%s$.", "$%s$", "%s"]

GOLDS_B = [
 ("14", ["14","14.0","15","\\$14","14 dollars","fourteen","1.4\\times 10^1", "28/2"]),
 ("\\frac{7}{2}", ["3.5","7/2","\\frac{14}{4}","3\\frac{1}{2}","\\frac{2}{7}","3.4","\\tfrac{7}{2}"]),
 ("\\dfrac{5}{6}", ["\\frac{5}{6}","0.8333","0.833333","0.83","10/12","\\frac{6}{5}"]),
 ("2\\pi", ["2\\pi","6.283185","\\pi \\cdot 2","360^\\circ","\\pi","2 \\pi r"]),
 ("3\\sqrt{2}", ["\\sqrt{18}","3 \\sqrt{2}","4.2426407","\\sqrt{2}\\cdot 3","2\\sqrt{3}","3\\sqrt2"]),
 ("\\left( 2, \\frac{\\pi}{3} \\right)", ["(2, \\pi/3)","\\left(2,\\frac{\\pi}{3}\\right)","(2,60^\\circ)","(\\frac{\\pi}{3}, 2)","(2,\\frac{\\pi}{6})"]),
 ("-2, 1", ["1, -2","-2,1","\\{-2, 1\\}","x=-2 \\text{ or } x=1","-2","(-2, 1)"]),
 ("(-3, 4]", ["(-3,4]","-3<x\\le 4","[-3,4]","(-3,4)","\\left(-3, 4\\right]"]),
 ("\\text{Evelyn}", ["Evelyn","\\text{Evelyn}","\\text{evelyn}","Bob","\\textbf{Evelyn}"]),
 ("\\text{odd}", ["odd","\\text{odd}","even","\\text{even}"]),
 ("90^\\circ", ["90","90^{\\circ}","90 degrees","\\frac{\\pi}{2}","89"]),
 ("25\\%", ["25","0.25","25\\%","\\frac14","26\\%","25 percent"]),
 ("5400", ["5,400","5400","5\\,400","5.4\\times10^3","540","5400.00","\\$5,400"]),
 ("x^3-3x+2", ["(x-1)^2(x+2)","x^3 - 3x + 2","x^3-3x-2","2 - 3x + x^3","(x-1)(x+2)"]),
 ("\\frac{x+1}{x-1}", ["\\frac{1+x}{x-1}","(x+1)/(x-1)","1+\\frac{2}{x-1}","\\frac{x-1}{x+1}","-\\frac{x+1}{1-x}"]),
 ("y = -\\frac{1}{2}x + 3", ["y=-0.5x+3","y = 3 - \\frac{x}{2}","-\\frac{1}{2}x+3","x+2y=6","y=\\frac{1}{2}x+3","2y = -x + 6"]),
 ("\\begin{pmatrix} 2 \\\\ -1 \\\\ 3 \\end{pmatrix}", ["\\begin{pmatrix}2\\\\-1\\\\3\\end{pmatrix}","(2,-1,3)","\\begin{bmatrix} 2 \\\\ -1 \\\\ 3 \\end{bmatrix}","\\begin{pmatrix} 2 \\\\ 1 \\\\ 3 \\end{pmatrix}"]),
 ("\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}", ["\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}","I","\\begin{pmatrix} 0 & 1 \\\\ 1 & 0 \\end{pmatrix}"]),
 ("8\\sqrt{3}-6", ["-6+8\\sqrt{3}","8\\sqrt3 - 6","7.856406","6-8\\sqrt{3}"]),
 ("\\frac{1}{6}", ["1/6","0.1667","0.166667","\\frac{2}{12}","16.67\\%","\\frac{1}{5}"]),
 ("1.25", ["\\frac{5}{4}","1.250","1\\frac{1}{4}","5/4","1.2", "125\\%"]),
 ("-\\sqrt{3}", ["-\\sqrt3","-1.7320508","\\sqrt{3}","-\\frac{3}{\\sqrt{3}}"]),
 ("\\{(1,2), (3,4)\\}", ["(1,2), (3,4)","\\{(3,4),(1,2)\\}","(1,2)","(1,2),(4,3)"]),
 ("\\infty", ["\\infty","\\infty"]),
 ("k \\geq 3", ["k\\ge 3","3 \\le k","k>3","[3,\\infty)"]),
 ("a = 2, b = 3", ["a=2,b=3","b=3, a=2","2, 3","a=3,b=2"]),
 ("\\$1.50", ["1.50","1.5","\\$1.5","150","\\$1.50"]),
 ("6", ["6","6.000","\\boxed{6}","\\sqrt{36}","3!","6.01"]),
 ("\\frac{3\\sqrt{3}}{4}", ["\\frac{3}{4}\\sqrt{3}","1.299038","\\frac{3\\sqrt3}{4}","\\frac{\\sqrt{27}}{4}","\\frac{3\\sqrt{2}}{4}"]),
 ("\\log_3 5", ["\\frac{\\ln 5}{\\ln 3}","1.4649735","\\log_5 3","\\log_{3}5"]),
 ("1000", ["10^3","1{,}000","1,000","1000.0","999"]),
 ("e", ["e","2.7182818","\\exp(1)","e^1"]),
]
WRAP_B = ["%s\\boxed{%s}", "%sThe final answer is $%s$.", "%sTherefore, the answer is $%s$.",
          "%sHence we get $\\boxed{%s}$ as required.",
          "%sFinal Answer: The final answer is $%s$. I hope it is correct.", "%s\\[ \\boxed{%s} \\]"]

# Free-form responses: plain text, GSM8K, several boxes, functions, relations, containers.
PAIRS_C = [
 ("42", "I think the result is 42."), ("42", "We get 40 + 2 = 42 apples in total."), ("42","There are 42 apples and 3 oranges."),
 ("3", "There are 42 apples and 3 oranges."), ("42", "42"), ("42","The answer: 42"), ("42","answer is 42 because 6*7=42"),
 ("18", "Janet sells 16 - 3 - 4 = 9 duck eggs a day. She makes 9 * 2 = $18 every day at the farmer's market.\n#### 18"),
 ("18", "She makes 9 * 2 = $18 every day."), ("18", "She makes $18 every day."), ("18","She makes \\$18 a day."),
 ("3", "It takes 2/2=1 bolt of white fiber\nSo the total amount of fabric is 2+1=3 bolts of fiber\n#### 3"),
 ("70000", "So he made a profit of 200000-130000=$70,000\n#### 70000"),
 ("540", "He sprints 3*3=9 times\nSo he runs 9*60=540 meters\n#### 540"),
 ("20", "Each chicken gets 3 cups, 20 chickens. The answer is 20"),
 ("20", "Each chicken gets 3 cups, 20 chickens. So 60 cups."),
 ("0.5","The probability is 1/2."), ("0.5","The probability is 50%."), ("0.5", "Probability = 0.5"),
 ("5", "x = 5"), ("5", "We find that x=5 and y=6."), ("6", "We find that x=5 and y=6."),
 ("10", "The answer is 10%"), ("10\\%", "The answer is 10%"), ("10\\%","The answer is 0.1"),
 ("-3", "The answer is -3."), ("-3","The answer is - 3."), ("3","The answer is -3."),
 ("1/3","The answer is 0.33"), ("1/3", "The answer is 0.333"), ("1/3","The answer is 0.3333333"),
 ("2", "The roots are 2 and 3."), ("2,3", "The roots are 2 and 3."), ("2,3","The roots are $2$ and $3$."),
 ("7", "I don't know."), ("7", ""), ("7", "\\boxed{}"), ("7","The answer is \\boxed{ }"),
 ("12", "After 1 2 3 steps..."), ("12","12 is my answer"), ("12","The final answer is 12 apples."),
 ("\\frac{1}{2}", "The answer is $\\frac{1}{2}$, and also 3."), ("3", "The answer is $\\frac{1}{2}$, and also 3."),
 ("100", "We obtain 100.00."), ("100","We obtain 1.0e2."), ("100", "We obtain 10^2."), ("100","We obtain $10^2$."),
 ("5", "5 5 5 6"), ("6","5 5 5 6"),
 ("4", "$2+2=4$"), ("4","$2+2$"), ("2+2","$4$"),
 ("x+1","$x+1$"), ("x+1","the answer is x+1"), ("x+1", "\\boxed{1+x}"),
 ("\\frac{\\sqrt{2}}{2}", "\\boxed{\\frac{1}{\\sqrt{2}}}"), ("\\frac{\\sqrt{2}}{2}", "$\\sin 45^\\circ$"),
 ("\\frac{1}{2}", "\\boxed{\\cos 60^\\circ}"), ("0", "\\boxed{\\sin \\pi}"), ("1","\\boxed{\\tan\\frac{\\pi}{4}}"),
 ("16", "\\boxed{2^4}"), ("16","\\boxed{4^2}"), ("16","\\boxed{\\sqrt{256}}"), ("16","\\boxed{15.99}"),
 ("x", "\\boxed{X}"), ("A", "\\boxed{a}"), ("\\text{A}", "\\boxed{A}"), ("B","\\boxed{\\text{(B)}}"), ("B","The answer is (B)."), ("B", "The answer is B."),("B","The answer is (C)."),
 ("2x", "\\boxed{x2}"), ("xy", "\\boxed{yx}"), ("x^2y", "\\boxed{yx^2}"), ("2^x", "\\boxed{x^2}"),
 ("\\sqrt{x}", "\\boxed{x^{1/2}}"), ("\\frac{1}{x}", "\\boxed{x^{-1}}"), ("\\ln(xy)", "\\boxed{\\ln x + \\ln y}"),
 ("\\sin^2 x + \\cos^2 x", "\\boxed{1}"), ("(a+b)^2", "\\boxed{a^2+2ab+b^2}"), ("(a+b)^2","\\boxed{a^2+b^2}"),
 ("3 \\le x < 5", "\\boxed{[3,5)}"), ("x<1", "\\boxed{x \\le 1}"), ("x \\neq 2", "\\boxed{(-\\infty,2)\\cup(2,\\infty)}"),
 ("\\mathbb{R}", "\\boxed{(-\\infty,\\infty)}"), ("\\emptyset", "\\boxed{\\varnothing}"), ("\\emptyset","\\boxed{\\{\\}}"),
 ("1 \\pm \\sqrt{2}", "\\boxed{1+\\sqrt{2}, 1-\\sqrt{2}}"), ("\\pm 2", "\\boxed{2,-2}"), ("\\pm 2", "\\boxed{2}"),
 ("2", "\\boxed{2} \\boxed{3}"), ("2,3", "\\boxed{2}, \\boxed{3}"),
 ("0.1", "\\boxed{.1}"), ("0.1","\\boxed{0.10}"), ("0.1", "\\boxed{1/10}"), ("0.1","\\boxed{0.1001}"),
 ("1e-3", "\\boxed{0.001}"), ("0.001","\\boxed{10^{-3}}"), ("0.001","\\boxed{1\\times 10^{-3}}"),
 ("3.14", "\\boxed{\\pi}"), ("3.1416", "\\boxed{\\pi}"), ("\\pi","\\boxed{3.1416}"),
 ("1000000007", "\\boxed{1000000007}"), ("1000000007","\\boxed{1000000008}"), ("123456789012345678901234567890","\\boxed{123456789012345678901234567891}"),
 ("0.333333333333", "\\boxed{0.333333333334}"), ("1/3","\\boxed{0.333333}"), ("2/3","\\boxed{0.666667}"), ("2/3","\\boxed{0.666666}"), ("2/3","\\boxed{0.67}"),
 ("12", "\\boxed{12}\\%"), ("5", "\\boxed{-5}"), ("-5", "\\boxed{-5}"), ("5", "\\boxed{+5}"), ("5","\\boxed{|-5|}"),
 ("x=3", "\\boxed{3}"), ("3", "\\boxed{x=3}"), ("x=3","\\boxed{y=3}"), ("y=3","\\boxed{x=3}"), ("x=3","\\boxed{3=x}"),
 ("f(x)=2x+1", "\\boxed{2x+1}"), ("2x+1", "\\boxed{f(x)=2x+1}"),
 ("x^2+y^2=1", "\\boxed{y^2+x^2=1}"), ("x^2+y^2=1","\\boxed{x^2+y^2-1=0}"), ("x^2+y^2=1","\\boxed{2x^2+2y^2=2}"), ("x^2+y^2=1","\\boxed{x^2+y^2=2}"),
 ("(1,2)", "\\boxed{(2,1)}"), ("\\{1,2\\}", "\\boxed{\\{2,1\\}}"), ("(1,2,3)","\\boxed{(1,3,2)}"), ("(1,2,3)","\\boxed{\\{1,2,3\\}}"), ("\\{1,2,3\\}","\\boxed{(1,2,3)}"),
 ("[1,2]","\\boxed{\\{1,2\\}}"), ("\\{1,2\\}","\\boxed{[1,2]}"),
 ("(1,2)", "\\boxed{1,2}"), ("1,2","\\boxed{(1,2)}"),
 ("\\frac{1}{2}\\text{ hours}", "\\boxed{30\\text{ minutes}}"), ("2 \\text{ hours}", "\\boxed{2}"), ("2","\\boxed{2\\text{ hours}}"),
 ("\\text{yes}", "\\boxed{Yes}"), ("\\text{yes}","\\boxed{no}"), ("\\text{True}","\\boxed{\\text{true}}"),
]

def main() -> None:
    out = []
    for g, preds in GOLDS_A.items():
        out += [(g, w % p) for p in preds for w in WRAP_A]
    for g, preds in GOLDS_B:
        out += [(g, w % (random.choice(R), p)) for p in preds for w in WRAP_B]
    out += PAIRS_C
    for g, p in out:
        print(json.dumps({"gold": g, "pred": p}))


if __name__ == "__main__":
    main()
