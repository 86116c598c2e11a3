//! Finding the final answer in a response (or the gold answer in a reference solution).
//!
//! Candidates come out best-first, in the priority order math-verify uses: an explicit "final
//! answer is ..." or `\boxed{}` first, then text anchored on "answer", then GSM8K's `#### 42`, then
//! any LaTeX environment or plain number (rightmost wins within a priority). The grader takes the
//! first candidate that parses, so an unparseable box does not hide a good answer elsewhere.

use regex::Regex;
use std::collections::HashSet;
use std::sync::LazyLock;

/// Where an answer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Boxed,
    FinalAnswer,
    AnswerAnchor,
    Hashes,
    Latex,
    Number,
    /// The whole (short, formula-like) text, when nothing else matched.
    Whole,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub text: String,
    pub source: Source,
}

/// What extraction may fall back to.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    /// Use the last plain number in the text when nothing better is found.
    pub last_number_fallback: bool,
    /// Use the whole text when it is a short bare formula ("x+1").
    pub whole_fallback: bool,
}

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?:^|[\s=*])(?:\\?[$€£¥₹])?",
        r"(-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+,\d+|\d+(?:\.\d+)?)(?:\^\{?-?\d+\}?|\s*/\s*\d+)?|-?\.\d+)",
        r"(\s*(?:\\?%|[Pp]ercent(?:age)?\b|[Pp]ct\b))?"
    ))
    .unwrap_or_else(|e| panic!("bad built-in regex: {e}"))
});

static FINAL_ANSWER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)final answer").unwrap_or_else(|e| panic!("bad built-in regex: {e}"))
});
static ANSWER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)answer").unwrap_or_else(|e| panic!("bad built-in regex: {e}"))
});
static IS_THE_ANSWER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:is|was)\s+(?:the|our|my)\s+(?:final\s+|correct\s+)?answer\b")
        .unwrap_or_else(|e| panic!("bad built-in regex: {e}"))
});
static IS_WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\sis\b:?\s*").unwrap_or_else(|e| panic!("bad built-in regex: {e}"))
});

/// A located piece of text; `end` orders candidates within a priority (rightmost first).
#[derive(Debug, Clone)]
struct Hit {
    start: usize,
    end: usize,
    text: String,
}

/// All candidates, best first.
pub fn candidates(text: &str, opts: &ExtractOptions) -> Vec<Candidate> {
    // A reasoning model's answer follows its `<think>` block: a box tried inside the thinking
    // ("it might be \boxed{6}... no wait") is not the answer when the reply gives one.
    if let Some(end) = text.rfind("</think>") {
        let reply = candidates_in(&text[end + "</think>".len()..], opts);
        if !reply.is_empty() {
            return reply;
        }
    }
    candidates_in(text, opts)
}

fn candidates_in(text: &str, opts: &ExtractOptions) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let envs = latex_envs(text);
    let numbers = number_hits(text);

    // Priority 1: \boxed and "final answer is X", rightmost first.
    let mut top: Vec<(Hit, Source)> = Vec::new();
    if let Some(h) = last_boxed(text) {
        top.push((h, Source::Boxed));
    }
    for m in FINAL_ANSWER.find_iter(text) {
        let window_end = floor_boundary(text, (m.end() + 100).min(text.len()));
        if let Some(is) = IS_WORD.find(&text[m.end()..window_end]) {
            let at = m.end() + is.end();
            if let Some(h) = answer_at(text, at, &envs, &numbers) {
                top.push((h, Source::FinalAnswer));
            }
        }
    }
    push_group(&mut out, top);

    // Priority 2: "$x = 4$ is the answer": the formula just before the words.
    let named: Vec<(Hit, Source)> = envs
        .iter()
        .filter(|h| IS_THE_ANSWER.is_match(&text[h.end..]))
        .map(|h| (h.clone(), Source::AnswerAnchor))
        .collect();
    push_group(&mut out, named);

    // Priority 3: the word "answer" followed (within 50 characters) by LaTeX or a number.
    let mut anchored = Vec::new();
    for m in ANSWER.find_iter(text) {
        if let Some(h) = anchored_answer(text, m.end(), &envs, &numbers) {
            anchored.push((h, Source::AnswerAnchor));
        }
    }
    push_group(&mut out, anchored);

    // Priority 4: GSM8K's "#### 42".
    if let Some(pos) = text.rfind("####") {
        let rest = text[pos + 4..].trim_start_matches('#');
        let line = rest.lines().next().unwrap_or("").trim();
        if !line.is_empty() {
            out.push(Candidate {
                text: line.to_string(),
                source: Source::Hashes,
            });
        }
    }

    // Priority 5: any LaTeX environment or plain number; rightmost first.
    let mut plain: Vec<(Hit, Source)> = envs.iter().map(|h| (h.clone(), Source::Latex)).collect();
    if opts.last_number_fallback {
        plain.extend(numbers.iter().map(|h| (h.clone(), Source::Number)));
    }
    push_group(&mut out, plain);

    if out.is_empty() && opts.whole_fallback && looks_like_bare_answer(text) {
        out.push(Candidate {
            text: text.trim().to_string(),
            source: Source::Whole,
        });
    }
    out
}

fn push_group(out: &mut Vec<Candidate>, mut hits: Vec<(Hit, Source)>) {
    // Rightmost end first; for equal ends the longer (earlier-starting) match first.
    hits.sort_by(|a, b| b.0.end.cmp(&a.0.end).then(a.0.start.cmp(&b.0.start)));
    // A response that repeats its answer many times gives one candidate per spelling (a set, so
    // that a megabyte of repeated notes stays linear).
    let mut seen: HashSet<(String, Source)> =
        out.iter().map(|c| (c.text.clone(), c.source)).collect();
    for (h, source) in hits {
        let text = h.text.trim().to_string();
        if !text.is_empty() && seen.insert((text.clone(), source)) {
            out.push(Candidate { text, source });
        }
    }
}

/// The first hit (by start) starting at or after `from`; `hits` is sorted by start.
fn first_from(hits: &[Hit], from: usize) -> Option<&Hit> {
    hits.get(hits.partition_point(|h| h.start < from))
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// An answer starting at `at`: a boxed expression, a LaTeX environment or a number.
fn answer_at(text: &str, at: usize, envs: &[Hit], numbers: &[Hit]) -> Option<Hit> {
    let rest = &text[at..];
    let skipped = rest.len() - rest.trim_start().len();
    let at = at + skipped;
    if text[at..].starts_with("\\boxed") || text[at..].starts_with("\\fbox") {
        return boxed_at(text, at);
    }
    if let Some(h) = first_from(envs, at).filter(|h| h.start == at) {
        return Some(h.clone());
    }
    first_from(numbers, at)
        .filter(|h| h.start <= at + 1)
        .cloned()
}

/// After an "answer" anchor: the first LaTeX environment starting within 50 characters, or a
/// number — the one after the last `=` within 100 characters when there is one.
fn anchored_answer(text: &str, anchor_end: usize, envs: &[Hit], numbers: &[Hit]) -> Option<Hit> {
    let near = floor_boundary(text, (anchor_end + 50).min(text.len()));
    let env = first_from(envs, anchor_end)
        .filter(|h| h.start <= near)
        .cloned();
    // A plain number must be on the anchor's line (math-verify's `.` does not cross lines
    // there); a LaTeX environment may start on the next.
    let window = floor_boundary(text, (anchor_end + 100).min(text.len()));
    let line_end = text[anchor_end..window]
        .find('\n')
        .map_or(window, |p| anchor_end + p);
    let near_line = near.min(line_end);
    let far = floor_boundary(text, (anchor_end + 100).min(line_end));
    let after_eq = text[anchor_end..far].rfind('=').map(|p| anchor_end + p + 1);
    let number = match after_eq {
        Some(eq) => first_from(numbers, eq)
            .filter(|h| text[eq..h.start].trim().is_empty())
            .cloned(),
        None => None,
    }
    .or_else(|| {
        first_from(numbers, anchor_end)
            .filter(|h| h.start <= near_line)
            .cloned()
    })
    .filter(|h| !text[h.end..].trim_start().starts_with('='));
    match (env, number) {
        (Some(e), Some(n)) => Some(if n.start < e.start { n } else { e }),
        (e, n) => e.or(n),
    }
}

fn number_hits(text: &str) -> Vec<Hit> {
    NUMBER
        .captures_iter(text)
        .filter_map(|c| {
            let num = c.get(1)?;
            if opens_broken_formula(text, num.start(), num.end()) {
                return None;
            }
            let (end, pct) = match c.get(2) {
                Some(p) => (p.end(), true),
                None => (num.end(), false),
            };
            let mut t = decimal_comma(num.as_str());
            if pct {
                t.push_str("\\%");
            }
            Some(Hit {
                start: num.start(),
                end,
                text: t,
            })
        })
        .collect()
}

/// `$5` ending its line, the next line going on with an operator and closing the `$`: the first
/// piece of a formula split over lines (`$5\n+ 1 = 6$`), not a price. math-verify is strict
/// about such formulas, and so are we: the piece is no answer.
fn opens_broken_formula(text: &str, start: usize, end: usize) -> bool {
    let before = &text[..start];
    let opened = before.ends_with('$') && !before.ends_with("\\$");
    if !opened {
        return false;
    }
    let rest = &text[end..];
    // Only spaces may follow on the line (checked without scanning a long line to its end).
    let spaces = rest.len() - rest.trim_start_matches([' ', '\t', '\r']).len();
    if !rest[spaces..].starts_with('\n') {
        return false;
    }
    let next_line = rest[spaces + 1..].lines().next().unwrap_or("");
    let continues = next_line
        .trim_start()
        .starts_with(['+', '-', '*', '/', '=', '^', '\\', '{']);
    continues && next_line.contains('$')
}

/// `3,5` as a whole answer in a response written in another language than English, where the
/// comma is the decimal mark (`\boxed{3,5}` in German text is 3.5, not the list 3, 5).
pub fn localized_decimal(answer: &str) -> Option<String> {
    let t = answer.trim();
    let (int, frac) = t.split_once(',')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let int_digits = int.strip_prefix('-').unwrap_or(int);
    (digits(int_digits) && digits(frac) && frac.len() != 3).then(|| format!("{int}.{frac}"))
}

/// Whether prose is clearly in a language that writes decimal commas (German, French, Spanish,
/// Italian, Portuguese, Dutch, Russian): its function words outnumber English ones.
pub fn writes_decimal_commas(text: &str) -> bool {
    const ENGLISH: &[&str] = &[
        "the", "is", "and", "of", "to", "we", "so", "answer", "this", "that", "with", "then",
    ];
    const OTHERS: &[&str] = &[
        "die",
        "der",
        "das",
        "und",
        "ist",
        "wir",
        "antwort",
        "lautet",
        "ergebnis",
        "le",
        "la",
        "les",
        "est",
        "et",
        "donc",
        "nous",
        "réponse",
        "el",
        "es",
        "y",
        "por",
        "lo",
        "tanto",
        "respuesta",
        "il",
        "è",
        "risposta",
        "quindi",
        "não",
        "é",
        "resposta",
        "portanto",
        "het",
        "een",
        "antwoord",
        "dus",
        "ответ",
        "и",
        "это",
    ];
    let (mut english, mut others) = (0usize, 0usize);
    for word in text
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .take(20_000)
    {
        let w = word.to_lowercase();
        if ENGLISH.contains(&w.as_str()) {
            english += 1;
        } else if OTHERS.contains(&w.as_str()) {
            others += 1;
        }
    }
    others >= 2 && others > 2 * english
}

/// A plain-text number: `3,5` (a comma not followed by exactly three digits) is the decimal
/// 3.5, as math-verify reads numbers outside LaTeX; `1,234` keeps its thousands separator.
fn decimal_comma(number: &str) -> String {
    match number.split_once(',') {
        Some((int, frac))
            if !frac.contains(',')
                && frac.len() != 3
                && frac.bytes().all(|c| c.is_ascii_digit()) =>
        {
            format!("{int}.{frac}")
        }
        _ => number.to_string(),
    }
}

/// `$...$`, `$$...$$`, `\[...\]`, `\(...\)` and bare `\frac{a}{b}`, with chains like
/// "$1$, $2$ and $3$" joined into one comma list (a set of answers).
fn latex_envs(text: &str) -> Vec<Hit> {
    let b = text.as_bytes();
    let mut raw: Vec<Hit> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let escaped = i > 0 && b[i - 1] == b'\\';
        let found = if b[i] == b'$' && !escaped {
            if b.get(i + 1) == Some(&b'$') {
                find_unescaped(text, i + 2, "$$", true).map(|e| (i + 2, e, e + 2))
            } else if i > 0 && b[i - 1].is_ascii_digit() {
                None
            } else {
                find_unescaped(text, i + 1, "$", false).map(|e| (i + 1, e, e + 1))
            }
        } else if b[i] == b'\\'
            && !escaped
            && (b.get(i + 1) == Some(&b'[') || b.get(i + 1) == Some(&b'('))
        {
            let close = if b[i + 1] == b'[' { "\\]" } else { "\\)" };
            find_unescaped(text, i + 2, close, b[i + 1] == b'[').map(|e| (i + 2, e, e + 2))
        } else {
            None
        };
        match found {
            Some((cs, ce, end)) => {
                let mut inner = text[cs..ce].to_string();
                let mut end = end;
                // A percent sign right after the environment belongs to the answer.
                let after = &text[end..];
                let trimmed = after.trim_start();
                for p in ["\\%", "%"] {
                    if trimmed.starts_with(p) {
                        inner.push_str("\\%");
                        end += after.len() - trimmed.len() + p.len();
                        break;
                    }
                }
                if !inner.trim().is_empty() {
                    raw.push(Hit {
                        start: i,
                        end,
                        text: inner,
                    });
                }
                i = end;
            }
            None => i += 1,
        }
    }
    // Join chains separated only by ",", "and", "or".
    let mut joined: Vec<Hit> = Vec::new();
    for h in raw {
        if let Some(last) = joined.last_mut() {
            let between = text[last.end..h.start].trim();
            let sep = between.trim_start_matches(',').trim();
            if between == "," || sep == "and" || sep == "or" {
                last.text = format!("{},{}", last.text, h.text);
                last.end = h.end;
                continue;
            }
        }
        joined.push(h);
    }
    // Bare \frac{n}{m} outside any environment.
    let mut pos = 0;
    let mut fracs = Vec::new();
    while let Some(off) = text[pos..].find("\\frac{") {
        let start = pos + off;
        pos = start + 6;
        // `joined` is sorted by start: the environment that could hold this \frac is the last
        // one starting at or before it.
        let inside = joined[..joined.partition_point(|h| h.start <= start)]
            .last()
            .is_some_and(|h| start < h.end);
        if inside {
            continue;
        }
        if let Some((_, den_end)) = simple_frac_at(text, start) {
            fracs.push(Hit {
                start,
                end: den_end,
                text: text[start..den_end].to_string(),
            });
        }
    }
    joined.extend(fracs);
    joined.sort_by_key(|h| h.start);
    joined
}

fn simple_frac_at(text: &str, start: usize) -> Option<(usize, usize)> {
    let is_num = |s: &str| {
        let s = s.strip_prefix('-').unwrap_or(s);
        !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit() || c == b'.')
    };
    let a = start + 6;
    let a_end = a + text[a..].find('}')?;
    if !is_num(&text[a..a_end]) || !text[a_end + 1..].starts_with('{') {
        return None;
    }
    let b = a_end + 2;
    let b_end = b + text[b..].find('}')?;
    if !is_num(&text[b..b_end]) {
        return None;
    }
    Some((a_end, b_end + 1))
}

fn find_unescaped(text: &str, from: usize, pat: &str, multiline: bool) -> Option<usize> {
    let mut pos = from;
    while pos <= text.len() {
        let off = text[pos..].find(pat)?;
        let at = pos + off;
        if !multiline && text[from..at].contains('\n') {
            return None;
        }
        if at > 0 && text.as_bytes()[at - 1] == b'\\' {
            pos = at + pat.len();
            continue;
        }
        return Some(at);
    }
    None
}

/// `\boxed{...}` / `\fbox{...}` at `at` with balanced braces (to the end of text when unclosed).
fn boxed_at(text: &str, at: usize) -> Option<Hit> {
    let cmd_len = if text[at..].starts_with("\\boxed") {
        6
    } else {
        5
    };
    let b = text.as_bytes();
    let mut i = at + cmd_len;
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    if i >= b.len() {
        return None;
    }
    if b[i] != b'{' {
        // "\boxed 5": one token up to whitespace or '$'.
        let rest = &text[i..];
        let len = rest
            .find(|c: char| c.is_whitespace() || c == '$')
            .unwrap_or(rest.len());
        return (len > 0).then(|| Hit {
            start: at,
            end: i + len,
            text: rest[..len].to_string(),
        });
    }
    let open = i;
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(Hit {
                        start: at,
                        end: i + 1,
                        text: text[open + 1..i].to_string(),
                    });
                }
            }
            _ => {}
        }
        i += 1;
    }
    // Unclosed: take everything after the brace (a truncated response).
    Some(Hit {
        start: at,
        end: b.len(),
        text: text[open + 1..].to_string(),
    })
}

/// The last `\boxed{}` in the text. Boxes close together, or separated by "and", "or", "," within
/// a short gap, are one answer: "\boxed{1} and \boxed{2}" is the list 1, 2.
fn last_boxed(text: &str) -> Option<Hit> {
    let mut parts: Vec<Hit> = Vec::new();
    let mut limit = text.len();
    loop {
        let region = &text[..limit];
        let at = match (region.rfind("\\boxed"), region.rfind("\\fbox")) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let Some(h) = boxed_at(text, at) else {
            limit = at;
            continue;
        };
        if h.end > limit {
            // A box that encloses the later one (\boxed{\boxed{1}}): keep the later one only.
            if parts.is_empty() {
                parts.push(h);
            }
            break;
        }
        if let Some(next) = parts.last() {
            let between = &text[h.end..next.start];
            let gap = between.chars().count();
            let separated = between.contains(',')
                || between.contains(';')
                || between.split_whitespace().any(|w| w == "and" || w == "or");
            let same = h.text.trim() == next.text.trim();
            // Boxes in different math environments are one answer only when nothing but a
            // separator stands between the environments ("$\boxed{2}$ and $\boxed{3}$"), as
            // math-verify chains environments; "$\boxed{9}$, and then we get $\boxed{12}$"
            // is an intermediate result and the answer.
            let joinable = if crosses_environment(between) {
                bare_separator(between)
            } else {
                gap < 10 || (gap < 70 && separated && !same)
            };
            if !joinable {
                break;
            }
            if same {
                // Repeated box of the same answer: one answer, not a list.
                limit = at;
                continue;
            }
        }
        parts.push(h);
        limit = at;
        if limit == 0 {
            break;
        }
    }
    let first = parts.last()?.start;
    let end = parts.first()?.end;
    let texts: Vec<String> = parts
        .iter()
        .rev()
        .map(|h| h.text.trim().to_string())
        .collect();
    Some(Hit {
        start: first,
        end,
        text: texts.join(","),
    })
}

const MATH_DELIMITERS: [&str; 5] = ["$", "\\]", "\\)", "\\[", "\\("];

/// Whether text between two boxes closes or opens a math environment.
fn crosses_environment(between: &str) -> bool {
    MATH_DELIMITERS.iter().any(|d| between.contains(d))
}

/// Between two boxes in neighbouring environments: the rest of the first environment, its
/// closing delimiter, only ",", "and", "or" (or spaces), the next opening delimiter, the start of
/// the next environment: "$k=\boxed{45}$ and $n=\boxed{2}$".
fn bare_separator(between: &str) -> bool {
    let delimiter_at = |i: usize| {
        MATH_DELIMITERS
            .iter()
            .find(|d| between[i..].starts_with(**d))
            .map(|d| d.len())
    };
    let mut delimiters = Vec::new();
    let mut i = 0;
    while i < between.len() {
        match delimiter_at(i) {
            Some(len) => {
                // `$$` is one delimiter.
                let len = if between[i + len..].starts_with('$') && len == 1 {
                    2
                } else {
                    len
                };
                delimiters.push((i, i + len));
                i += len;
            }
            None => i += between[i..].chars().next().map_or(1, char::len_utf8),
        }
    }
    let (Some(close), Some(open)) = (delimiters.first(), delimiters.last()) else {
        return false;
    };
    if delimiters.len() != 2 {
        return false;
    }
    let middle = between[close.1..open.0].replace("\\quad", " ");
    let words: Vec<&str> = middle
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    words.len() <= 1 && words.iter().all(|w| *w == "and" || *w == "or")
}

/// Short text that reads as a formula rather than prose ("x+1", "\sqrt{2}", "(1, 2)").
fn looks_like_bare_answer(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() || t.len() > 300 {
        return false;
    }
    // Prose has consecutive words of letters; formulas have at most isolated ones.
    let mut prev_word = false;
    for w in t.split_whitespace() {
        let word = w.trim_matches(|c: char| c.is_ascii_punctuation());
        let is_word = word.len() >= 2 && word.chars().all(char::is_alphabetic);
        if is_word && prev_word {
            return false;
        }
        prev_word = is_word;
    }
    true
}

/// The gold answer from a reference: a box or `####` when present, else the whole text when it is
/// a bare answer, else the same extraction as a response.
pub fn gold_candidates(gold: &str) -> Vec<Candidate> {
    // Gold answers always allow every fallback: a reference is never "no answer" by choice.
    let opts = ExtractOptions {
        last_number_fallback: true,
        whole_fallback: true,
    };
    let has_marker = gold.contains("\\boxed") || gold.contains("\\fbox") || gold.contains("####");
    if !has_marker && looks_like_bare_answer(gold) {
        let mut v = vec![Candidate {
            text: gold.trim().to_string(),
            source: Source::Whole,
        }];
        v.extend(candidates(gold, &opts));
        return v;
    }
    candidates(gold, &opts)
}

/// The content of the last `\boxed{}` (joined with neighbouring boxes), if any.
pub fn last_boxed_content(text: &str) -> Option<String> {
    last_boxed(text).map(|h| h.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: ExtractOptions = ExtractOptions {
        last_number_fallback: true,
        whole_fallback: true,
    };

    fn first(s: &str) -> Option<String> {
        candidates(s, &OPTS).into_iter().next().map(|c| c.text)
    }

    #[test]
    fn boxed_wins_and_braces_balance() {
        assert_eq!(
            first("so 3 then \\boxed{\\frac{1}{2}} and 7").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(first("\\boxed{1} and \\boxed{2}").as_deref(), Some("1,2"));
        assert_eq!(
            first("first \\boxed{1}. Long digression here about many things. \\boxed{2}")
                .as_deref(),
            Some("2")
        );
        assert_eq!(first("\\boxed{42").as_deref(), Some("42"));
        assert_eq!(first("\\fbox{7}").as_deref(), Some("7"));
    }

    #[test]
    fn anchors_and_fallbacks() {
        assert_eq!(
            first("The final answer is 7. Then 42").as_deref(),
            Some("7")
        );
        assert_eq!(
            first("The answer is 2. Actually wait 5").as_deref(),
            Some("2")
        );
        assert_eq!(first("blah\n#### 1,234").as_deref(), Some("1,234"));
        assert_eq!(first("we get $x^2$ here").as_deref(), Some("x^2"));
        assert_eq!(first("costs $5 and then 6 more").as_deref(), Some("6"));
        assert_eq!(first("it is $1$, $2$ and $3$").as_deref(), Some("1,2,3"));
        assert_eq!(first("x+1").as_deref(), Some("x+1"));
        assert_eq!(first("so we obtain 10^6.").as_deref(), Some("10^6"));
        assert_eq!(first("so we obtain 2^{-3} kg").as_deref(), Some("2^{-3}"));
        assert_eq!(first("I do not know"), None);
        let no_num = ExtractOptions {
            last_number_fallback: false,
            whole_fallback: false,
        };
        assert!(candidates("so it is 12 apples", &no_num).is_empty());
    }
}
