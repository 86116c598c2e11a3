//! LaTeX normalisation of an extracted answer, before parsing.
//!
//! Removes what carries no mathematical content (sizing commands, spacing, dollar signs, units,
//! degree marks) and rewrites the common sloppy forms (`\dfrac`, `\frac12`, `\sqrt3`) so the parser
//! sees one spelling per construct.

use regex::Regex;
use std::sync::LazyLock;

fn re(pattern: &str) -> Regex {
    // The patterns are constants in this file; a bad one is a programming error caught by tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("bad built-in regex {pattern}: {e}"))
}

static SIZING: LazyLock<Regex> =
    LazyLock::new(|| re(r"\\(?:left|right|middle|[bB]igg?[lr]?)(?:[^a-zA-Z]|$)"));
static DIGIT_SPACE_DIGITS: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\d)(?:\\[,!;: ]|,\\!|\\!,|\{,\}|~)(\d{3})"));
/// `3{,}5`: LaTeX's decimal comma (`{,}` before three digits is a thousands separator instead).
static BRACED_COMMA: LazyLock<Regex> = LazyLock::new(|| re(r"(\d)\{,\}(\d+)"));
/// Digits grouped by plain spaces: `1 000 000`.
static SPACE_GROUPED: LazyLock<Regex> = LazyLock::new(|| re(r"\d+(?: \d{3})+"));
static SPACING: LazyLock<Regex> = LazyLock::new(|| re(r"\\[,!;: ]|\\q?quad\b|~"));
static FRAC_VARIANTS: LazyLock<Regex> = LazyLock::new(|| re(r"\\[dtc]frac"));
static DEGREES: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree|\^\s*\{\s*\\text\{\s*o\s*\}\s*\}")
});
static PERCENT_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\s*\\text\s*\{\s*(?:percent|percentage|pct|\\%)\s*\}|\s*\b(?:percentage|percent|pct)\b")
});
/// Unit words at the end: `\text{ cm}^2`, `\mathrm{~km} / \mathrm{h}`, `\,\text{m/s}`.
static UNIT_TEXT_AT_END: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:\s*(?:/|\\cdot)?\s*\\(?:text|textnormal|textrm|textbf|textit|textsf|mbox|mathrm)",
        r"\s*\{[^{}]*\}(?:\s*\^\s*\{?-?\d\}?)?)+\s*$"
    ))
});
/// Currency signs before or after a number (`€18`, `18€`, `£5`); `\$` is dropped with `$`.
static CURRENCY: LazyLock<Regex> = LazyLock::new(|| re(r"[€£¥₹]"));
static UNIT_WORD_AT_END: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"([\d}\s)])\s*(?:square\s+|sq\.?\s*|cubic\s+)?(?:",
        r"cm|mm|km|m|kg|g|mg|lb|lbs|oz|ft|feet|foot|inch|inches|in|yd|yard|mile|miles|mph|kph|",
        r"meter|metre|liter|litre|ml|l|gallon|hour|hours|hr|hrs|minute|minutes|min|mins|second|seconds|",
        r"sec|secs|s|day|days|week|weeks|month|months|year|years|yr|yrs|degree|degrees|deg|units?|",
        r"dollars?|cents?|rupees?|rs|people|persons?|students?|apples?|marbles?|pages?|books?|",
        r"meters|metres|liters|litres|gallons|miles|kilometers|kilograms|grams|pounds|ounces",
        r")\.?(?:\s*\^\s*\{?\d\}?)?\s*$"
    ))
});
static AND_OR: LazyLock<Regex> =
    LazyLock::new(|| re(r"\s*\\text\s*\{\s*(?:and|or)\s*\}\s*|,?\s+\b(?:and|or)\b\s+"));
static FRAC_SHORT: LazyLock<Regex> = LazyLock::new(|| re(r"\\frac\s*(\d)\s*(\d)"));
static FRAC_SHORT_NUM: LazyLock<Regex> = LazyLock::new(|| re(r"\\frac\s*(\d)\s*\{"));
static FRAC_SHORT_DEN: LazyLock<Regex> = LazyLock::new(|| re(r"\\frac\s*\{([^{}]*)\}\s*(\d)"));
static SQRT_SHORT: LazyLock<Regex> = LazyLock::new(|| re(r"\\sqrt\s*(\d|[a-zA-Z])"));
/// "x \in [1, 2]", "(x,y) \in \{...\}": membership in the answer set; keep the set.
static LEADING_MEMBERSHIP: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^(?:[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?",
        r"|\(\s*[a-zA-Z](?:\s*,\s*[a-zA-Z])*\s*\))\s*\\in\b\s*"
    ))
});
static TEXT_WRAPPER: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\\(?:text|textbf|textnormal|textrm|mathrm|mathbf|textit|mbox|boxed)\s*\{(.*)\}$")
});

/// Stand-in for `\\` while the spacing rules run (a control character never in answers).
const ROW_SEP: &str = "\u{1}";

/// Normalises an extracted answer.
pub fn normalize(answer: &str) -> String {
    let mut s = answer.trim().to_string();
    // Doubled backslashes from JSON-escaped LaTeX (\\frac) outside matrices and arrays.
    if !s.contains("matrix") && !s.contains("{array}") && s.contains("\\\\") {
        s = s.replace("\\\\", "\\");
    }
    s = s.replace("\\$", "").replace('$', "");
    s = CURRENCY.replace_all(&s, "").into_owned();
    // Protect matrix row separators (\\) from the single-backslash rules below.
    s = s.replace("\\\\", ROW_SEP);
    s = s.replace("\\displaystyle", "").replace("\\textstyle", "");
    s = SIZING
        .replace_all(&s, |c: &regex::Captures| tail_char(&c[0]))
        .into_owned();
    // Thousands separators written with a thin space: 1\,000 → 1000 (twice for 1\,000\,000).
    for _ in 0..2 {
        s = DIGIT_SPACE_DIGITS.replace_all(&s, "$1$2").into_owned();
    }
    s = BRACED_COMMA
        .replace_all(&s, |c: &regex::Captures| {
            let sep = if c[2].len() == 3 { "" } else { "." };
            format!("{}{sep}{}", &c[1], &c[2])
        })
        .into_owned();
    s = s.replace("{,}", ",");
    s = join_space_grouped_digits(&s);
    s = SPACING.replace_all(&s, " ").into_owned();
    s = FRAC_VARIANTS.replace_all(&s, "\\frac").into_owned();
    s = DEGREES.replace_all(&s, "").into_owned();
    s = PERCENT_WORD.replace_all(&s, "\\%").into_owned();
    s = s.replace("\\text{%}", "\\%");
    s = unwrap_text(s);
    s = drop_approximation(&s);
    // Units only come off the end, and never leave an empty answer.
    for _ in 0..2 {
        let stripped = UNIT_TEXT_AT_END.replace(&s, "").trim().to_string();
        if !stripped.is_empty() && stripped != s {
            s = stripped;
        }
        let stripped = UNIT_WORD_AT_END.replace(&s, "$1").trim().to_string();
        if !stripped.is_empty() && stripped != s && stripped.chars().any(|c| c.is_ascii_digit()) {
            s = stripped;
        }
    }
    s = AND_OR.replace_all(&s, ",").into_owned();
    s = FRAC_SHORT.replace_all(&s, "\\frac{$1}{$2}").into_owned();
    s = FRAC_SHORT_NUM.replace_all(&s, "\\frac{$1}{").into_owned();
    s = FRAC_SHORT_DEN
        .replace_all(&s, "\\frac{$1}{$2}")
        .into_owned();
    s = SQRT_SHORT.replace_all(&s, "\\sqrt{$1}").into_owned();
    s = LEADING_MEMBERSHIP.replace(s.trim(), "").into_owned();
    s = s
        .trim()
        .trim_end_matches(['.', ',', ';'])
        .trim()
        .to_string();
    s = unwrap_text(s);
    s = s.replace(ROW_SEP, "\\\\");
    // "(A)" as a choice letter.
    let b = s.as_bytes();
    if b.len() == 3 && b[0] == b'(' && b[2] == b')' && b[1].is_ascii_alphabetic() {
        s = (b[1] as char).to_string();
    }
    s
}

/// `\frac{\pi}{4} \approx 0.785`: the exact value before the approximation; `x \approx 0.785`
/// (a bare variable first) is read as `x = 0.785`.
fn drop_approximation(s: &str) -> String {
    let Some((exact, approx)) = s.split_once("\\approx") else {
        return s.to_string();
    };
    let exact = exact.trim();
    let is_variable = !exact.is_empty()
        && exact.len() <= 3
        && exact
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == '_' || c.is_ascii_digit());
    if exact.is_empty() {
        approx.trim().to_string()
    } else if is_variable {
        format!("{exact} = {}", approx.trim())
    } else {
        exact.to_string()
    }
}

/// A whole answer wrapped in `\text{...}` (or `\textbf`, ...): the content.
fn unwrap_text(mut s: String) -> String {
    while let Some(c) = TEXT_WRAPPER.captures(&s) {
        let inner = c[1].to_string();
        if !balanced(&inner) {
            break;
        }
        s = inner.trim().to_string();
    }
    s
}

/// `1 000 000` → `1000000`: a first group of 1-3 digits, then groups of exactly three.
fn join_space_grouped_digits(s: &str) -> String {
    SPACE_GROUPED
        .replace_all(s, |c: &regex::Captures| {
            let m = c.get(0).map_or("", |m| m.as_str());
            let first = m.split(' ').next().unwrap_or("");
            let end = c.get(0).map_or(0, |m| m.end());
            let digit_follows = s[end..].starts_with(|ch: char| ch.is_ascii_digit() || ch == '.');
            if first.len() <= 3 && !digit_follows {
                m.replace(' ', "")
            } else {
                m.to_string()
            }
        })
        .into_owned()
}

fn tail_char(m: &str) -> String {
    // SIZING consumes one character after the command name; keep it unless it is a space or '.'.
    match m.chars().last() {
        Some(c) if !c.is_ascii_alphabetic() && c != '.' && !c.is_whitespace() => c.to_string(),
        _ => String::new(),
    }
}

/// Braces balanced (ignoring escaped ones).
pub fn balanced(s: &str) -> bool {
    let mut depth: i64 = 0;
    let mut prev_backslash = false;
    for c in s.chars() {
        if !prev_backslash {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth < 0 {
                        return false;
                    }
                }
                _ => {}
            }
        }
        prev_backslash = c == '\\' && !prev_backslash;
    }
    depth == 0
}

/// Maximum brace/bracket nesting depth, found in one pass without recursion.
pub fn nesting_depth(s: &str) -> usize {
    let mut depth: usize = 0;
    let mut max = 0;
    for c in s.chars() {
        match c {
            '{' | '(' | '[' => {
                depth += 1;
                max = max.max(depth);
            }
            '}' | ')' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Whitespace-free form used for the exact-string fast path.
pub fn compact(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_decoration() {
        assert_eq!(normalize("\\left( 1, 2 \\right]"), "( 1, 2 ]");
        assert_eq!(normalize("30^\\circ"), "30");
        assert_eq!(normalize("\\$5"), "5");
        assert_eq!(normalize("5\\text{ cm}^2"), "5");
        assert_eq!(normalize("12 meters"), "12");
        assert_eq!(normalize("1\\,000\\,000"), "1000000");
        assert_eq!(normalize("\\dfrac12"), "\\frac{1}{2}");
        assert_eq!(normalize("\\sqrt3"), "\\sqrt{3}");
        assert_eq!(normalize("\\text{(B)}"), "B");
        assert_eq!(normalize("50 percent"), "50\\%");
        assert_eq!(normalize("\\text{Monday}"), "Monday");
        assert_eq!(normalize("x \\in [-2, 7]"), "[-2, 7]");
        assert_eq!(normalize("x_1\\in(0,\\infty)"), "(0,\\infty)");
        assert_eq!(normalize("\\infty"), "\\infty");
    }

    #[test]
    fn depth_scan() {
        assert_eq!(nesting_depth("{{()}}"), 3);
        assert!(!balanced("{"));
        assert!(balanced("\\{1\\}"));
    }
}
