//! Label filter expressions: `label in (3, 4) and not label = 9`.
//!
//! A vector may carry a small set of `u32` labels; a [`LabelExpr`] says
//! which label sets a search accepts. This module is pure: it parses,
//! prints and evaluates expressions, either against one label set
//! ([`LabelExpr::matches`]) or over all ordinals of a generation at once
//! from inverted lists ([`LabelExpr::eval_bitmap`]). The two always agree.
//!
//! Grammar (keywords case-insensitive, any ASCII whitespace between
//! tokens, `and` binding tighter than `or`):
//!
//! ```text
//! expr    := or
//! or      := and ('or' and)*
//! and     := unary ('and' unary)*
//! unary   := 'not' unary | primary
//! primary := '(' expr ')'
//!          | 'label' '=' INT | 'label' '==' INT | 'label' '!=' INT
//!          | 'label' 'in' '(' INT (',' INT)* ','? ')'
//!          | 'label' 'not' 'in' '(' INT (',' INT)* ','? ')'
//! INT     := decimal digits whose value fits in u32 (no sign)
//! ```
//!
//! Untrusted text is bounded: at most [`MAX_LEN`] bytes and [`MAX_DEPTH`]
//! nested parentheses and `not`s, so parsing, evaluating, printing and
//! dropping an expression never recurse deeper than a few hundred frames.

use crate::{Error, Result};
use std::fmt;

/// The longest expression [`LabelExpr::parse`] accepts, in bytes.
pub const MAX_LEN: usize = 64 * 1024;

/// How deeply parentheses and `not`s may nest in an expression (each
/// `(` and each `not` is one level). Bounds the parser's recursion, and
/// with it that of everything that walks the tree.
pub const MAX_DEPTH: usize = 64;

/// A parsed label filter expression.
///
/// Build one with [`LabelExpr::parse`] (or `str::parse`); its
/// [`Display`](fmt::Display) form is canonical (single spaces, `=` for
/// `==`, list labels sorted and distinct, parentheses only where needed)
/// and parses back to an equal expression.
///
/// ```
/// use strata::LabelExpr;
/// let e = LabelExpr::parse("label IN (3, 4) and not label = 9")?;
/// assert!(e.matches(&[4, 1]));
/// assert!(!e.matches(&[3, 9]));
/// assert!(!e.matches(&[]));
/// assert_eq!(e.to_string(), "label in (3, 4) and not label = 9");
/// assert_eq!(e.labels(), [3, 4, 9]);
///
/// let err = LabelExpr::parse("label = 3 or label = x").unwrap_err();
/// assert_eq!(err.to_string(), r#"filter expression, at byte 21: expected a label number, found "x""#);
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelExpr {
    root: Node,
}

/// One node of the tree. `In` and `NotIn` lists are sorted and distinct,
/// never empty; `And` and `Or` have at least two children (the parser
/// builds nothing else, and `Display` relies on it to round-trip).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Eq(u32),
    Ne(u32),
    In(Vec<u32>),
    NotIn(Vec<u32>),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
}

impl LabelExpr {
    /// Parses `text` (see the [module docs](self) for the grammar).
    ///
    /// Errors with [`Error::FilterExpression`], whose `position` is the
    /// byte offset of the offending token (`text.len()` for the end of
    /// input), for any text outside the grammar, an empty `in ()` list, a
    /// number that does not fit in `u32`, nesting deeper than
    /// [`MAX_DEPTH`], or text longer than [`MAX_LEN`]. Cost: one pass over
    /// the text, one allocation per node.
    pub fn parse(text: &str) -> Result<LabelExpr> {
        if text.len() > MAX_LEN {
            return Err(error(
                MAX_LEN,
                format!(
                    "the expression is {} bytes long, more than the limit of {MAX_LEN}",
                    text.len()
                ),
            ));
        }
        let mut p = Parser {
            text,
            pos: 0,
            peeked: None,
            depth: 0,
        };
        let root = p.or()?;
        let t = p.next();
        if t.kind != Kind::End {
            return Err(p.unexpected(t, "'and', 'or' or end of input"));
        }
        Ok(LabelExpr { root })
    }

    /// Whether a vector carrying `labels` (in any order, duplicates
    /// allowed) matches. Cost: no allocation; a scan of `labels` per
    /// comparison (with a binary search of the list for `in`).
    pub fn matches(&self, labels: &[u32]) -> bool {
        self.root.matches(labels)
    }

    /// The ordinals `0..n` that match, as a bitmap of `n.div_ceil(64)`
    /// words: ordinal `o` is bit `o % 64` of word `o / 64`, and the bits
    /// from `n` on are zero. Agrees with [`matches`](Self::matches) on
    /// every ordinal's label set.
    ///
    /// `postings(label, words)` must OR into `words` (`n.div_ceil(64)`
    /// long) the ordinals carrying `label`, e.g. from an inverted list; an
    /// error it returns (a corrupt list) is returned as is. It is called
    /// once per label of each `=`, `!=`, `in` and `not in` node (once per
    /// distinct label of a list), for every such node, whatever the bits
    /// found so far.
    ///
    /// Cost: besides `postings`, one pass over the words per node, and one
    /// n-bit temporary per level of nesting (reused by siblings): `or`
    /// folds the postings of its `=` and `in` children straight into its
    /// result.
    pub fn eval_bitmap(
        &self,
        n: usize,
        postings: &mut dyn FnMut(u32, &mut [u64]) -> Result<()>,
    ) -> Result<Vec<u64>> {
        let words = n.div_ceil(64);
        let mut ev = Eval {
            words,
            tail: match n % 64 {
                0 => u64::MAX,
                r => (1u64 << r) - 1,
            },
            postings,
            spare: Vec::new(),
        };
        let mut out = vec![0u64; words];
        ev.eval(&self.root, &mut out)?;
        Ok(out)
    }

    /// The distinct labels the expression mentions, sorted.
    pub fn labels(&self) -> Vec<u32> {
        let mut out = Vec::new();
        self.root.collect_labels(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl std::str::FromStr for LabelExpr {
    type Err = Error;

    /// [`LabelExpr::parse`].
    fn from_str(text: &str) -> Result<LabelExpr> {
        LabelExpr::parse(text)
    }
}

impl fmt::Display for LabelExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

// ---------------------------------------------------------------------------
// The tree: matching one label set, printing, collecting labels.
// ---------------------------------------------------------------------------

impl Node {
    fn matches(&self, labels: &[u32]) -> bool {
        match self {
            Node::Eq(l) => labels.contains(l),
            Node::Ne(l) => !labels.contains(l),
            Node::In(ls) => labels.iter().any(|l| ls.binary_search(l).is_ok()),
            Node::NotIn(ls) => !labels.iter().any(|l| ls.binary_search(l).is_ok()),
            Node::Not(c) => !c.matches(labels),
            Node::And(cs) => cs.iter().all(|c| c.matches(labels)),
            Node::Or(cs) => cs.iter().any(|c| c.matches(labels)),
        }
    }

    fn collect_labels(&self, out: &mut Vec<u32>) {
        match self {
            Node::Eq(l) | Node::Ne(l) => out.push(*l),
            Node::In(ls) | Node::NotIn(ls) => out.extend_from_slice(ls),
            Node::Not(c) => c.collect_labels(out),
            Node::And(cs) | Node::Or(cs) => cs.iter().for_each(|c| c.collect_labels(out)),
        }
    }

    /// Writes `self`, in parentheses when `paren`.
    fn fmt_operand(&self, f: &mut fmt::Formatter<'_>, paren: bool) -> fmt::Result {
        if paren {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

impl fmt::Display for Node {
    /// Parenthesises exactly the children the grammar would otherwise read
    /// differently (an `and` or `or` under `not`, under `and`, and an `or`
    /// under `or`), so the output parses back to the same tree and is
    /// never nested deeper than the text it was parsed from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, ls: &[u32]) -> fmt::Result {
            f.write_str("(")?;
            for (i, l) in ls.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{l}")?;
            }
            f.write_str(")")
        }
        fn join(
            f: &mut fmt::Formatter<'_>,
            cs: &[Node],
            op: &str,
            paren: fn(&Node) -> bool,
        ) -> fmt::Result {
            for (i, c) in cs.iter().enumerate() {
                if i > 0 {
                    f.write_str(op)?;
                }
                c.fmt_operand(f, paren(c))?;
            }
            Ok(())
        }
        match self {
            Node::Eq(l) => write!(f, "label = {l}"),
            Node::Ne(l) => write!(f, "label != {l}"),
            Node::In(ls) => {
                f.write_str("label in ")?;
                list(f, ls)
            }
            Node::NotIn(ls) => {
                f.write_str("label not in ")?;
                list(f, ls)
            }
            Node::Not(c) => {
                f.write_str("not ")?;
                c.fmt_operand(f, matches!(**c, Node::And(_) | Node::Or(_)))
            }
            Node::And(cs) => join(f, cs, " and ", |c| matches!(c, Node::And(_) | Node::Or(_))),
            Node::Or(cs) => join(f, cs, " or ", |c| matches!(c, Node::Or(_))),
        }
    }
}

// ---------------------------------------------------------------------------
// Bitmap evaluation.
// ---------------------------------------------------------------------------

struct Eval<'p> {
    words: usize,
    /// The valid bits of the last word.
    tail: u64,
    postings: &'p mut dyn FnMut(u32, &mut [u64]) -> Result<()>,
    /// Temporaries returned by finished `and` / `or` nodes.
    spare: Vec<Vec<u64>>,
}

impl Eval<'_> {
    /// Overwrites `out` with the ordinals matching `node`, bits from `n`
    /// on cleared (whatever `postings` wrote there).
    fn eval(&mut self, node: &Node, out: &mut [u64]) -> Result<()> {
        if self.eval_signed(node, out)? {
            complement(out);
        }
        if let Some(last) = out.last_mut() {
            *last &= self.tail;
        }
        Ok(())
    }

    /// Overwrites `out` with the ordinals matching `node` or, when it
    /// returns `true`, with their complement (bits from `n` on
    /// unspecified): a negation is handed to the caller, which folds it
    /// into its `&` / `|` (`x and not y` as `x & !y`) or complements once
    /// for a chain of `not`s.
    fn eval_signed(&mut self, node: &Node, out: &mut [u64]) -> Result<bool> {
        match node {
            Node::Eq(l) | Node::Ne(l) => {
                out.fill(0);
                (self.postings)(*l, out)?;
            }
            Node::In(ls) | Node::NotIn(ls) => {
                out.fill(0);
                self.or_postings(ls, out)?;
            }
            Node::Not(c) => return Ok(!self.eval_signed(c, out)?),
            Node::And(cs) => {
                let (first, rest) = cs.split_first().expect("and has children");
                self.eval(first, out)?;
                let mut t = self.take();
                for c in rest {
                    if self.eval_signed(c, &mut t)? {
                        out.iter_mut().zip(&t).for_each(|(o, t)| *o &= !t);
                    } else {
                        out.iter_mut().zip(&t).for_each(|(o, t)| *o &= t);
                    }
                }
                self.spare.push(t);
            }
            Node::Or(cs) => {
                let (first, rest) = cs.split_first().expect("or has children");
                self.eval(first, out)?;
                let mut t = None;
                for c in rest {
                    if let Node::Eq(l) = c {
                        // Postings OR straight into the accumulator.
                        (self.postings)(*l, out)?;
                        continue;
                    }
                    if let Node::In(ls) = c {
                        self.or_postings(ls, out)?;
                        continue;
                    }
                    let t = t.get_or_insert_with(|| self.take());
                    if self.eval_signed(c, t)? {
                        out.iter_mut().zip(t.iter()).for_each(|(o, t)| *o |= !t);
                    } else {
                        out.iter_mut().zip(t.iter()).for_each(|(o, t)| *o |= t);
                    }
                }
                self.spare.extend(t);
            }
        }
        Ok(matches!(node, Node::Ne(_) | Node::NotIn(_)))
    }

    fn or_postings(&mut self, labels: &[u32], out: &mut [u64]) -> Result<()> {
        labels.iter().try_for_each(|&l| (self.postings)(l, out))
    }

    /// A temporary of `words` words (contents unspecified: every
    /// evaluation overwrites its output).
    fn take(&mut self) -> Vec<u64> {
        self.spare.pop().unwrap_or_else(|| vec![0u64; self.words])
    }
}

fn complement(words: &mut [u64]) {
    words.iter_mut().for_each(|w| *w = !*w);
}

// ---------------------------------------------------------------------------
// Lexer and parser.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    LParen,
    RParen,
    Comma,
    /// `=` or `==`.
    Eq,
    Ne,
    /// A run of ASCII letters, digits and `_`: a keyword, a number or junk.
    Word,
    /// One character that starts no token.
    Other,
    End,
}

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    /// Byte offset of the token's first byte.
    at: usize,
}

impl Token<'_> {
    fn is_keyword(&self, keyword: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(keyword)
    }

    /// The token as an error message shows it: quoted, long words cut.
    fn describe(&self) -> String {
        if self.kind == Kind::End {
            return "end of input".to_string();
        }
        format!("{:?}", clip(self.text))
    }
}

/// `s`, cut to 32 bytes (on a character boundary) with `...` appended,
/// so that an error about a 60 KiB word stays readable.
fn clip(s: &str) -> String {
    const KEEP: usize = 32;
    if s.len() <= KEEP {
        return s.to_string();
    }
    let mut end = KEEP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn error(position: usize, what: impl Into<String>) -> Error {
    Error::FilterExpression {
        position,
        what: what.into(),
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A recursive-descent parser with one token of lookahead, lexing lazily
/// so that the first error in the text is the one reported.
struct Parser<'a> {
    text: &'a str,
    /// Byte offset just past the last consumed token (always a character
    /// boundary: the lexer steps over ASCII bytes and whole characters).
    pos: usize,
    peeked: Option<Token<'a>>,
    /// Parentheses and `not`s open around the current position.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn lex(&self) -> Token<'a> {
        let b = self.text.as_bytes();
        let mut at = self.pos;
        while at < b.len() && b[at].is_ascii_whitespace() {
            at += 1;
        }
        let (kind, end) = match b.get(at) {
            None => (Kind::End, at),
            Some(b'(') => (Kind::LParen, at + 1),
            Some(b')') => (Kind::RParen, at + 1),
            Some(b',') => (Kind::Comma, at + 1),
            Some(b'=') if b.get(at + 1) == Some(&b'=') => (Kind::Eq, at + 2),
            Some(b'=') => (Kind::Eq, at + 1),
            Some(b'!') if b.get(at + 1) == Some(&b'=') => (Kind::Ne, at + 2),
            Some(&c) if is_word_byte(c) => {
                let len = b[at..].iter().take_while(|&&c| is_word_byte(c)).count();
                (Kind::Word, at + len)
            }
            Some(_) => {
                let len = self.text[at..].chars().next().map_or(1, char::len_utf8);
                (Kind::Other, at + len)
            }
        };
        Token {
            kind,
            text: &self.text[at..end],
            at,
        }
    }

    fn peek(&mut self) -> Token<'a> {
        match self.peeked {
            Some(t) => t,
            None => {
                let t = self.lex();
                self.peeked = Some(t);
                t
            }
        }
    }

    fn next(&mut self) -> Token<'a> {
        let t = self.peek();
        self.peeked = None;
        self.pos = t.at + t.text.len();
        t
    }

    fn unexpected(&self, found: Token<'_>, expected: &str) -> Error {
        error(
            found.at,
            format!("expected {expected}, found {}", found.describe()),
        )
    }

    /// Opens one level of nesting at `t` (a `(` or a `not`).
    fn enter(&mut self, t: Token<'_>) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(
                t.at,
                format!(
                    "{:?} nests deeper than {MAX_DEPTH} levels of parentheses and 'not'",
                    t.text
                ),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Node> {
        let first = self.and()?;
        if !self.peek().is_keyword("or") {
            return Ok(first);
        }
        let mut cs = vec![first];
        while self.peek().is_keyword("or") {
            self.next();
            cs.push(self.and()?);
        }
        Ok(Node::Or(cs))
    }

    fn and(&mut self) -> Result<Node> {
        let first = self.unary()?;
        if !self.peek().is_keyword("and") {
            return Ok(first);
        }
        let mut cs = vec![first];
        while self.peek().is_keyword("and") {
            self.next();
            cs.push(self.unary()?);
        }
        Ok(Node::And(cs))
    }

    fn unary(&mut self) -> Result<Node> {
        let t = self.peek();
        if !t.is_keyword("not") {
            return self.primary();
        }
        self.next();
        self.enter(t)?;
        let c = self.unary()?;
        self.depth -= 1;
        Ok(Node::Not(Box::new(c)))
    }

    fn primary(&mut self) -> Result<Node> {
        let t = self.next();
        if t.kind == Kind::LParen {
            self.enter(t)?;
            let e = self.or()?;
            let close = self.next();
            if close.kind != Kind::RParen {
                return Err(self.unexpected(close, "')'"));
            }
            self.depth -= 1;
            return Ok(e);
        }
        if !t.is_keyword("label") {
            return Err(self.unexpected(t, "'label', 'not' or '('"));
        }
        let op = self.next();
        match op.kind {
            Kind::Eq => Ok(Node::Eq(self.number()?)),
            Kind::Ne => Ok(Node::Ne(self.number()?)),
            _ if op.is_keyword("in") => Ok(Node::In(self.list()?)),
            _ if op.is_keyword("not") => {
                let t = self.next();
                if !t.is_keyword("in") {
                    return Err(self.unexpected(t, "'in' after 'label not'"));
                }
                Ok(Node::NotIn(self.list()?))
            }
            _ => Err(self.unexpected(op, "'=', '==', '!=', 'in' or 'not in' after 'label'")),
        }
    }

    fn number(&mut self) -> Result<u32> {
        let t = self.next();
        if t.kind != Kind::Word || !t.text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.unexpected(t, "a label number"));
        }
        let digits = t.text.trim_start_matches('0');
        // At most 10 significant digits: the u64 parse cannot overflow.
        match digits.len() {
            0 => Ok(0),
            1..=10 => u32::try_from(digits.parse::<u64>().expect("at most 10 digits"))
                .map_err(|_| error(t.at, format!("label {digits} does not fit in u32"))),
            _ => Err(error(
                t.at,
                format!("label {} does not fit in u32", clip(digits)),
            )),
        }
    }

    /// `'(' INT (',' INT)* ','? ')'`, sorted and deduplicated.
    fn list(&mut self) -> Result<Vec<u32>> {
        let t = self.next();
        if t.kind != Kind::LParen {
            return Err(self.unexpected(t, "'(' after 'in'"));
        }
        let mut ls = Vec::new();
        loop {
            ls.push(self.number()?);
            let t = self.next();
            match t.kind {
                Kind::RParen => break,
                Kind::Comma if self.peek().kind == Kind::RParen => {
                    self.next();
                    break;
                }
                Kind::Comma => {}
                _ => return Err(self.unexpected(t, "',' or ')'")),
            }
        }
        ls.sort_unstable();
        ls.dedup();
        Ok(ls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn p(text: &str) -> Node {
        LabelExpr::parse(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .root
    }

    fn err(text: &str) -> (usize, String) {
        match LabelExpr::parse(text) {
            Err(Error::FilterExpression { position, what }) => (position, what),
            other => panic!("{text:?}: expected a filter expression error, got {other:?}"),
        }
    }

    fn m(text: &str, labels: &[u32]) -> bool {
        LabelExpr::parse(text).unwrap().matches(labels)
    }

    use Node::{And, Eq as Is, In, Ne, Not, NotIn, Or};

    fn not(n: Node) -> Node {
        Not(Box::new(n))
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let a = "label = 1 or label = 2 and label = 3";
        assert_eq!(p(a), Or(vec![Is(1), And(vec![Is(2), Is(3)])]));
        assert!(m(a, &[1]) && !m(a, &[2]) && !m(a, &[3]) && m(a, &[3, 2]));
        let b = "label = 1 and label = 2 or label = 3";
        assert_eq!(p(b), Or(vec![And(vec![Is(1), Is(2)]), Is(3)]));
        assert!(m(b, &[3]) && !m(b, &[1]) && m(b, &[2, 1]));
        let c = "(label = 1 or label = 2) and label != 7";
        assert_eq!(p(c), And(vec![Or(vec![Is(1), Is(2)]), Ne(7)]));
        assert!(m(c, &[2]) && !m(c, &[2, 7]) && !m(c, &[3]));
        assert_eq!(
            p("label = 1 or label = 2 or label = 3"),
            Or(vec![Is(1), Is(2), Is(3)])
        );
    }

    #[test]
    fn not_binds_tighter_than_and() {
        let a = "not label = 1 and label = 2";
        assert_eq!(p(a), And(vec![not(Is(1)), Is(2)]));
        assert!(m(a, &[2]) && !m(a, &[1, 2]) && !m(a, &[]));
        let b = "not (label = 1 and label = 2)";
        assert_eq!(p(b), not(And(vec![Is(1), Is(2)])));
        assert!(m(b, &[2]) && !m(b, &[1, 2]) && m(b, &[]));
        assert_eq!(p("not not label = 1"), not(not(Is(1))));
        assert_eq!(
            p("label = 1 or not label = 2 and label = 3"),
            Or(vec![Is(1), And(vec![not(Is(2)), Is(3)])])
        );
    }

    #[test]
    fn comparisons() {
        assert_eq!(p("label = 3"), Is(3));
        assert_eq!(p("label == 3"), Is(3));
        assert_eq!(p("label != 3"), Ne(3));
        assert_ne!(p("label != 3"), p("not label = 3"));
        assert!(m("label != 7", &[]) && m("label != 7", &[8]));
        assert!(!m("label != 7", &[7]) && !m("label != 7", &[8, 7, 7]));
        assert_eq!(p("label in (4, 2, 4)"), In(vec![2, 4]));
        assert_eq!(p("label in (1, 2,)"), In(vec![1, 2]));
        assert_eq!(p("label not in (1, 2)"), NotIn(vec![1, 2]));
        assert!(m("label in (1, 2)", &[5, 2]) && !m("label in (1, 2)", &[5]));
        assert!(m("label not in (1, 2)", &[5]) && m("label not in (1, 2)", &[]));
        assert!(!m("label not in (1, 2)", &[5, 1]));
        assert_eq!(p("label = 4294967295"), Is(u32::MAX));
        assert_eq!(p("label = 0000000000000000000012"), Is(12));
        assert_eq!(p("label = 000"), Is(0));
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(
            p("LABEL IN (1,2) AND NOT Label = 3 Or lAbEl NoT iN (4)"),
            Or(vec![And(vec![In(vec![1, 2]), not(Is(3))]), NotIn(vec![4])])
        );
    }

    #[test]
    fn whitespace_is_free() {
        assert_eq!(p("\t label\n=\r\n3 \x0c"), Is(3));
        assert_eq!(p("label=3"), Is(3));
        assert_eq!(p("label!=3"), Ne(3));
        assert_eq!(p("label==3"), Is(3));
        assert_eq!(p("label in(1,2,)"), In(vec![1, 2]));
        assert_eq!(p("(label=1)or(label=2)"), Or(vec![Is(1), Is(2)]));
        assert_eq!(p("not(label=1)"), not(Is(1)));
        assert_eq!(p("( ( label = 1 ) )"), Is(1));
    }

    #[test]
    fn errors_name_the_offending_byte() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "expected 'label', 'not' or '(', found end of input"),
            (
                "  \n",
                3,
                "expected 'label', 'not' or '(', found end of input",
            ),
            ("label = x", 8, r#"expected a label number, found "x""#),
            ("label = -1", 8, r#"expected a label number, found "-""#),
            ("label = 3x", 8, r#"expected a label number, found "3x""#),
            ("label =", 7, "expected a label number, found end of input"),
            ("label in ()", 10, r#"expected a label number, found ")""#),
            (
                "label in (1,,2)",
                12,
                r#"expected a label number, found ",""#,
            ),
            ("label in (1 2)", 12, r#"expected ',' or ')', found "2""#),
            ("label in (1", 11, "expected ',' or ')', found end of input"),
            ("label in 1", 9, r#"expected '(' after 'in', found "1""#),
            (
                "label not 3",
                10,
                r#"expected 'in' after 'label not', found "3""#,
            ),
            (
                "label < 3",
                6,
                r#"expected '=', '==', '!=', 'in' or 'not in' after 'label', found "<""#,
            ),
            (
                "label ! 3",
                6,
                r#"expected '=', '==', '!=', 'in' or 'not in' after 'label', found "!""#,
            ),
            ("(label = 1", 10, "expected ')', found end of input"),
            ("(label = 1 label", 11, r#"expected ')', found "label""#),
            (
                "label = 1 label = 2",
                10,
                r#"expected 'and', 'or' or end of input, found "label""#,
            ),
            (
                "label = 1)",
                9,
                r#"expected 'and', 'or' or end of input, found ")""#,
            ),
            (
                "or label = 1",
                0,
                r#"expected 'label', 'not' or '(', found "or""#,
            ),
            (
                "label = 1 or or label = 2",
                13,
                r#"expected 'label', 'not' or '(', found "or""#,
            ),
            (
                "label = 1 and",
                13,
                "expected 'label', 'not' or '(', found end of input",
            ),
            (
                "not",
                3,
                "expected 'label', 'not' or '(', found end of input",
            ),
            (
                "labels = 1",
                0,
                r#"expected 'label', 'not' or '(', found "labels""#,
            ),
            (
                "label = 1 \u{e9}",
                10,
                r#"expected 'and', 'or' or end of input, found "é""#,
            ),
            (
                "label = 4294967296",
                8,
                "label 4294967296 does not fit in u32",
            ),
            (
                "label in (1, 99999999999)",
                13,
                "label 99999999999 does not fit in u32",
            ),
            (
                "label = 000004294967296",
                8,
                "label 4294967296 does not fit in u32",
            ),
        ];
        for &(text, position, what) in cases {
            assert_eq!(err(text), (position, what.to_string()), "{text:?}");
        }
        let e = LabelExpr::parse("label = 1 or").unwrap_err();
        assert_eq!(
            e.to_string(),
            "filter expression, at byte 12: expected 'label', 'not' or '(', found end of input"
        );
        // Long junk is cut in the message.
        let long = format!("label = {}", "9".repeat(100));
        let (at, what) = err(&long);
        assert_eq!(at, 8);
        assert_eq!(
            what,
            format!("label {}... does not fit in u32", "9".repeat(32))
        );
        let (at, what) = err(&format!("label = {}", "x".repeat(100)));
        assert_eq!(at, 8);
        assert_eq!(
            what,
            format!("expected a label number, found \"{}...\"", "x".repeat(32))
        );
    }

    #[test]
    fn nesting_and_length_are_bounded() {
        let nested = |k: usize| format!("{}label = 1{}", "(".repeat(k), ")".repeat(k));
        assert_eq!(p(&nested(MAX_DEPTH)), Is(1));
        let (at, what) = err(&nested(MAX_DEPTH + 1));
        assert_eq!(at, MAX_DEPTH);
        assert_eq!(
            what,
            "\"(\" nests deeper than 64 levels of parentheses and 'not'"
        );
        let nots = |k: usize| format!("{}label = 1", "not ".repeat(k));
        assert!(LabelExpr::parse(&nots(MAX_DEPTH)).is_ok());
        assert_eq!(err(&nots(MAX_DEPTH + 1)).0, 4 * MAX_DEPTH);
        // Mixed: 32 parens and 32 nots fit, one more of either does not.
        let mixed = |k: usize| format!("{}label = 1{}", "not (".repeat(k), ")".repeat(k));
        assert!(LabelExpr::parse(&mixed(32)).is_ok());
        // The 65th level is the last "(": after "not " and 31 "not (".
        assert_eq!(err(&format!("not {}", mixed(32))).0, 4 + 5 * 31 + 4);
        let unclosed = format!("{}label = 1", "not (".repeat(32));
        assert_eq!(
            err(&unclosed),
            (unclosed.len(), "expected ')', found end of input".into())
        );
        // A hostile input an unbounded parser would overflow the stack on.
        assert_eq!(err(&"(".repeat(60_000)).0, MAX_DEPTH);
        assert_eq!(err(&"not ".repeat(16_000)).0, 4 * MAX_DEPTH);
        // Length.
        let at_limit = format!("label = 1{}", " ".repeat(MAX_LEN - 9));
        assert!(LabelExpr::parse(&at_limit).is_ok());
        let (at, what) = err(&format!("{at_limit} "));
        assert_eq!(at, MAX_LEN);
        assert_eq!(
            what,
            "the expression is 65537 bytes long, more than the limit of 65536"
        );
    }

    #[test]
    fn display_round_trips() {
        let cases: &[(&str, &str)] = &[
            ("label=3", "label = 3"),
            ("LABEL == 3", "label = 3"),
            ("label!=3", "label != 3"),
            ("label in (3, 1, 3,)", "label in (1, 3)"),
            ("label not in (9)", "label not in (9)"),
            ("not label = 9", "not label = 9"),
            ("not not label = 9", "not not label = 9"),
            (
                "not (label = 1 or label = 2)",
                "not (label = 1 or label = 2)",
            ),
            (
                "not (label = 1 and label = 2)",
                "not (label = 1 and label = 2)",
            ),
            (
                "label = 1 or label = 2 and label = 3",
                "label = 1 or label = 2 and label = 3",
            ),
            (
                "(label = 1 or label = 2) and label = 3",
                "(label = 1 or label = 2) and label = 3",
            ),
            (
                "(label = 1 and label = 2) and label = 3",
                "(label = 1 and label = 2) and label = 3",
            ),
            (
                "label = 1 and (label = 2 and label = 3)",
                "label = 1 and (label = 2 and label = 3)",
            ),
            (
                "(label = 1 or label = 2) or label = 3",
                "(label = 1 or label = 2) or label = 3",
            ),
            (
                "(label = 1 and label = 2) or label = 3",
                "label = 1 and label = 2 or label = 3",
            ),
            ("((label = 1))", "label = 1"),
            (
                "label in (3,4) and not label = 9",
                "label in (3, 4) and not label = 9",
            ),
            ("not (not label = 1)", "not not label = 1"),
        ];
        for &(text, canonical) in cases {
            let e = LabelExpr::parse(text).unwrap();
            assert_eq!(e.to_string(), canonical, "{text:?}");
            assert_eq!(LabelExpr::parse(canonical).unwrap(), e, "{text:?}");
            assert_eq!(canonical.parse::<LabelExpr>().unwrap(), e);
        }
    }

    #[test]
    fn labels_are_sorted_and_distinct() {
        let e = LabelExpr::parse("label in (5, 3) or not label = 3 and label != 9").unwrap();
        assert_eq!(e.labels(), [3, 5, 9]);
    }

    /// Postings over explicit label sets: the inverted lists a caller has.
    /// `dirty` also sets the bits past `sets.len()` of the last word, which
    /// the result must not show.
    fn postings_of(
        sets: &[Vec<u32>],
        dirty: bool,
    ) -> impl FnMut(u32, &mut [u64]) -> Result<()> + '_ {
        move |label, words| {
            for (o, s) in sets.iter().enumerate() {
                if s.contains(&label) {
                    words[o / 64] |= 1 << (o % 64);
                }
            }
            if let (true, Some(last), r @ 1..) = (dirty, words.last_mut(), sets.len() % 64) {
                *last |= u64::MAX << r;
            }
            Ok(())
        }
    }

    #[test]
    fn eval_bitmap_reads_each_list_label_once_and_propagates_errors() {
        let e = LabelExpr::parse("label in (3, 3, 4, 3)").unwrap();
        let mut calls = Vec::new();
        e.eval_bitmap(10, &mut |l, _| {
            calls.push(l);
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, [3, 4]);

        let e = LabelExpr::parse("label = 1 or label = 2 and not label in (7, 8)").unwrap();
        let r = e.eval_bitmap(100, &mut |l, _| {
            if l == 8 {
                Err(Error::InvalidParameter {
                    name: "postings",
                    reason: "corrupt list 8".into(),
                })
            } else {
                Ok(())
            }
        });
        assert!(
            matches!(r, Err(Error::InvalidParameter { reason, .. }) if reason == "corrupt list 8")
        );
    }

    #[test]
    fn eval_bitmap_clears_the_tail() {
        // A caller that sets every bit, past n too.
        let mut all = |_: u32, w: &mut [u64]| {
            w.fill(u64::MAX);
            Ok(())
        };
        for n in [0, 1, 63, 64, 65, 130] {
            for text in [
                "label = 1",
                "label != 1",
                "not label = 1 or label = 2",
                "label = 1 or not label = 2",
            ] {
                let b = LabelExpr::parse(text)
                    .unwrap()
                    .eval_bitmap(n, &mut all)
                    .unwrap();
                assert_eq!(b.len(), n.div_ceil(64));
                let ones: u32 = b.iter().map(|w| w.count_ones()).sum();
                let matched = LabelExpr::parse(text).unwrap().matches(&[1, 2]);
                assert_eq!(ones as usize, if matched { n } else { 0 }, "{text} n={n}");
            }
        }
    }

    fn random_label(rng: &mut impl Rng) -> u32 {
        if rng.gen_ratio(1, 20) {
            u32::MAX - rng.gen_range(0..2)
        } else {
            rng.gen_range(0..12)
        }
    }

    fn random_list(rng: &mut impl Rng) -> Vec<u32> {
        let len = rng.gen_range(1..5);
        let mut ls: Vec<u32> = (0..len).map(|_| random_label(rng)).collect();
        ls.sort_unstable();
        ls.dedup();
        ls
    }

    /// A random tree of the shape the parser builds (lists sorted and
    /// distinct, `and` / `or` with two or more children), nested up to
    /// `depth` operators deep.
    fn random_node(rng: &mut impl Rng, depth: usize) -> Node {
        let kind = if depth == 0 {
            rng.gen_range(0..4)
        } else {
            rng.gen_range(0..7)
        };
        match kind {
            0 => Is(random_label(rng)),
            1 => Ne(random_label(rng)),
            2 => In(random_list(rng)),
            3 => NotIn(random_list(rng)),
            4 => not(random_node(rng, depth - 1)),
            k => {
                let cs = (0..rng.gen_range(2..5))
                    .map(|_| random_node(rng, depth - 1))
                    .collect();
                if k == 5 {
                    And(cs)
                } else {
                    Or(cs)
                }
            }
        }
    }

    #[test]
    fn random_expressions_round_trip_and_both_evaluations_agree() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x1abe1);
        let mut matched = [0usize; 2];
        for round in 0..1500 {
            let depth = rng.gen_range(0..6);
            let expr = LabelExpr {
                root: random_node(&mut rng, depth),
            };
            let text = expr.to_string();
            let back = LabelExpr::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(back, expr, "{text}");
            assert_eq!(back.to_string(), text);

            let n = if round % 10 == 0 {
                [0, 1, 63, 64, 65, 128][round / 10 % 6]
            } else {
                rng.gen_range(290..310)
            };
            let sets: Vec<Vec<u32>> = (0..n)
                .map(|_| {
                    (0..rng.gen_range(0..5))
                        .map(|_| {
                            if rng.gen_ratio(1, 30) {
                                u32::MAX
                            } else {
                                rng.gen_range(0..13)
                            }
                        })
                        .collect()
                })
                .collect();
            let bitmap = expr
                .eval_bitmap(n, &mut postings_of(&sets, round % 2 == 1))
                .unwrap();
            assert_eq!(bitmap.len(), n.div_ceil(64));
            for (o, s) in sets.iter().enumerate() {
                let bit = bitmap[o / 64] >> (o % 64) & 1 == 1;
                assert_eq!(bit, expr.matches(s), "{text}: ordinal {o} {s:?}");
                matched[bit as usize] += 1;
            }
            if n % 64 != 0 {
                assert_eq!(bitmap[n / 64] >> (n % 64), 0, "{text}: tail bits");
            }
            let mut expect = expr.labels();
            let mut seen = Vec::new();
            expr.root.collect_labels(&mut seen);
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(expect, seen);
            expect.dedup();
            assert!(expect.windows(2).all(|w| w[0] < w[1]));
        }
        // Both outcomes are common: the test is not vacuous.
        assert!(matched[0] > 50_000 && matched[1] > 50_000, "{matched:?}");
    }
}
