//! Rule expressions: parsed and resolved once at load, evaluated without
//! allocation or name lookups on the hot path.
//!
//! Grammar (lowest to highest precedence):
//!
//! ```text
//! expr    := or
//! or      := and (("or" | "||") and)*
//! and     := not (("and" | "&&") not)*
//! not     := ("not" | "!") not | cmp
//! cmp     := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/" | "%") unary)*
//! unary   := "-" unary | primary
//! primary := NUMBER | "true" | "false" | path | CALL | "(" expr ")"
//! path    := IDENT ("." IDENT)*          e.g. temperature, w1s.vibration.avg
//! CALL    := ("abs" | "min" | "max") "(" expr ("," expr)* ")"
//! ```
//!
//! Numbers are `f64`. A value that is not known yet (a sensor that never
//! reported) is NaN, so every comparison with it is false: a rule never fires
//! on missing data. Names are resolved by a [`Resolver`] supplied by the twin
//! model (latest values, window aggregates, ...), which turns each path into a
//! slot; evaluation reads slots through [`Env`].

use std::fmt;

/// An error in an expression, at a character offset inside the expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset + 1)
    }
}

/// Turns a dotted name into a slot the evaluator can read, or explains why not.
pub trait Resolver {
    type Slot: Copy + fmt::Debug;
    fn resolve(&self, path: &[&str]) -> Result<Self::Slot, Unresolved>;
}

/// Why a dotted name does not resolve, and which of its segments is wrong
/// (the error points there).
#[derive(Debug, Clone, PartialEq)]
pub struct Unresolved {
    pub segment: usize,
    pub message: String,
}

impl Unresolved {
    pub fn at(segment: usize, message: impl Into<String>) -> Unresolved {
        Unresolved {
            segment,
            message: message.into(),
        }
    }
}

/// The name as a whole is wrong.
impl From<String> for Unresolved {
    fn from(message: String) -> Unresolved {
        Unresolved::at(0, message)
    }
}

/// Values of resolved slots at evaluation time.
pub trait Env<S> {
    fn get(&self, slot: S) -> f64;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Abs,
    Min,
    Max,
}

/// A numeric expression with resolved slots.
#[derive(Debug, Clone)]
pub enum Num<S> {
    Const(f64),
    Var(S),
    Neg(Box<Num<S>>),
    Arith(ArithOp, Box<Num<S>>, Box<Num<S>>),
    Call(Func, Vec<Num<S>>),
}

/// A boolean expression with resolved slots: what a rule condition compiles to.
#[derive(Debug, Clone)]
pub enum Cond<S> {
    Const(bool),
    Cmp(CmpOp, Num<S>, Num<S>),
    And(Box<Cond<S>>, Box<Cond<S>>),
    Or(Box<Cond<S>>, Box<Cond<S>>),
    Not(Box<Cond<S>>),
}

impl<S: Copy> Num<S> {
    /// The same expression over other slots.
    pub fn map<T>(&self, f: &mut impl FnMut(S) -> T) -> Num<T> {
        match self {
            Num::Const(v) => Num::Const(*v),
            Num::Var(s) => Num::Var(f(*s)),
            Num::Neg(a) => Num::Neg(Box::new(a.map(f))),
            Num::Arith(op, a, b) => Num::Arith(*op, Box::new(a.map(f)), Box::new(b.map(f))),
            Num::Call(func, args) => Num::Call(*func, args.iter().map(|a| a.map(f)).collect()),
        }
    }

    #[inline]
    pub fn eval<E: Env<S>>(&self, env: &E) -> f64 {
        match self {
            Num::Const(v) => *v,
            Num::Var(s) => env.get(*s),
            Num::Neg(a) => -a.eval(env),
            Num::Arith(op, a, b) => {
                let (a, b) = (a.eval(env), b.eval(env));
                match op {
                    ArithOp::Add => a + b,
                    ArithOp::Sub => a - b,
                    ArithOp::Mul => a * b,
                    ArithOp::Div => a / b,
                    ArithOp::Rem => a % b,
                }
            }
            Num::Call(f, args) => match f {
                Func::Abs => args[0].eval(env).abs(),
                // NaN-propagating: an unknown input makes the result unknown.
                Func::Min => args.iter().map(|a| a.eval(env)).fold(f64::INFINITY, |m, v| {
                    if v.is_nan() || m.is_nan() {
                        f64::NAN
                    } else {
                        m.min(v)
                    }
                }),
                Func::Max => args.iter().map(|a| a.eval(env)).fold(f64::NEG_INFINITY, |m, v| {
                    if v.is_nan() || m.is_nan() {
                        f64::NAN
                    } else {
                        m.max(v)
                    }
                }),
            },
        }
    }

    pub fn visit_slots(&self, f: &mut impl FnMut(S)) {
        match self {
            Num::Const(_) => {}
            Num::Var(s) => f(*s),
            Num::Neg(a) => a.visit_slots(f),
            Num::Arith(_, a, b) => {
                a.visit_slots(f);
                b.visit_slots(f);
            }
            Num::Call(_, args) => args.iter().for_each(|a| a.visit_slots(f)),
        }
    }
}

impl<S: Copy> Cond<S> {
    #[inline]
    pub fn eval<E: Env<S>>(&self, env: &E) -> bool {
        match self {
            Cond::Const(b) => *b,
            Cond::Cmp(op, a, b) => {
                let (a, b) = (a.eval(env), b.eval(env));
                match op {
                    CmpOp::Lt => a < b,
                    CmpOp::Le => a <= b,
                    CmpOp::Gt => a > b,
                    CmpOp::Ge => a >= b,
                    CmpOp::Eq => a == b,
                    CmpOp::Ne => a != b && !a.is_nan() && !b.is_nan(),
                }
            }
            Cond::And(a, b) => a.eval(env) && b.eval(env),
            Cond::Or(a, b) => a.eval(env) || b.eval(env),
            Cond::Not(a) => !a.eval(env),
        }
    }

    /// Calls `f` for every slot the condition reads (with repetitions).
    pub fn visit_slots(&self, f: &mut impl FnMut(S)) {
        match self {
            Cond::Const(_) => {}
            Cond::Cmp(_, a, b) => {
                a.visit_slots(f);
                b.visit_slots(f);
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.visit_slots(f);
                b.visit_slots(f);
            }
            Cond::Not(a) => a.visit_slots(f),
        }
    }
}

/// Parses and resolves a numeric expression (a derived sensor's `expr`).
pub fn compile_number<R: Resolver>(text: &str, resolver: &R) -> Result<Num<R::Slot>, Vec<ExprError>> {
    let ast = parse(text)?;
    let mut errors = Vec::new();
    match to_num(&ast, resolver, &mut errors) {
        Some(n) if errors.is_empty() => Ok(n),
        _ => Err(errors),
    }
}

/// Parses and resolves a condition (an expression that must be boolean).
pub fn compile_condition<R: Resolver>(text: &str, resolver: &R) -> Result<Cond<R::Slot>, Vec<ExprError>> {
    let ast = parse(text)?;
    let mut errors = Vec::new();
    match to_cond(&ast, resolver, &mut errors) {
        Some(c) if errors.is_empty() => Ok(c),
        _ => Err(errors),
    }
}

/// The syntax tree of a whole expression.
fn parse(text: &str) -> Result<(Ast, usize), Vec<ExprError>> {
    let tokens = lex(text).map_err(|e| vec![e])?;
    // Parsing, typing and evaluation recurse over the tree: bounded, so no
    // expression can exhaust the stack (found by the `expr` fuzz target).
    if let Some(t) = tokens.get(MAX_TOKENS) {
        return Err(vec![ExprError {
            offset: t.offset,
            message: format!("expression too long: at most {MAX_TOKENS} tokens"),
        }]);
    }
    let mut p = Parser {
        tokens,
        at: 0,
        end: text.chars().count(),
        depth: 0,
    };
    let ast = p.expr().map_err(|e| vec![e])?;
    if let Some(t) = p.peek() {
        return Err(vec![ExprError {
            offset: t.offset,
            message: format!("unexpected {} after the end of the expression", t.kind),
        }]);
    }
    Ok(ast)
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Dot,
    Comma,
    LParen,
    RParen,
    Op(&'static str),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Num(n) => write!(f, "number `{n}`"),
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Dot => write!(f, "`.`"),
            Tok::Comma => write!(f, "`,`"),
            Tok::LParen => write!(f, "`(`"),
            Tok::RParen => write!(f, "`)`"),
            Tok::Op(o) => write!(f, "`{o}`"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    offset: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == '_') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let s: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let v = s.parse::<f64>().map_err(|_| ExprError {
                offset: start,
                message: format!("`{s}` is not a number"),
            })?;
            out.push(Token {
                kind: Tok::Num(v),
                offset: start,
            });
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token {
                kind: Tok::Ident(chars[start..i].iter().collect()),
                offset: start,
            });
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op2 = ["<=", ">=", "==", "!=", "&&", "||"].into_iter().find(|o| *o == two);
        if let Some(op) = op2 {
            out.push(Token {
                kind: Tok::Op(op),
                offset: start,
            });
            i += 2;
            continue;
        }
        let kind = match c {
            '.' => Tok::Dot,
            ',' => Tok::Comma,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '<' => Tok::Op("<"),
            '>' => Tok::Op(">"),
            '+' => Tok::Op("+"),
            '-' => Tok::Op("-"),
            '*' => Tok::Op("*"),
            '/' => Tok::Op("/"),
            '%' => Tok::Op("%"),
            '!' => Tok::Op("!"),
            '=' => {
                return Err(ExprError {
                    offset: start,
                    message: "`=` is not an operator; use `==` to compare".into(),
                })
            }
            other => {
                return Err(ExprError {
                    offset: start,
                    message: format!("unexpected character `{other}`"),
                })
            }
        };
        out.push(Token { kind, offset: start });
        i += 1;
    }
    Ok(out)
}

// ---------------------------------------------------------------- parser

#[derive(Debug, Clone)]
enum Ast {
    Num(f64),
    Bool(bool),
    Path(Vec<String>),
    Call(String, Vec<(Ast, usize)>),
    Neg(Box<(Ast, usize)>),
    Not(Box<(Ast, usize)>),
    Bin(&'static str, Box<(Ast, usize)>, Box<(Ast, usize)>),
}

/// The most tokens an expression may have (a chain of operators is as
/// deep as it is long).
const MAX_TOKENS: usize = 512;
/// The deepest nesting of parentheses, calls and unary operators.
const MAX_NESTING: usize = 32;

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    end: usize,
    /// Nesting of parentheses, calls and unary operators at this point.
    depth: usize,
}

type Parsed = Result<(Ast, usize), ExprError>;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn is_word(&self, words: &[&str]) -> bool {
        match self.peek().map(|t| &t.kind) {
            Some(Tok::Ident(s)) => words.contains(&s.as_str()),
            Some(Tok::Op(o)) => words.contains(o),
            _ => false,
        }
    }

    fn eof_error(&self, what: &str) -> ExprError {
        ExprError {
            offset: self.end,
            message: format!("expected {what}, found the end of the expression"),
        }
    }

    fn expr(&mut self) -> Parsed {
        self.nested(Self::or)
    }

    /// Parses with `f` one level deeper; refuses nesting past
    /// [`MAX_NESTING`].
    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Parsed) -> Parsed {
        if self.depth >= MAX_NESTING {
            return Err(ExprError {
                offset: self.peek().map_or(self.end, |t| t.offset),
                message: format!("expression nested too deeply: at most {MAX_NESTING} levels"),
            });
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn or(&mut self) -> Parsed {
        let mut lhs = self.and()?;
        while self.is_word(&["or", "||"]) {
            let off = self.next().map_or(0, |t| t.offset);
            let rhs = self.and()?;
            lhs = (Ast::Bin("or", Box::new(lhs), Box::new(rhs)), off);
        }
        Ok(lhs)
    }

    fn and(&mut self) -> Parsed {
        let mut lhs = self.not()?;
        while self.is_word(&["and", "&&"]) {
            let off = self.next().map_or(0, |t| t.offset);
            let rhs = self.not()?;
            lhs = (Ast::Bin("and", Box::new(lhs), Box::new(rhs)), off);
        }
        Ok(lhs)
    }

    fn not(&mut self) -> Parsed {
        if self.is_word(&["not", "!"]) {
            let off = self.next().map_or(0, |t| t.offset);
            let inner = self.nested(Self::not)?;
            return Ok((Ast::Not(Box::new(inner)), off));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Parsed {
        let lhs = self.sum()?;
        if let Some(Tok::Op(op @ ("<" | "<=" | ">" | ">=" | "==" | "!="))) = self.peek().map(|t| &t.kind) {
            let op = *op;
            let off = self.next().map_or(0, |t| t.offset);
            let rhs = self.sum()?;
            if let Some(Tok::Op("<" | "<=" | ">" | ">=" | "==" | "!=")) = self.peek().map(|t| &t.kind) {
                let t = self.peek().map_or(0, |t| t.offset);
                return Err(ExprError {
                    offset: t,
                    message: "comparisons cannot be chained; combine them with `and`".into(),
                });
            }
            return Ok((Ast::Bin(op, Box::new(lhs), Box::new(rhs)), off));
        }
        Ok(lhs)
    }

    fn sum(&mut self) -> Parsed {
        let mut lhs = self.product()?;
        while let Some(Tok::Op(op @ ("+" | "-"))) = self.peek().map(|t| &t.kind) {
            let op = *op;
            let off = self.next().map_or(0, |t| t.offset);
            let rhs = self.product()?;
            lhs = (Ast::Bin(op, Box::new(lhs), Box::new(rhs)), off);
        }
        Ok(lhs)
    }

    fn product(&mut self) -> Parsed {
        let mut lhs = self.unary()?;
        while let Some(Tok::Op(op @ ("*" | "/" | "%"))) = self.peek().map(|t| &t.kind) {
            let op = *op;
            let off = self.next().map_or(0, |t| t.offset);
            let rhs = self.unary()?;
            lhs = (Ast::Bin(op, Box::new(lhs), Box::new(rhs)), off);
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Parsed {
        if let Some(Tok::Op("-")) = self.peek().map(|t| &t.kind) {
            let off = self.next().map_or(0, |t| t.offset);
            let inner = self.nested(Self::unary)?;
            return Ok((Ast::Neg(Box::new(inner)), off));
        }
        self.primary()
    }

    fn primary(&mut self) -> Parsed {
        let Some(tok) = self.next() else {
            return Err(self.eof_error("a value"));
        };
        match tok.kind {
            Tok::Num(v) => Ok((Ast::Num(v), tok.offset)),
            Tok::Ident(ref s) if s == "true" => Ok((Ast::Bool(true), tok.offset)),
            Tok::Ident(ref s) if s == "false" => Ok((Ast::Bool(false), tok.offset)),
            Tok::Ident(ref s) if matches!(s.as_str(), "and" | "or" | "not") => Err(ExprError {
                offset: tok.offset,
                message: format!("expected a value, found `{s}`"),
            }),
            Tok::Ident(name) => {
                if let Some(Tok::LParen) = self.peek().map(|t| &t.kind) {
                    self.next();
                    let mut args = vec![self.expr()?];
                    loop {
                        match self.next() {
                            Some(Token { kind: Tok::Comma, .. }) => args.push(self.expr()?),
                            Some(Token { kind: Tok::RParen, .. }) => break,
                            Some(t) => {
                                return Err(ExprError {
                                    offset: t.offset,
                                    message: format!("expected `,` or `)`, found {}", t.kind),
                                })
                            }
                            None => return Err(self.eof_error("`)`")),
                        }
                    }
                    return Ok((Ast::Call(name, args), tok.offset));
                }
                let mut path = vec![name];
                while let Some(Tok::Dot) = self.peek().map(|t| &t.kind) {
                    self.next();
                    match self.next() {
                        Some(Token {
                            kind: Tok::Ident(seg), ..
                        }) => path.push(seg),
                        Some(t) => {
                            return Err(ExprError {
                                offset: t.offset,
                                message: format!("expected a name after `.`, found {}", t.kind),
                            })
                        }
                        None => return Err(self.eof_error("a name after `.`")),
                    }
                }
                Ok((Ast::Path(path), tok.offset))
            }
            Tok::LParen => {
                let inner = self.expr()?;
                match self.next() {
                    Some(Token { kind: Tok::RParen, .. }) => Ok(inner),
                    Some(t) => Err(ExprError {
                        offset: t.offset,
                        message: format!("expected `)`, found {}", t.kind),
                    }),
                    None => Err(self.eof_error("`)`")),
                }
            }
            other => Err(ExprError {
                offset: tok.offset,
                message: format!("expected a value, found {other}"),
            }),
        }
    }
}

// ---------------------------------------------------------------- typing

fn to_cond<R: Resolver>(ast: &(Ast, usize), r: &R, errors: &mut Vec<ExprError>) -> Option<Cond<R::Slot>> {
    let (node, off) = ast;
    match node {
        Ast::Bool(b) => Some(Cond::Const(*b)),
        Ast::Not(a) => Some(Cond::Not(Box::new(to_cond(a, r, errors)?))),
        Ast::Bin(op @ ("and" | "or"), a, b) => {
            let a = to_cond(a, r, errors);
            let b = to_cond(b, r, errors);
            let (a, b) = (Box::new(a?), Box::new(b?));
            Some(if *op == "and" { Cond::And(a, b) } else { Cond::Or(a, b) })
        }
        Ast::Bin(op @ ("<" | "<=" | ">" | ">=" | "==" | "!="), a, b) => {
            let a = to_num(a, r, errors);
            let b = to_num(b, r, errors);
            let op = match *op {
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                ">=" => CmpOp::Ge,
                "==" => CmpOp::Eq,
                _ => CmpOp::Ne,
            };
            Some(Cond::Cmp(op, a?, b?))
        }
        _ => {
            // Resolve names anyway, so unknown names are reported too.
            to_num(ast, r, errors);
            errors.push(ExprError {
                offset: *off,
                message: "expected a condition (a comparison such as `temperature > 80`), found a number".into(),
            });
            None
        }
    }
}

fn to_num<R: Resolver>(ast: &(Ast, usize), r: &R, errors: &mut Vec<ExprError>) -> Option<Num<R::Slot>> {
    let (node, off) = ast;
    match node {
        Ast::Num(v) => Some(Num::Const(*v)),
        Ast::Path(path) => {
            let segs: Vec<&str> = path.iter().map(String::as_str).collect();
            match r.resolve(&segs) {
                Ok(slot) => Some(Num::Var(slot)),
                Err(e) => {
                    // Segments are written joined by `.`.
                    let into: usize = segs.iter().take(e.segment).map(|s| s.chars().count() + 1).sum();
                    errors.push(ExprError {
                        offset: off + into,
                        message: e.message,
                    });
                    None
                }
            }
        }
        Ast::Neg(a) => Some(Num::Neg(Box::new(to_num(a, r, errors)?))),
        Ast::Bin(op @ ("+" | "-" | "*" | "/" | "%"), a, b) => {
            let a = to_num(a, r, errors);
            let b = to_num(b, r, errors);
            let op = match *op {
                "+" => ArithOp::Add,
                "-" => ArithOp::Sub,
                "*" => ArithOp::Mul,
                "/" => ArithOp::Div,
                _ => ArithOp::Rem,
            };
            Some(Num::Arith(op, Box::new(a?), Box::new(b?)))
        }
        Ast::Call(name, args) => {
            let func = match name.as_str() {
                "abs" => Func::Abs,
                "min" => Func::Min,
                "max" => Func::Max,
                other => {
                    errors.push(ExprError {
                        offset: *off,
                        message: format!("unknown function `{other}`; expected `abs`, `min` or `max`"),
                    });
                    return None;
                }
            };
            if func == Func::Abs && args.len() != 1 {
                errors.push(ExprError {
                    offset: *off,
                    message: format!("`abs` takes 1 argument, found {}", args.len()),
                });
                return None;
            }
            let args: Vec<Option<Num<R::Slot>>> = args.iter().map(|a| to_num(a, r, errors)).collect();
            Some(Num::Call(func, args.into_iter().collect::<Option<Vec<_>>>()?))
        }
        Ast::Bool(_) | Ast::Not(_) | Ast::Bin(..) => {
            errors.push(ExprError {
                offset: *off,
                message: "expected a number, found a condition".into(),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolves `a`, `b`, `c` to slots 0..3 and `w.x.avg` to slot 10.
    struct Names;
    impl Resolver for Names {
        type Slot = usize;
        fn resolve(&self, path: &[&str]) -> Result<usize, Unresolved> {
            match path {
                ["a"] => Ok(0),
                ["b"] => Ok(1),
                ["c"] => Ok(2),
                ["w", "x", "avg"] => Ok(10),
                ["w", "x", agg] => Err(Unresolved::at(2, format!("unknown aggregate `{agg}`"))),
                other => Err(format!("unknown name `{}`", other.join(".")).into()),
            }
        }
    }

    struct Vals(Vec<f64>);
    impl Env<usize> for Vals {
        fn get(&self, slot: usize) -> f64 {
            self.0.get(slot).copied().unwrap_or(f64::NAN)
        }
    }

    fn eval(text: &str, vals: &[f64]) -> bool {
        let c = compile_condition(text, &Names).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        c.eval(&Vals(vals.to_vec()))
    }

    fn err(text: &str) -> (usize, String) {
        let e = compile_condition(text, &Names).expect_err(text);
        (e[0].offset, e[0].message.clone())
    }

    #[test]
    fn evaluates_a_table_of_conditions() {
        let rows: &[(&str, &[f64], bool)] = &[
            ("a > 1", &[2.0], true),
            ("a > 1", &[1.0], false),
            ("a >= 1 and b < 2", &[1.0, 1.5], true),
            ("a >= 1 && b < 2", &[1.0, 2.5], false),
            ("a > 5 or b > 5", &[1.0, 6.0], true),
            ("not a > 5", &[1.0], true),
            ("!(a > 5)", &[6.0], false),
            ("a + b * 2 == 5", &[1.0, 2.0], true),
            ("(a + b) * 2 == 6", &[1.0, 2.0], true),
            ("-a < 0", &[1.0], true),
            ("a % 2 == 1", &[5.0], true),
            ("abs(a - b) > 3", &[1.0, 5.0], true),
            ("max(a, b, c) == 3", &[1.0, 3.0, 2.0], true),
            ("min(a, b) == 1", &[1.0, 3.0], true),
            ("a - b > 0", &[3.0, 1.0], true),
            ("1.5e1 == 15", &[], true),
            ("true", &[], true),
            ("false or a > 0", &[1.0], true),
        ];
        for (text, vals, want) in rows {
            assert_eq!(eval(text, vals), *want, "{text} with {vals:?}");
        }
    }

    #[test]
    fn unknown_values_never_fire() {
        assert!(!eval("a > 1", &[]));
        assert!(!eval("a <= 1", &[]));
        assert!(!eval("a != 1", &[]));
        assert!(!eval("max(a, 5) > 1", &[]));
        assert!(
            eval("not a > 1", &[]),
            "not of unknown is true, by design of NaN compare"
        );
    }

    #[test]
    fn window_paths_resolve() {
        assert!(eval(
            "w.x.avg > 7.0",
            &[0.0; 10].iter().chain(&[7.5]).copied().collect::<Vec<_>>()
        ));
    }

    #[test]
    fn errors_point_at_the_offending_character() {
        assert_eq!(
            err("a >"),
            (3, "expected a value, found the end of the expression".into())
        );
        assert_eq!(err("a > > 1").0, 4);
        assert_eq!(err("a = 1"), (2, "`=` is not an operator; use `==` to compare".into()));
        assert_eq!(err("vib > 1"), (0, "unknown name `vib`".into()));
        assert_eq!(err("a > 1 and zz.q < 2").0, 10);
        assert_eq!(err("a + 1").0, 2);
        assert_eq!(err("(a > 1").0, 6);
        assert_eq!(err("1 < a < 2").0, 6);
        assert_eq!(err("sqrt(a) > 1").0, 0);
        assert_eq!(err("a > 1 b").0, 6);
        assert_eq!(err("a $ 1").0, 2);
        // A wrong segment of a dotted name: at that segment.
        assert_eq!(err("a > 1 or w.x.mean > 2"), (13, "unknown aggregate `mean`".into()));
    }

    #[test]
    fn every_unknown_name_is_reported() {
        let e = compile_condition("x > 1 and y < 2", &Names).unwrap_err();
        let offsets: Vec<usize> = e.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, vec![0, 10]);
    }

    #[test]
    fn slots_are_visited() {
        let c = compile_condition("a > 1 and w.x.avg < c", &Names).unwrap();
        let mut seen = Vec::new();
        c.visit_slots(&mut |s| seen.push(s));
        assert_eq!(seen, vec![0, 10, 2]);
    }

    /// Nesting and length are bounded, so no expression exhausts the stack
    /// of the parser, the typing or the evaluation (the `expr` fuzz target
    /// found deep nesting).
    #[test]
    fn nesting_and_length_are_bounded() {
        let deep = format!("{}a{} > 1", "(".repeat(40), ")".repeat(40));
        let (off, msg) = err(&deep);
        assert_eq!(
            (off, msg.as_str()),
            (32, "expression nested too deeply: at most 32 levels")
        );
        assert!(err(&format!("{}a > 1", "not ".repeat(40)))
            .1
            .contains("nested too deeply"));
        assert!(err(&format!("{}a > 1", "- ".repeat(40)))
            .1
            .contains("nested too deeply"));
        let (_, msg) = err(&format!("abs({}a{}) > 1", "abs(".repeat(40), ")".repeat(40)));
        assert!(msg.contains("nested too deeply"), "{msg}");
        let fine = format!("{}a{} > 1", "(".repeat(30), ")".repeat(30));
        assert!(eval(&fine, &[2.0]));
        let long = format!("{} > 1", vec!["a"; 300].join(" + "));
        assert!(err(&long).1.contains("expression too long: at most 512 tokens"));
        let chain = format!("{} > 1", vec!["a"; 200].join(" + "));
        assert!(eval(&chain, &[1.0]));
    }
}
