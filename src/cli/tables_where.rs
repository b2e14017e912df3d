//! `tables show --where EXPR`: a small predicate language parsed into a Polars expression.
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | "(" expr ")" | cmp
//! cmp     := column ( op value | "is" ["not"] "null" | ["not"] "in" "(" value ("," value)* ")" )
//! op      := = | == | != | <> | < | <= | > | >=
//! value   := 'string' | "string" | number | true | false
//! column  := name | `quoted name`
//! ```
//! Keywords are case-insensitive. A hand-written parser rather than polars-sql: this is all
//! `tables show` needs, errors can point at the column of the problem, and polars-sql would add
//! its SQL parser to every build. String literals compared with date or timestamp columns are
//! parsed as dates/timestamps (`event_date >= '2025-01-01'`).

use polars::prelude::{DataType, Expr, PlSmallStr, Schema, TimeUnit, col, lit};

/// A parsed predicate, before it meets a table's schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    Or(Box<Pred>, Box<Pred>),
    And(Box<Pred>, Box<Pred>),
    Not(Box<Pred>),
    Cmp(String, Op, Value),
    IsNull(String, bool),
    In(String, Vec<Value>, bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Quoted(String),
    Str(String),
    Num(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

/// Tokens with their 1-based character column.
fn lex(text: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        if let Some(op) = ["==", "!=", "<>", "<=", ">="]
            .into_iter()
            .find(|o| *o == two)
        {
            out.push((Tok::Op(op), at));
            i += 2;
            continue;
        }
        match c {
            '(' => out.push((Tok::LParen, at)),
            ')' => out.push((Tok::RParen, at)),
            ',' => out.push((Tok::Comma, at)),
            '=' => out.push((Tok::Op("="), at)),
            '<' => out.push((Tok::Op("<"), at)),
            '>' => out.push((Tok::Op(">"), at)),
            '\'' | '"' | '`' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(format!("unterminated {c}…{c} starting at column {at}"));
                        }
                        // A doubled quote inside is the quote itself (SQL style).
                        Some(&q) if q == c && chars.get(j + 1) == Some(&c) => {
                            s.push(c);
                            j += 2;
                        }
                        Some(&q) if q == c => break,
                        Some(&q) => {
                            s.push(q);
                            j += 1;
                        }
                    }
                }
                out.push((
                    if c == '`' {
                        Tok::Quoted(s)
                    } else {
                        Tok::Str(s)
                    },
                    at,
                ));
                i = j + 1;
                continue;
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_digit() || matches!(chars[j], '.' | 'e' | 'E' | '_'))
                {
                    j += 1;
                }
                out.push((Tok::Num(chars[i..j].iter().collect()), at));
                i = j;
                continue;
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                out.push((Tok::Ident(chars[i..j].iter().collect()), at));
                i = j;
                continue;
            }
            other => return Err(format!("unexpected `{other}` at column {at}")),
        }
        i += 1;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
    /// Open `(` and `not` around the current position.
    depth: usize,
    /// Comparisons so far.
    terms: usize,
}

/// Nesting deeper than this is refused: the parser, the predicate tree and the Polars plan are
/// all recursive, and 10,000 `(` once overflowed the stack and aborted the process.
const MAX_DEPTH: usize = 64;
/// More comparisons than this is refused for the same reason (a long `and` chain is a deep tree).
const MAX_TERMS: usize = 256;

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Quoted(s) => format!("`{s}`"),
        Tok::Str(s) => format!("'{s}'"),
        Tok::Num(s) => format!("`{s}`"),
        Tok::Op(o) => format!("`{o}`"),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn col_here(&self) -> usize {
        self.toks.get(self.pos).map(|(_, c)| *c).unwrap_or(self.end)
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let yes = self.keyword(kw);
        if yes {
            self.pos += 1;
        }
        yes
    }

    /// "expected X after `prev` at column N" (or "at the end").
    fn expected(&self, what: &str) -> String {
        let after = self
            .pos
            .checked_sub(1)
            .and_then(|p| self.toks.get(p))
            .map(|(t, _)| format!(" after {}", describe(t)))
            .unwrap_or_default();
        match self.toks.get(self.pos) {
            Some((t, c)) => format!(
                "expected {what}{after} at column {c}, found {}",
                describe(t)
            ),
            None => format!(
                "expected {what}{after} at column {} (end of input)",
                self.end
            ),
        }
    }

    fn or(&mut self) -> Result<Pred, String> {
        let mut left = self.and()?;
        while self.eat_keyword("or") {
            left = Pred::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Pred, String> {
        let mut left = self.unary()?;
        while self.eat_keyword("and") {
            left = Pred::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Pred, String> {
        let nested = self.keyword("not") || self.peek() == Some(&Tok::LParen);
        if nested {
            if self.depth >= MAX_DEPTH {
                return Err(format!(
                    "nested more than {MAX_DEPTH} deep at column {}",
                    self.col_here()
                ));
            }
            self.depth += 1;
        }
        let pred = self.nested_or_cmp();
        if nested {
            self.depth -= 1;
        }
        pred
    }

    fn nested_or_cmp(&mut self) -> Result<Pred, String> {
        if self.eat_keyword("not") {
            return Ok(Pred::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let inner = self.or()?;
            if self.peek() != Some(&Tok::RParen) {
                return Err(self.expected("`)`"));
            }
            self.pos += 1;
            return Ok(inner);
        }
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(format!(
                "more than {MAX_TERMS} comparisons (at column {})",
                self.col_here()
            ));
        }
        self.cmp()
    }

    fn column(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Tok::Ident(s))
                if !["and", "or", "not", "is", "in", "null"]
                    .iter()
                    .any(|k| s.eq_ignore_ascii_case(k)) =>
            {
                self.pos += 1;
                Ok(s)
            }
            Some(Tok::Quoted(s)) => {
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.expected("a column name")),
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        let v = match self.peek().cloned() {
            Some(Tok::Str(s)) => Value::Str(s),
            Some(Tok::Num(n)) => {
                let clean = n.replace('_', "");
                if let Ok(i) = clean.parse::<i64>() {
                    Value::Int(i)
                } else if let Ok(f) = clean.parse::<f64>() {
                    Value::Float(f)
                } else {
                    return Err(format!(
                        "`{n}` at column {} is not a number",
                        self.col_here()
                    ));
                }
            }
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("null") => {
                return Err(format!(
                    "`null` at column {} compares to nothing: use `is null` / `is not null`",
                    self.col_here()
                ));
            }
            _ => return Err(self.expected("a value")),
        };
        self.pos += 1;
        Ok(v)
    }

    fn cmp(&mut self) -> Result<Pred, String> {
        let column = self.column()?;
        if self.eat_keyword("is") {
            let negated = self.eat_keyword("not");
            if !self.eat_keyword("null") {
                return Err(self.expected("`null`"));
            }
            return Ok(Pred::IsNull(column, negated));
        }
        let negated = self.eat_keyword("not");
        if self.eat_keyword("in") {
            if self.peek() != Some(&Tok::LParen) {
                return Err(self.expected("`(`"));
            }
            self.pos += 1;
            let mut values = vec![self.value()?];
            while self.peek() == Some(&Tok::Comma) {
                self.pos += 1;
                values.push(self.value()?);
            }
            if self.peek() != Some(&Tok::RParen) {
                return Err(self.expected("`,` or `)`"));
            }
            self.pos += 1;
            return Ok(Pred::In(column, values, negated));
        }
        if negated {
            return Err(self.expected("`in`"));
        }
        let op = match self.peek() {
            Some(Tok::Op(o)) => match *o {
                "=" | "==" => Op::Eq,
                "!=" | "<>" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                _ => Op::Ge,
            },
            _ => return Err(self.expected("a comparison (=, !=, <, <=, >, >=, is null, in)")),
        };
        self.pos += 1;
        Ok(Pred::Cmp(column, op, self.value()?))
    }
}

/// Parses `text`; errors say what was expected and at which column.
pub fn parse(text: &str) -> Result<Pred, String> {
    let toks = lex(text).map_err(|e| format!("--where: {e}"))?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: text.chars().count() + 1,
        depth: 0,
        terms: 0,
    };
    let pred = p.or().map_err(|e| format!("--where: {e}"))?;
    if p.pos < p.toks.len() {
        return Err(format!("--where: {}", p.expected("`and`, `or` or the end")));
    }
    Ok(pred)
}

/// A date or timestamp literal → microseconds since the epoch (UTC). Parsed here rather than
/// by a Polars cast, which turns text it cannot parse into null (a silently empty result).
fn parse_micros(text: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let s = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

/// A literal for comparing with a column of type `dtype` (strings become dates/timestamps for
/// temporal columns).
fn literal(column: &str, v: &Value, dtype: &DataType) -> Result<Expr, String> {
    let mismatch =
        |what: &str| format!("--where: column {column} is {dtype}, not comparable with {what}");
    match v {
        Value::Str(s) => match dtype {
            DataType::String => Ok(lit(s.clone())),
            DataType::Date => {
                let day = parse_micros(s)
                    .ok_or_else(|| {
                        format!("--where: '{s}' is not a date (YYYY-MM-DD) for column {column}")
                    })?
                    .div_euclid(86_400_000_000);
                Ok(lit(day as i32).cast(DataType::Date))
            }
            DataType::Datetime(unit, _) => {
                let micros = parse_micros(s).ok_or_else(|| {
                    format!(
                        "--where: '{s}' is not a timestamp (RFC 3339, `YYYY-MM-DD HH:MM:SS` UTC or \
                         a date) for column {column}"
                    )
                })?;
                let value = match unit {
                    TimeUnit::Milliseconds => micros.div_euclid(1000),
                    TimeUnit::Microseconds => micros,
                    TimeUnit::Nanoseconds => micros.saturating_mul(1000),
                };
                Ok(lit(value).cast(dtype.clone()))
            }
            _ => Err(mismatch(&format!("the string '{s}'"))),
        },
        Value::Int(i) if dtype.is_primitive_numeric() => Ok(lit(*i)),
        Value::Float(f) if dtype.is_primitive_numeric() => Ok(lit(*f)),
        Value::Bool(b) if dtype == &DataType::Boolean => Ok(lit(*b)),
        Value::Int(i) => Err(mismatch(&format!("the number {i}"))),
        Value::Float(f) => Err(mismatch(&format!("the number {f}"))),
        Value::Bool(b) => Err(mismatch(&format!("{b}"))),
    }
}

fn column_type<'a>(schema: &'a Schema, name: &str) -> Result<&'a DataType, String> {
    schema.get(name).ok_or_else(|| {
        let names: Vec<&str> = schema.iter_names().map(|n| n.as_str()).collect();
        format!(
            "--where: no column `{name}` (columns: {})",
            names.join(", ")
        )
    })
}

/// The Polars expression of `pred` over a frame with `schema`.
pub fn to_expr(pred: &Pred, schema: &Schema) -> Result<Expr, String> {
    Ok(match pred {
        Pred::Or(a, b) => to_expr(a, schema)?.or(to_expr(b, schema)?),
        Pred::And(a, b) => to_expr(a, schema)?.and(to_expr(b, schema)?),
        Pred::Not(a) => to_expr(a, schema)?.not(),
        Pred::IsNull(c, negated) => {
            column_type(schema, c)?;
            if *negated {
                col(c.as_str()).is_not_null()
            } else {
                col(c.as_str()).is_null()
            }
        }
        Pred::Cmp(c, op, v) => {
            let dtype = column_type(schema, c)?;
            let (l, r) = (col(c.as_str()), literal(c, v, dtype)?);
            match op {
                Op::Eq => l.eq(r),
                Op::Ne => l.neq(r),
                Op::Lt => l.lt(r),
                Op::Le => l.lt_eq(r),
                Op::Gt => l.gt(r),
                Op::Ge => l.gt_eq(r),
            }
        }
        Pred::In(c, values, negated) => {
            let dtype = column_type(schema, c)?;
            let mut any: Option<Expr> = None;
            // An OR of equalities: lists are short on a command line, and this keeps the
            // literal typing of `=` (dates, numbers) without building a typed Series.
            for v in values {
                let e = col(c.as_str()).eq(literal(c, v, dtype)?);
                any = Some(match any {
                    None => e,
                    Some(a) => a.or(e),
                });
            }
            let e = any.expect("in () has at least one value");
            if *negated { e.not() } else { e }
        }
    })
}

/// Parses `text` and builds its expression over `schema` in one step.
pub fn compile(text: &str, schema: &Schema) -> Result<Expr, String> {
    to_expr(&parse(text)?, schema)
}

/// Column names in `list` (comma-separated) checked against `schema`.
pub fn columns(list: &str, schema: &Schema) -> Result<Vec<PlSmallStr>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|c| {
            column_type(schema, c)
                .map(|_| PlSmallStr::from(c))
                .map_err(|e| e.replace("--where", "--columns"))
        })
        .collect()
}

#[cfg(test)]
#[path = "tables_where_tests.rs"]
mod tests;
