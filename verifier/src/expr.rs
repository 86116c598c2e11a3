//! Expression trees for normalised LaTeX answers: a lexer and a depth-limited Pratt parser.
//!
//! Every recursive call counts against `max_depth`, and sums/products are stored flat, so the tree
//! depth is bounded by the limit and nothing that walks it (evaluation, printing, drop) can
//! overflow the stack, whatever the input.
//!
//! Over 800 lines on purpose: the lexer, the parser and the tree's printer share the token and node
//! types and the depth accounting, and read best together.

use crate::number::parse_decimal;
use num_rational::BigRational;

/// Relations allowed in equations and inequalities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl RelOp {
    /// The same relation read right-to-left (a < b  ⇔  b > a).
    pub fn flipped(self) -> RelOp {
        match self {
            RelOp::Lt => RelOp::Gt,
            RelOp::Gt => RelOp::Lt,
            RelOp::Le => RelOp::Ge,
            RelOp::Ge => RelOp::Le,
            other => other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Sqrt,
    Sin,
    Cos,
    Tan,
    Cot,
    Sec,
    Csc,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Ln,
    Exp,
    Abs,
    Floor,
    Ceil,
}

/// A parsed answer. Scalars, and the containers answers come in.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A literal; `decimal` records that it was written with a decimal point (so it is compared
    /// with a tolerance, like math-verify's floats).
    Num {
        value: BigRational,
        decimal: bool,
    },
    Pi,
    E,
    Inf,
    /// A variable or a text word (lower-cased: math-verify treats `A` and `a` alike).
    Sym(String),
    Add(Vec<Expr>),
    Mul(Vec<Expr>),
    Neg(Box<Expr>),
    Inv(Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    Func(Func, Box<Expr>),
    Log {
        base: Option<Box<Expr>>,
        arg: Box<Expr>,
    },
    Factorial(Box<Expr>),
    Binom(Box<Expr>, Box<Expr>),
    /// `x\%`: compared as x or x/100 depending on configuration.
    Percent(Box<Expr>),
    /// An equation or (chained) inequality: exprs[0] ops[0] exprs[1] ops[1] exprs[2] ...
    Rel(Vec<Expr>, Vec<RelOp>),
    Tuple(Vec<Expr>),
    Set(Vec<Expr>),
    Interval {
        lo: Box<Expr>,
        hi: Box<Expr>,
        lo_closed: bool,
        hi_closed: bool,
    },
    Union(Vec<Expr>),
    Matrix(Vec<Vec<Expr>>),
    /// `\sum_{var=lo}^{hi} body`, or `\prod` when `product`.
    Sum {
        var: String,
        lo: Box<Expr>,
        hi: Box<Expr>,
        body: Box<Expr>,
        product: bool,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    #[error("more than {0} tokens")]
    TooLong(usize),
    #[error("number with more than {0} digits")]
    NumberTooLong(usize),
    #[error("unexpected {0}")]
    Unexpected(String),
    #[error("unexpected end of input")]
    Eof,
    #[error("unsupported command \\{0}")]
    Unsupported(String),
}

/// Limits the parser enforces.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    pub max_depth: usize,
    pub max_tokens: usize,
    pub max_digits: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_depth: 128,
            max_tokens: 4096,
            max_digits: 2000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Br {
    Paren,
    Square,
    Brace,
    SetBrace,
    Angle,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(String),
    Sym(String),
    Cmd(String),
    Op(char),
    Open(Br),
    Close(Br),
    Bar,
    Comma,
    Rel(RelOp),
    Amp,
    RowSep,
    Begin(String),
    End(String),
}

const FUNC_WORDS: &[&str] = &[
    "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh",
    "tanh", "ln", "log", "exp", "pi",
];

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
];

fn lex(s: &str, limits: &ParseLimits) -> Result<Vec<Tok>, ParseError> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if toks.len() > limits.max_tokens {
            return Err(ParseError::TooLong(limits.max_tokens));
        }
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            let mut text = String::new();
            while i < chars.len() && chars[i].is_ascii_digit() {
                text.push(chars[i]);
                i += 1;
            }
            // Thousands separators: 1,234,567 (groups of exactly three digits, no spaces).
            if text.len() <= 3 && !text.is_empty() {
                while i + 3 < chars.len() + 1
                    && chars.get(i) == Some(&',')
                    && chars[i + 1..]
                        .iter()
                        .take(3)
                        .filter(|d| d.is_ascii_digit())
                        .count()
                        == 3
                    && !chars.get(i + 4).is_some_and(|d| d.is_ascii_digit())
                {
                    text.extend(&chars[i + 1..i + 4]);
                    i += 4;
                }
            }
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                text.push('.');
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    text.push(chars[i]);
                    i += 1;
                }
            } else if chars.get(i) == Some(&'.') && !text.is_empty() {
                // "5." — a trailing dot ends a sentence.
                i += 1;
            }
            if text.len() > limits.max_digits {
                return Err(ParseError::NumberTooLong(limits.max_digits));
            }
            debug_assert!(i > start);
            toks.push(Tok::Num(text));
            continue;
        }
        if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            if i == start {
                // A non-ASCII letter: one symbol.
                toks.push(Tok::Sym(c.to_lowercase().collect()));
                i += 1;
                continue;
            }
            let word: String = chars[start..i].iter().collect();
            if FUNC_WORDS.contains(&word.as_str()) {
                toks.push(Tok::Cmd(word));
            } else if word == "infty" || word == "inf" || word == "infinity" {
                toks.push(Tok::Cmd("infty".into()));
            } else {
                // In LaTeX, adjacent letters are a product of single-letter variables.
                for ch in word.chars() {
                    toks.push(Tok::Sym(ch.to_ascii_lowercase().to_string()));
                }
            }
            continue;
        }
        if c == '\\' {
            i += 1;
            let Some(&n) = chars.get(i) else { break };
            if !n.is_ascii_alphabetic() {
                i += 1;
                match n {
                    '{' => toks.push(Tok::Open(Br::SetBrace)),
                    '}' => toks.push(Tok::Close(Br::SetBrace)),
                    '\\' => toks.push(Tok::RowSep),
                    '%' => toks.push(Tok::Op('%')),
                    '|' => toks.push(Tok::Bar),
                    '$' | ',' | ';' | ':' | '!' | ' ' => {}
                    other => return Err(ParseError::Unexpected(format!("\\{other}"))),
                }
                continue;
            }
            let start = i;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            match name.as_str() {
                "cdot" | "times" | "ast" => toks.push(Tok::Op('*')),
                "div" => toks.push(Tok::Op('/')),
                "le" | "leq" | "leqslant" => toks.push(Tok::Rel(RelOp::Le)),
                "ge" | "geq" | "geqslant" => toks.push(Tok::Rel(RelOp::Ge)),
                "lt" => toks.push(Tok::Rel(RelOp::Lt)),
                "gt" => toks.push(Tok::Rel(RelOp::Gt)),
                "ne" | "neq" => toks.push(Tok::Rel(RelOp::Ne)),
                "approx" | "equiv" => toks.push(Tok::Rel(RelOp::Eq)),
                "lbrace" => toks.push(Tok::Open(Br::SetBrace)),
                "rbrace" => toks.push(Tok::Close(Br::SetBrace)),
                "langle" => toks.push(Tok::Open(Br::Angle)),
                "rangle" => toks.push(Tok::Close(Br::Angle)),
                "lbrack" => toks.push(Tok::Open(Br::Square)),
                "rbrack" => toks.push(Tok::Close(Br::Square)),
                "vert" | "lvert" | "rvert" | "mid" => toks.push(Tok::Bar),
                "infty" | "infin" => toks.push(Tok::Cmd("infty".into())),
                "begin" | "end" => {
                    let env = read_group_text(&chars, &mut i);
                    toks.push(if name == "begin" {
                        Tok::Begin(env)
                    } else {
                        Tok::End(env)
                    });
                }
                "text" | "mathrm" | "textrm" | "mathbf" | "textbf" | "mathit" | "textit"
                | "mbox" | "operatorname" | "textnormal" => {
                    let word = read_group_text(&chars, &mut i);
                    let word = word.trim().to_lowercase();
                    if !word.is_empty() {
                        if FUNC_WORDS.contains(&word.as_str()) {
                            toks.push(Tok::Cmd(word));
                        } else {
                            toks.push(Tok::Sym(word));
                        }
                    }
                }
                "quad" | "qquad" | "displaystyle" | "textstyle" | "left" | "right" | "big"
                | "Big" | "bigl" | "bigr" | "Bigl" | "Bigr" | "circ" | "degree" | "dots"
                | "ldots" | "cdots" => {}
                g if GREEK.contains(&g) => toks.push(Tok::Sym(g.to_lowercase())),
                "imath" => toks.push(Tok::Sym("i".into())),
                _ => toks.push(Tok::Cmd(name)),
            }
            continue;
        }
        i += 1;
        match c {
            '!' if chars.get(i) == Some(&'=') => {
                i += 1;
                toks.push(Tok::Rel(RelOp::Ne));
            }
            ':' => {
                if let Some(time) = time_of_day(&toks, &chars, i) {
                    // 12:00 is a time, compared as written (12:00 is not 1:00), not 12/0.
                    toks.pop();
                    toks.push(Tok::Sym(time));
                    i += 2;
                } else if matches!(toks.last(), Some(Tok::Num(_) | Tok::Sym(_) | Tok::Close(_)))
                    && chars[i..]
                        .iter()
                        .find(|c| !c.is_whitespace())
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '(' || *c == '\\')
                {
                    // A ratio 3:2 is the quotient 3/2 (as math-verify reads it).
                    toks.push(Tok::Op('/'));
                }
            }
            '+' | '-' | '*' | '/' | '^' | '_' | '!' | '%' | '\'' => toks.push(Tok::Op(c)),
            '×' | '·' => toks.push(Tok::Op('*')),
            '÷' => toks.push(Tok::Op('/')),
            '−' => toks.push(Tok::Op('-')),
            'π' => toks.push(Tok::Cmd("pi".into())),
            '∞' => toks.push(Tok::Cmd("infty".into())),
            '(' => toks.push(Tok::Open(Br::Paren)),
            ')' => toks.push(Tok::Close(Br::Paren)),
            '[' => toks.push(Tok::Open(Br::Square)),
            ']' => toks.push(Tok::Close(Br::Square)),
            '{' => toks.push(Tok::Open(Br::Brace)),
            '}' => toks.push(Tok::Close(Br::Brace)),
            '|' => toks.push(Tok::Bar),
            ',' | ';' => toks.push(Tok::Comma),
            '&' => toks.push(Tok::Amp),
            '=' => toks.push(Tok::Rel(RelOp::Eq)),
            '≤' => toks.push(Tok::Rel(RelOp::Le)),
            '≥' => toks.push(Tok::Rel(RelOp::Ge)),
            '≠' => toks.push(Tok::Rel(RelOp::Ne)),
            '<' => {
                if chars.get(i) == Some(&'=') {
                    i += 1;
                    toks.push(Tok::Rel(RelOp::Le));
                } else {
                    toks.push(Tok::Rel(RelOp::Lt));
                }
            }
            '>' => {
                if chars.get(i) == Some(&'=') {
                    i += 1;
                    toks.push(Tok::Rel(RelOp::Ge));
                } else {
                    toks.push(Tok::Rel(RelOp::Gt));
                }
            }
            '°' | '~' | '.' | '$' => {}
            other => return Err(ParseError::Unexpected(other.to_string())),
        }
    }
    if toks.len() > limits.max_tokens {
        return Err(ParseError::TooLong(limits.max_tokens));
    }
    Ok(toks)
}

/// `h:mm` right after an hour token (`toks` ends with it, `chars[at..]` follows the colon): the
/// time as one token, e.g. "9:30". Hours up to 24, minutes two digits below 60.
fn time_of_day(toks: &[Tok], chars: &[char], at: usize) -> Option<String> {
    let Some(Tok::Num(hour)) = toks.last() else {
        return None;
    };
    let minutes: String = chars.get(at..at + 2)?.iter().collect();
    let is_two_digits = minutes.chars().all(|c| c.is_ascii_digit());
    if !is_two_digits || chars.get(at + 2).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: u32 = hour.parse().ok()?;
    let m: u32 = minutes.parse().ok()?;
    (hour.len() <= 2 && h <= 24 && m < 60).then(|| format!("{h}:{minutes}"))
}

/// Reads `{...}` (balanced) after a command and returns the inner text; empty if there is none.
fn read_group_text(chars: &[char], i: &mut usize) -> String {
    let mut j = *i;
    while j < chars.len() && chars[j].is_whitespace() {
        j += 1;
    }
    if chars.get(j) != Some(&'{') {
        return String::new();
    }
    let mut depth = 0usize;
    let start = j + 1;
    while j < chars.len() {
        match chars[j] {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    *i = j + 1;
                    return chars[start..j].iter().collect();
                }
            }
            _ => {}
        }
        j += 1;
    }
    *i = chars.len();
    chars[start..].iter().collect()
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    limits: &'a ParseLimits,
    /// Open `|...|` pairs: a bar in operator position closes one instead of starting a new one.
    open_bars: usize,
}

/// Parses a normalised answer into an [`Expr`]. A top-level comma list becomes a set, matching
/// math-verify's reading of "1, 2" as {1, 2}.
pub fn parse_answer(s: &str, limits: &ParseLimits) -> Result<Expr, ParseError> {
    let toks = lex(s, limits)?;
    let mut p = Parser {
        toks,
        pos: 0,
        limits,
        open_bars: 0,
    };
    let mut items = p.parse_list(0)?;
    if p.pos < p.toks.len() {
        return Err(ParseError::Unexpected(format!("{:?}", p.toks[p.pos])));
    }
    match items.len() {
        0 => Err(ParseError::Eof),
        1 => Ok(items.remove(0)),
        _ => Ok(Expr::Set(items)),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: &Tok) -> Result<(), ParseError> {
        match self.next() {
            Some(ref got) if got == t => Ok(()),
            Some(got) => Err(ParseError::Unexpected(format!("{got:?}"))),
            None => Err(ParseError::Eof),
        }
    }

    fn depth_check(&self, depth: usize) -> Result<(), ParseError> {
        if depth > self.limits.max_depth {
            Err(ParseError::TooDeep(self.limits.max_depth))
        } else {
            Ok(())
        }
    }

    /// Comma-separated items up to a closing bracket or the end.
    fn parse_list(&mut self, depth: usize) -> Result<Vec<Expr>, ParseError> {
        self.depth_check(depth)?;
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None | Some(Tok::Close(_)) | Some(Tok::End(_)) | Some(Tok::Amp)
                | Some(Tok::RowSep) => break,
                Some(Tok::Comma) => {
                    // Empty item (e.g. a trailing comma): skip it.
                    self.pos += 1;
                    continue;
                }
                _ => {}
            }
            items.push(self.parse_union(depth + 1)?);
            match self.peek() {
                Some(Tok::Comma) => self.pos += 1,
                _ => break,
            }
        }
        Ok(items)
    }

    fn parse_union(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let first = self.parse_rel(depth)?;
        if !matches!(self.peek(), Some(Tok::Cmd(c)) if c == "cup") {
            return Ok(first);
        }
        let mut parts = vec![first];
        while matches!(self.peek(), Some(Tok::Cmd(c)) if c == "cup") {
            self.pos += 1;
            parts.push(self.parse_rel(depth)?);
        }
        Ok(Expr::Union(parts))
    }

    fn parse_rel(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let first = self.parse_expr(0, depth + 1)?;
        let mut exprs = vec![first];
        let mut ops = Vec::new();
        while let Some(Tok::Rel(op)) = self.peek() {
            ops.push(*op);
            self.pos += 1;
            exprs.push(self.parse_expr(0, depth + 1)?);
        }
        if ops.is_empty() {
            Ok(exprs.remove(0))
        } else {
            Ok(Expr::Rel(exprs, ops))
        }
    }

    fn starts_primary(&self, t: &Tok) -> bool {
        match t {
            Tok::Num(_) | Tok::Sym(_) | Tok::Open(_) | Tok::Begin(_) => true,
            Tok::Bar => self.open_bars == 0,
            Tok::Cmd(c) => c != "cup" && c != "pm" && c != "mp",
            _ => false,
        }
    }

    fn parse_expr(&mut self, min_bp: u8, depth: usize) -> Result<Expr, ParseError> {
        self.depth_check(depth)?;
        let mut lhs = self.parse_prefix(depth)?;
        let mut postfix_chain = 0usize;
        while let Some(t) = self.peek().cloned() {
            match t {
                Tok::Op(c @ ('+' | '-')) => {
                    if min_bp > 10 {
                        break;
                    }
                    self.pos += 1;
                    let rhs = self.parse_expr(11, depth + 1)?;
                    let rhs = if c == '-' {
                        Expr::Neg(Box::new(rhs))
                    } else {
                        rhs
                    };
                    lhs = match lhs {
                        Expr::Add(mut v) => {
                            v.push(rhs);
                            Expr::Add(v)
                        }
                        other => Expr::Add(vec![other, rhs]),
                    };
                }
                // a \pm b: both answers, a + b and a - b.
                Tok::Cmd(ref c) if c == "pm" || c == "mp" => {
                    if min_bp > 10 {
                        break;
                    }
                    self.pos += 1;
                    let rhs = self.parse_expr(11, depth + 1)?;
                    let plus = Expr::Add(vec![lhs.clone(), rhs.clone()]);
                    let minus = Expr::Add(vec![lhs, Expr::Neg(Box::new(rhs))]);
                    lhs = if c == "pm" {
                        Expr::Set(vec![plus, minus])
                    } else {
                        Expr::Set(vec![minus, plus])
                    };
                }
                Tok::Op(c @ ('*' | '/')) => {
                    if min_bp > 20 {
                        break;
                    }
                    self.pos += 1;
                    let rhs = self.parse_expr(21, depth + 1)?;
                    let rhs = if c == '/' {
                        Expr::Inv(Box::new(rhs))
                    } else {
                        rhs
                    };
                    lhs = push_mul(lhs, rhs);
                }
                Tok::Op('^') => {
                    if min_bp > 30 {
                        break;
                    }
                    self.pos += 1;
                    // Right-associative: the exponent binds at the same level.
                    let rhs = self.parse_expr(30, depth + 1)?;
                    lhs = Expr::Pow(Box::new(lhs), Box::new(rhs));
                }
                Tok::Op('!') | Tok::Op('%') | Tok::Op('\'') | Tok::Op('_') => {
                    postfix_chain += 1;
                    self.depth_check(depth + postfix_chain)?;
                    self.pos += 1;
                    lhs = match t {
                        Tok::Op('!') => Expr::Factorial(Box::new(lhs)),
                        Tok::Op('%') => Expr::Percent(Box::new(lhs)),
                        Tok::Op('\'') => match lhs {
                            Expr::Sym(s) => Expr::Sym(format!("{s}'")),
                            _ => return Err(ParseError::Unexpected("'".into())),
                        },
                        _ => {
                            // Subscript: fold into the symbol's name (a_1, x_{n}).
                            let sub = self.parse_group(depth + 1)?;
                            match lhs {
                                Expr::Sym(s) => Expr::Sym(format!("{s}_{}", display(&sub))),
                                // 204_5: digits in a base, kept as written (see `based_number`).
                                ref n if is_integer_literal(n) && is_integer_literal(&sub) => {
                                    Expr::Sym(format!("{}_{}", display(n), display(&sub)))
                                }
                                _ => return Err(ParseError::Unexpected("_".into())),
                            }
                        }
                    };
                }
                ref t if self.starts_primary(t) => {
                    // Implicit multiplication: 2x, 3\sqrt{2}, (a)(b).
                    if min_bp > 20 {
                        break;
                    }
                    let rhs = self.parse_expr(21, depth + 1)?;
                    // A mixed number: 2\frac{1}{3} is 2 + 1/3.
                    if is_integer_literal(&lhs)
                        && matches!(t, Tok::Cmd(c) if c.ends_with("frac"))
                        && is_simple_fraction(&rhs)
                    {
                        lhs = Expr::Add(vec![lhs, rhs]);
                    } else {
                        lhs = push_mul(lhs, rhs);
                    }
                }
                _ => break,
            }
        }
        Ok(lhs)
    }

    /// A `{...}` group, or a single primary (as in `\frac12` or `x^2`).
    fn parse_group(&mut self, depth: usize) -> Result<Expr, ParseError> {
        self.depth_check(depth)?;
        if self.peek() == Some(&Tok::Open(Br::Brace)) {
            self.pos += 1;
            let mut items = self.parse_list(depth + 1)?;
            self.expect(&Tok::Close(Br::Brace))?;
            return match items.len() {
                0 => Err(ParseError::Eof),
                1 => Ok(items.remove(0)),
                _ => Ok(Expr::Set(items)),
            };
        }
        // A bare digit string after \frac or ^ takes one digit only in LaTeX; normalisation has
        // already braced those, so here a whole token is fine.
        self.parse_prefix(depth + 1)
    }

    fn parse_prefix(&mut self, depth: usize) -> Result<Expr, ParseError> {
        self.depth_check(depth)?;
        let Some(t) = self.next() else {
            return Err(ParseError::Eof);
        };
        match t {
            Tok::Num(s) => {
                let value = parse_decimal(&s).ok_or_else(|| ParseError::Unexpected(s.clone()))?;
                Ok(Expr::Num {
                    value,
                    decimal: s.contains('.'),
                })
            }
            Tok::Sym(s) => Ok(Expr::Sym(s)),
            Tok::Op('-') => Ok(Expr::Neg(Box::new(self.parse_expr(25, depth + 1)?))),
            Tok::Op('+') => self.parse_expr(25, depth + 1),
            Tok::Open(open) => self.parse_bracketed(open, depth + 1),
            Tok::Bar => {
                self.open_bars += 1;
                let inner = self.parse_expr(0, depth + 1);
                self.open_bars -= 1;
                let inner = inner?;
                self.expect(&Tok::Bar)?;
                Ok(Expr::Func(Func::Abs, Box::new(inner)))
            }
            Tok::Begin(env) => self.parse_env(&env, depth + 1),
            Tok::Cmd(c) => self.parse_command(&c, depth + 1),
            other => Err(ParseError::Unexpected(format!("{other:?}"))),
        }
    }

    fn parse_bracketed(&mut self, open: Br, depth: usize) -> Result<Expr, ParseError> {
        let saved_bars = self.open_bars;
        self.open_bars = 0;
        let items = self.parse_list(depth + 1);
        self.open_bars = saved_bars;
        let mut items = items?;
        let close = match self.next() {
            Some(Tok::Close(b)) => b,
            Some(other) => return Err(ParseError::Unexpected(format!("{other:?}"))),
            None => return Err(ParseError::Eof),
        };
        let n = items.len();
        match (open, close, n) {
            // \{\}: the empty set.
            (Br::SetBrace, Br::SetBrace, 0) => Ok(Expr::Set(items)),
            (_, _, 0) => Err(ParseError::Unexpected("empty brackets".into())),
            (Br::SetBrace, Br::SetBrace, _) => Ok(Expr::Set(items)),
            (Br::Brace, Br::Brace, 1) | (Br::Paren, Br::Paren, 1) | (Br::Square, Br::Square, 1) => {
                Ok(items.remove(0))
            }
            (Br::Brace, Br::Brace, _) => Ok(Expr::Set(items)),
            (Br::Angle, Br::Angle, _) | (Br::Paren, Br::Paren, _) if n != 2 => {
                Ok(Expr::Tuple(items))
            }
            (Br::Angle, Br::Angle, _) => Ok(Expr::Tuple(items)),
            // (a, b) is an open interval or an ordered pair; the comparison treats it as either.
            (Br::Paren | Br::Square, Br::Paren | Br::Square, 2) => {
                let hi = items.pop().ok_or(ParseError::Eof)?;
                let lo = items.pop().ok_or(ParseError::Eof)?;
                Ok(Expr::Interval {
                    lo: Box::new(lo),
                    hi: Box::new(hi),
                    lo_closed: open == Br::Square,
                    hi_closed: close == Br::Square,
                })
            }
            (Br::Square, Br::Square, _) => Ok(Expr::Tuple(items)),
            _ => Err(ParseError::Unexpected("mismatched brackets".into())),
        }
    }

    fn parse_env(&mut self, env: &str, depth: usize) -> Result<Expr, ParseError> {
        let env = env.trim();
        if !env.ends_with("matrix") && env != "array" {
            return Err(ParseError::Unsupported(format!("begin{{{env}}}")));
        }
        if env == "array" {
            // Skip the column spec {cc}.
            if self.peek() == Some(&Tok::Open(Br::Brace)) {
                while let Some(t) = self.next() {
                    if t == Tok::Close(Br::Brace) {
                        break;
                    }
                }
            }
        }
        let mut rows: Vec<Vec<Expr>> = Vec::new();
        let mut row = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::End(_)) => {
                    self.pos += 1;
                    break;
                }
                Some(Tok::Amp) => self.pos += 1,
                Some(Tok::RowSep) => {
                    self.pos += 1;
                    rows.push(std::mem::take(&mut row));
                }
                None => return Err(ParseError::Eof),
                _ => row.push(self.parse_rel(depth + 1)?),
            }
        }
        if !row.is_empty() {
            rows.push(row);
        }
        rows.retain(|r| !r.is_empty());
        let width = rows.first().map(Vec::len).unwrap_or(0);
        if width == 0 || rows.iter().any(|r| r.len() != width) {
            return Err(ParseError::Unexpected("ragged matrix".into()));
        }
        Ok(Expr::Matrix(rows))
    }

    fn parse_command(&mut self, c: &str, depth: usize) -> Result<Expr, ParseError> {
        let func = match c {
            "frac" | "dfrac" | "tfrac" | "cfrac" => {
                let num = self.parse_group(depth + 1)?;
                let den = self.parse_group(depth + 1)?;
                return Ok(push_mul(num, Expr::Inv(Box::new(den))));
            }
            "binom" | "dbinom" | "tbinom" => {
                let n = self.parse_group(depth + 1)?;
                let k = self.parse_group(depth + 1)?;
                return Ok(Expr::Binom(Box::new(n), Box::new(k)));
            }
            "sqrt" => {
                let index = if self.peek() == Some(&Tok::Open(Br::Square)) {
                    self.pos += 1;
                    let idx = self.parse_expr(0, depth + 1)?;
                    self.expect(&Tok::Close(Br::Square))?;
                    Some(idx)
                } else {
                    None
                };
                let arg = self.parse_group(depth + 1)?;
                return Ok(match index {
                    None => Expr::Func(Func::Sqrt, Box::new(arg)),
                    Some(n) => Expr::Pow(Box::new(arg), Box::new(Expr::Inv(Box::new(n)))),
                });
            }
            "sum" | "prod" => return self.parse_sum(c == "prod", depth + 1),
            "pi" => return Ok(Expr::Pi),
            "emptyset" | "varnothing" => return Ok(Expr::Set(Vec::new())),
            // \pm 2 is the pair of answers 2 and -2.
            "pm" | "mp" => {
                let x = self.parse_expr(25, depth + 1)?;
                return Ok(Expr::Set(vec![x.clone(), Expr::Neg(Box::new(x))]));
            }
            "mathbb" => {
                return match self.parse_group(depth + 1)? {
                    Expr::Sym(s) if s.eq_ignore_ascii_case("r") => Ok(Expr::Interval {
                        lo: Box::new(Expr::Neg(Box::new(Expr::Inf))),
                        hi: Box::new(Expr::Inf),
                        lo_closed: false,
                        hi_closed: false,
                    }),
                    other => Err(ParseError::Unsupported(format!(
                        "mathbb{{{}}}",
                        display(&other)
                    ))),
                };
            }
            "infty" => return Ok(Expr::Inf),
            "log" | "lg" => {
                let base = if self.peek() == Some(&Tok::Op('_')) {
                    self.pos += 1;
                    Some(Box::new(self.parse_group(depth + 1)?))
                } else {
                    None
                };
                let arg = self.parse_func_arg(depth + 1)?;
                return Ok(Expr::Log {
                    base,
                    arg: Box::new(arg),
                });
            }
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tan" => Func::Tan,
            "cot" => Func::Cot,
            "sec" => Func::Sec,
            "csc" => Func::Csc,
            "arcsin" => Func::Asin,
            "arccos" => Func::Acos,
            "arctan" => Func::Atan,
            "sinh" => Func::Sinh,
            "cosh" => Func::Cosh,
            "tanh" => Func::Tanh,
            "ln" => Func::Ln,
            "exp" => Func::Exp,
            "lfloor" | "lceil" => {
                let inner = self.parse_expr(0, depth + 1)?;
                let close = if c == "lfloor" { "rfloor" } else { "rceil" };
                self.expect(&Tok::Cmd(close.into()))?;
                let f = if c == "lfloor" {
                    Func::Floor
                } else {
                    Func::Ceil
                };
                return Ok(Expr::Func(f, Box::new(inner)));
            }
            other => return Err(ParseError::Unsupported(other.to_string())),
        };
        // \sin^2 x means (\sin x)^2.
        let power = if self.peek() == Some(&Tok::Op('^')) {
            self.pos += 1;
            Some(self.parse_group(depth + 1)?)
        } else {
            None
        };
        let arg = self.parse_func_arg(depth + 1)?;
        let applied = Expr::Func(func, Box::new(arg));
        Ok(match power {
            Some(p) => Expr::Pow(Box::new(applied), Box::new(p)),
            None => applied,
        })
    }

    /// `\sum_{k=lo}^{hi} body`: the body runs over a product (up to the next `+` or `-`).
    fn parse_sum(&mut self, product: bool, depth: usize) -> Result<Expr, ParseError> {
        self.expect(&Tok::Op('_'))?;
        let (var, lo) = match self.parse_group(depth + 1)? {
            Expr::Rel(mut v, ops) if ops == [RelOp::Eq] && matches!(v[0], Expr::Sym(_)) => {
                let lo = v.pop().ok_or(ParseError::Eof)?;
                let Some(Expr::Sym(var)) = v.pop() else {
                    return Err(ParseError::Eof);
                };
                (var, lo)
            }
            _ => return Err(ParseError::Unsupported("sum without k = start".into())),
        };
        self.expect(&Tok::Op('^'))?;
        let hi = self.parse_group(depth + 1)?;
        let body = self.parse_expr(11, depth + 1)?;
        Ok(Expr::Sum {
            var,
            lo: Box::new(lo),
            hi: Box::new(hi),
            body: Box::new(body),
            product,
        })
    }

    fn parse_func_arg(&mut self, depth: usize) -> Result<Expr, ParseError> {
        match self.peek() {
            Some(Tok::Open(Br::Brace)) => self.parse_group(depth),
            // \sin(x) y: a parenthesised argument is the whole argument.
            Some(Tok::Open(Br::Paren)) => self.parse_expr(25, depth),
            // \sin 2x, \ln 2x: the argument runs over an implicit product (not a sum), up to
            // the next function: 2\sin x\cos x is 2 sin(x) cos(x).
            _ => {
                let mut arg = self.parse_expr(25, depth)?;
                while let Some(t) = self.peek() {
                    let next_function = matches!(t, Tok::Cmd(c) if is_function_name(c));
                    if !self.starts_primary(t) || next_function {
                        break;
                    }
                    let factor = self.parse_expr(25, depth + 1)?;
                    arg = push_mul(arg, factor);
                }
                Ok(arg)
            }
        }
    }
}

/// Commands that apply to an argument (`\sin`, `\log`, ...), which end a function's argument.
fn is_function_name(c: &str) -> bool {
    matches!(
        c,
        "sin"
            | "cos"
            | "tan"
            | "cot"
            | "sec"
            | "csc"
            | "arcsin"
            | "arccos"
            | "arctan"
            | "sinh"
            | "cosh"
            | "tanh"
            | "ln"
            | "log"
            | "lg"
            | "exp"
            | "sqrt"
            | "frac"
            | "dfrac"
            | "tfrac"
            | "sum"
            | "prod"
    )
}

fn is_integer_literal(e: &Expr) -> bool {
    matches!(e, Expr::Num { value, decimal: false } if value.is_integer())
}

fn is_simple_fraction(e: &Expr) -> bool {
    match e {
        Expr::Mul(v) if v.len() == 2 => {
            is_integer_literal(&v[0]) && matches!(&v[1], Expr::Inv(d) if is_integer_literal(d))
        }
        _ => false,
    }
}

fn push_mul(lhs: Expr, rhs: Expr) -> Expr {
    match lhs {
        Expr::Mul(mut v) => {
            v.push(rhs);
            Expr::Mul(v)
        }
        other => Expr::Mul(vec![other, rhs]),
    }
}

/// A compact, deterministic rendering (used for subscript names and the exact-match fast path).
pub fn display(e: &Expr) -> String {
    let mut out = String::new();
    write_expr(e, &mut out);
    out
}

fn write_list(items: &[Expr], out: &mut String) {
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_expr(it, out);
    }
}

fn write_expr(e: &Expr, out: &mut String) {
    match e {
        Expr::Num { value, .. } => {
            if value.is_integer() {
                out.push_str(&value.numer().to_string());
            } else {
                out.push_str(&format!("{}/{}", value.numer(), value.denom()));
            }
        }
        Expr::Pi => out.push_str("pi"),
        Expr::E => out.push('e'),
        Expr::Inf => out.push_str("oo"),
        Expr::Sym(s) => out.push_str(s),
        Expr::Add(v) => {
            out.push('(');
            for (i, t) in v.iter().enumerate() {
                if i > 0 {
                    out.push('+');
                }
                write_expr(t, out);
            }
            out.push(')');
        }
        Expr::Mul(v) => {
            out.push('(');
            for (i, t) in v.iter().enumerate() {
                if i > 0 {
                    out.push('*');
                }
                write_expr(t, out);
            }
            out.push(')');
        }
        Expr::Neg(a) => {
            out.push('-');
            write_expr(a, out);
        }
        Expr::Inv(a) => {
            out.push_str("1/");
            write_expr(a, out);
        }
        Expr::Pow(a, b) => {
            write_expr(a, out);
            out.push('^');
            write_expr(b, out);
        }
        Expr::Func(f, a) => {
            out.push_str(&format!("{f:?}("));
            write_expr(a, out);
            out.push(')');
        }
        Expr::Log { base, arg } => {
            out.push_str("log");
            if let Some(b) = base {
                out.push('_');
                write_expr(b, out);
            }
            out.push('(');
            write_expr(arg, out);
            out.push(')');
        }
        Expr::Factorial(a) => {
            write_expr(a, out);
            out.push('!');
        }
        Expr::Binom(a, b) => {
            out.push_str("binom(");
            write_expr(a, out);
            out.push(',');
            write_expr(b, out);
            out.push(')');
        }
        Expr::Percent(a) => {
            write_expr(a, out);
            out.push('%');
        }
        Expr::Rel(v, ops) => {
            for (i, t) in v.iter().enumerate() {
                if i > 0 {
                    out.push_str(&format!("{:?}", ops[i - 1]));
                }
                write_expr(t, out);
            }
        }
        Expr::Tuple(v) => {
            out.push('(');
            write_list(v, out);
            out.push(')');
        }
        Expr::Set(v) => {
            out.push('{');
            write_list(v, out);
            out.push('}');
        }
        Expr::Interval {
            lo,
            hi,
            lo_closed,
            hi_closed,
        } => {
            out.push(if *lo_closed { '[' } else { '(' });
            write_expr(lo, out);
            out.push(',');
            write_expr(hi, out);
            out.push(if *hi_closed { ']' } else { ')' });
        }
        Expr::Union(v) => {
            for (i, t) in v.iter().enumerate() {
                if i > 0 {
                    out.push('U');
                }
                write_expr(t, out);
            }
        }
        Expr::Sum {
            var,
            lo,
            hi,
            body,
            product,
        } => {
            out.push_str(if *product { "prod(" } else { "sum(" });
            out.push_str(var);
            out.push('=');
            write_expr(lo, out);
            out.push_str("..");
            write_expr(hi, out);
            out.push(':');
            write_expr(body, out);
            out.push(')');
        }
        Expr::Matrix(rows) => {
            out.push('[');
            for r in rows {
                out.push('[');
                write_list(r, out);
                out.push(']');
            }
            out.push(']');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Expr {
        parse_answer(s, &ParseLimits::default()).unwrap()
    }

    #[test]
    fn precedence_and_implicit_multiplication() {
        assert_eq!(display(&p("1+2*3^2")), "(1+(2*3^2))");
        assert_eq!(display(&p("2x^2")), "(2*x^2)");
        assert_eq!(display(&p("-x^2")), "-x^2");
        assert_eq!(display(&p("\\frac{1}{2}")), "(1*1/2)");
    }

    #[test]
    fn containers() {
        assert!(matches!(
            p("(1,2]"),
            Expr::Interval {
                lo_closed: false,
                hi_closed: true,
                ..
            }
        ));
        assert!(matches!(p("\\{1,2\\}"), Expr::Set(ref v) if v.len() == 2));
        assert!(matches!(p("1, 2, 3"), Expr::Set(ref v) if v.len() == 3));
        assert!(matches!(p("(1,2,3)"), Expr::Tuple(ref v) if v.len() == 3));
        assert!(
            matches!(p("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"), Expr::Matrix(ref r) if r.len() == 2)
        );
        assert!(matches!(p("x=5"), Expr::Rel(_, ref ops) if ops == &[RelOp::Eq]));
        assert!(matches!(p("(-\\infty,1)\\cup(2,3]"), Expr::Union(ref v) if v.len() == 2));
        assert!(matches!(p("\\{\\}"), Expr::Set(ref v) if v.is_empty()));
        assert!(matches!(p("\\emptyset"), Expr::Set(ref v) if v.is_empty()));
        assert!(matches!(p("1 \\pm \\sqrt{2}"), Expr::Set(ref v) if v.len() == 2));
        assert!(matches!(p("\\pm 2"), Expr::Set(ref v) if v.len() == 2));
        assert!(matches!(
            p("\\mathbb{R}"),
            Expr::Interval {
                lo_closed: false,
                hi_closed: false,
                ..
            }
        ));
    }

    #[test]
    fn thousands_separator_is_one_number() {
        assert_eq!(display(&p("1,234,567")), "1234567");
        assert!(matches!(p("1,23"), Expr::Set(_)));
    }

    #[test]
    fn depth_limit_is_enforced() {
        let deep = "(".repeat(1000) + "1" + &")".repeat(1000);
        assert_eq!(
            parse_answer(&deep, &ParseLimits::default()).unwrap_err(),
            ParseError::TooDeep(128)
        );
        let chain = "1".to_string() + &"!".repeat(1000);
        assert!(parse_answer(&chain, &ParseLimits::default()).is_err());
    }
}
