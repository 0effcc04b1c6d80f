//! The run query language: one parser for the CLI (`host runs list --filter`) and the UI, and
//! one compiler to parameterised SQL per backend (`sql.rs`). Values in an expression are always
//! bound as parameters, never pasted into the SQL; keys are checked against what a run has.
//!
//! ```text
//! metrics.test.accuracy > 0.9 and params.training.learning_rate = 0.001
//! (tags.owner = 'ana' or tags.owner = 'ben') and not status in ('failed', 'cancelled')
//! metrics.val_loss.min < 0.3 and metrics.accuracy@epoch=3 >= 0.8
//! data.sha256 = '3f2a' and plugin.model = 'MNISTMLP' and verified
//! ```
//!
//! Keys: `metrics.NAME` (the final value, else the last epoch's), `metrics.NAME.min`, `.max`,
//! `.first`, `.last`, `.mean` (over epochs), `metrics.NAME@epoch=N`; `params.KEY` (a dotted
//! config key); `attributes.X` or bare `X` for the run's own columns ([`Attribute`]); `tags.KEY`;
//! `data.sha256` and `plugin.sha256` (any data file or plugin build of the run, by prefix),
//! `sha256` (any file of the run), `plugin.KIND` (its class of that kind: `model`, `loader`,
//! `report`); `sweep`, `trial`, `replay_of`, `verified`. A segment with other characters is
//! written in backquotes: ``metrics.`weird name` ``.
//!
//! A comparison with a value the run lacks is false (so `not metrics.x > 1` holds for runs
//! without `x`); numbers compare as numbers, text as text.

pub(crate) mod sql;

use std::fmt;

use serde::Serialize;
use serde_json::Value as Json;

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        key: Key,
        op: Op,
        value: Literal,
    },
    In {
        key: Key,
        values: Vec<Literal>,
        negated: bool,
    },
    Like {
        key: Key,
        pattern: String,
        negated: bool,
    },
    IsNull {
        key: Key,
        negated: bool,
    },
    /// A key that is a condition on its own (`verified`).
    Holds(Key),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// A value written in an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Text(t) => write!(f, "'{}'", t.replace('\'', "''")),
            Literal::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// An aggregate of a metric over its epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Min,
    Max,
    First,
    Last,
    Mean,
}

/// Which value of a metric a key means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricValue {
    /// The final value (evaluation metrics), else the last epoch's.
    Final,
    Over(Aggregate),
    Epoch(i64),
}

/// A run's own columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    RunId,
    Experiment,
    Status,
    StartedAt,
    FinishedAt,
    Duration,
    Seed,
    Threads,
    ConfigFile,
    ConfigSha256,
    Hostname,
    HostVersion,
    GitCommit,
    Error,
    FailedStage,
    Sweep,
    Trial,
    ReplayOf,
}

impl Attribute {
    /// Every attribute under its names (the first is the one shown).
    const NAMES: &'static [(Attribute, &'static [&'static str])] = &[
        (Attribute::RunId, &["run_id", "id", "run"]),
        (Attribute::Experiment, &["experiment", "experiment_name"]),
        (Attribute::Status, &["status"]),
        (Attribute::StartedAt, &["started_at", "start_time", "started"]),
        (Attribute::FinishedAt, &["finished_at", "end_time", "finished"]),
        (Attribute::Duration, &["duration", "seconds"]),
        (Attribute::Seed, &["seed"]),
        (Attribute::Threads, &["threads"]),
        (Attribute::ConfigFile, &["config_file", "config"]),
        (Attribute::ConfigSha256, &["config_sha256"]),
        (Attribute::Hostname, &["hostname", "host"]),
        (Attribute::HostVersion, &["host_version"]),
        (Attribute::GitCommit, &["git_commit", "commit"]),
        (Attribute::Error, &["error"]),
        (Attribute::FailedStage, &["failed_stage"]),
        (Attribute::Sweep, &["sweep", "sweep_id"]),
        (Attribute::Trial, &["trial"]),
        (Attribute::ReplayOf, &["replay_of"]),
    ];

    fn named(name: &str) -> Option<Attribute> {
        let name = name.to_ascii_lowercase();
        Attribute::NAMES.iter().find(|(_, names)| names.contains(&name.as_str())).map(|(a, _)| *a)
    }

    pub fn name(self) -> &'static str {
        Attribute::NAMES.iter().find(|(a, _)| *a == self).map(|(_, names)| names[0]).unwrap_or("?")
    }

    /// Whether its values are numbers.
    fn numeric(self) -> bool {
        matches!(self, Attribute::Seed | Attribute::Threads | Attribute::Trial | Attribute::Duration)
    }
}

/// The kinds of file a run records as its data.
pub(crate) const DATA_KINDS: [&str; 3] = ["raw", "dataset", "split"];

/// What a key names.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Metric {
        name: String,
        value: MetricValue,
    },
    Param(String),
    Attribute(Attribute),
    Tag(String),
    /// The run's class of a plugin kind (`Model`, `Loader`, `ReportGenerator`).
    PluginClass(String),
    /// Any plugin build of the run, by SHA-256 prefix.
    PluginSha256,
    /// Any data file of the run (raw, dataset, split), by SHA-256 prefix.
    DataSha256,
    /// Any file or plugin build of the run, by SHA-256 prefix.
    AnySha256,
    /// The run's latest `host verify` passed.
    Verified,
}

impl Key {
    /// Keys with several values per run: a condition holds when one value meets it.
    fn many(&self) -> bool {
        matches!(self, Key::PluginSha256 | Key::DataSha256 | Key::AnySha256)
    }

    /// The key as written canonically (column headers, JSON keys of `--columns`).
    pub fn canonical(&self) -> String {
        match self {
            Key::Metric { name, value: MetricValue::Final } => format!("metrics.{name}"),
            Key::Metric { name, value: MetricValue::Epoch(epoch) } => format!("metrics.{name}@epoch={epoch}"),
            Key::Metric { name, value: MetricValue::Over(aggregate) } => {
                format!("metrics.{name}.{}", format!("{aggregate:?}").to_ascii_lowercase())
            }
            Key::Param(name) => format!("params.{name}"),
            Key::Attribute(attribute) => attribute.name().to_owned(),
            Key::Tag(name) => format!("tags.{name}"),
            Key::PluginClass(kind) => format!("plugin.{}", kind_name(kind)),
            Key::PluginSha256 => "plugin.sha256".into(),
            Key::DataSha256 => "data.sha256".into(),
            Key::AnySha256 => "sha256".into(),
            Key::Verified => "verified".into(),
        }
    }
}

/// The plugin kinds as stored, under the names a query may use.
const PLUGIN_KINDS: &[(&str, &[&str])] = &[
    ("Model", &["model"]),
    ("Loader", &["loader", "data_loader"]),
    ("ReportGenerator", &["report", "report_generator", "reportgenerator"]),
];

/// A plugin kind as stored (`ReportGenerator`) under the name queries give it first (`report`).
pub fn kind_name(stored: &str) -> &'static str {
    PLUGIN_KINDS.iter().find(|(kind, _)| *kind == stored).map(|(_, names)| names[0]).unwrap_or("?")
}

/// An expression (or `--order-by`, `--columns`) that does not parse: what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct QueryError {
    pub message: String,
    /// 1-based, in characters.
    pub column: usize,
    pub text: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text on its own line with a caret under the column, as compilers show it.
        let shown: String = self.text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        write!(
            f,
            "{} at column {}\n  {}\n  {}^",
            self.message,
            self.column,
            shown,
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

/// One column of `--columns`, or the sort key of `--order-by`.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub key: Key,
    /// As written (the JSON key and CSV header).
    pub label: String,
}

/// A sort key and its direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub key: Key,
    pub descending: bool,
}

/// Which runs to read, in what order, with which values: what `runs list` and the UI ask.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub filter: Option<Expr>,
    /// Newest first when empty.
    pub order: Vec<Order>,
    pub columns: Vec<Column>,
    /// 0: every matching run.
    pub limit: usize,
    pub offset: usize,
    /// Count matching runs only up to this many (0: count them all): a count stops early
    /// instead of testing every run of a large store against a common filter.
    pub count_limit: usize,
}

/// Matching runs, a page of them.
#[derive(Debug, Clone, Serialize)]
pub struct RunPage {
    /// How many runs match in all, or `count_limit` when at least that many do.
    pub total: u64,
    /// Whether `total` is every match (false: at least `total` match).
    pub exact: bool,
    /// Per run, its id and the value of every column.
    pub rows: Vec<(String, Vec<Json>)>,
}

/// The statements a query compiles to for a backend (PostgreSQL or SQLite): the page, then the
/// count, with how many values each binds. For inspection and fuzzing; stores run them.
pub fn compiled_sql(query: &RunQuery, postgres: bool) -> Result<[(String, usize); 2], String> {
    let dialect = if postgres { sql::Dialect::Postgres } else { sql::Dialect::Sqlite };
    let selective = vec![true; sql::probes(query, dialect).len()];
    let compiled = sql::compile(query, dialect, &selective)?;
    Ok([(compiled.page, compiled.page_binds.len()), (compiled.count, compiled.count_binds.len())])
}

/// The longest expression read: longer ones are refused before parsing.
const MAX_TEXT: usize = 16 * 1024;
/// How deeply parentheses and `not` may nest.
const MAX_DEPTH: usize = 64;
/// How many comparisons an expression may hold (each value of an `in` list counts): far past
/// any query a person writes, below what the databases' own expression limits allow.
const MAX_COMPARISONS: usize = 256;

/// Parses a filter expression.
pub fn parse_filter(text: &str) -> Result<Expr, QueryError> {
    let mut parser = Parser::new(text)?;
    let expr = parser.or(0)?;
    match parser.peek() {
        None => Ok(expr),
        Some(token) => {
            Err(parser.error_at(token.column, format!("expected `and`, `or` or the end, found {}", token.kind)))
        }
    }
}

/// Parses `--columns`: keys separated by commas.
pub fn parse_columns(text: &str) -> Result<Vec<Column>, QueryError> {
    let mut parser = Parser::new(text)?;
    let mut columns = Vec::new();
    loop {
        let start = parser.position();
        let key = parser.key()?;
        let label = parser.slice(start);
        columns.push(Column { key, label });
        match parser.next() {
            None => return Ok(columns),
            Some(Token { kind: TokenKind::Comma, .. }) => {}
            Some(token) => {
                return Err(parser.error_at(token.column, format!("expected `,` or the end, found {}", token.kind)));
            }
        }
    }
}

/// Parses `--order-by`: keys each followed by `asc` or `desc` (default `asc`), by commas.
pub fn parse_order(text: &str) -> Result<Vec<Order>, QueryError> {
    let mut parser = Parser::new(text)?;
    let mut order = Vec::new();
    loop {
        let key = parser.key()?;
        let mut descending = false;
        if let Some(Token { kind: TokenKind::Word(word), .. }) = parser.peek() {
            match word.to_ascii_lowercase().as_str() {
                "asc" => parser.advance(),
                "desc" => {
                    descending = true;
                    parser.advance()
                }
                _ => {}
            }
        }
        order.push(Order { key, descending });
        match parser.next() {
            None => return Ok(order),
            Some(Token { kind: TokenKind::Comma, .. }) => {}
            Some(token) => {
                return Err(parser
                    .error_at(token.column, format!("expected `asc`, `desc`, `,` or the end, found {}", token.kind)));
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    /// A key or keyword: segments joined by dots, backquoted segments as written.
    Word(String),
    Number(f64),
    Text(String),
    Op(Op),
    Open,
    Close,
    Comma,
    At,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Word(word) => write!(f, "`{word}`"),
            TokenKind::Number(n) => write!(f, "the number {n}"),
            TokenKind::Text(t) => write!(f, "the text '{t}'"),
            TokenKind::Op(op) => write!(f, "`{}`", op.sql()),
            TokenKind::Open => write!(f, "`(`"),
            TokenKind::Close => write!(f, "`)`"),
            TokenKind::Comma => write!(f, "`,`"),
            TokenKind::At => write!(f, "`@`"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    /// 1-based character column of its first character.
    column: usize,
    /// Byte range in the text.
    start: usize,
    end: usize,
    /// The key's segments (a word only), backquotes removed.
    segments: Vec<String>,
}

fn lex(text: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let error = |index: usize, message: String| QueryError { message, column: index + 1, text: text.to_owned() };
    let byte = |index: usize| chars.get(index).map_or(text.len(), |(b, _)| *b);
    let mut tokens = Vec::new();
    let mut i = 0;
    let segment_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    while i < chars.len() {
        let (_, c) = chars[i];
        let start = i;
        let simple = |kind: TokenKind, length: usize| Token {
            kind,
            column: start + 1,
            start: byte(start),
            end: byte(start + length),
            segments: Vec::new(),
        };
        match c {
            c if c.is_whitespace() => i += 1,
            '(' | ')' | ',' | '@' => {
                let kind = match c {
                    '(' => TokenKind::Open,
                    ')' => TokenKind::Close,
                    ',' => TokenKind::Comma,
                    _ => TokenKind::At,
                };
                tokens.push(simple(kind, 1));
                i += 1;
            }
            '=' | '!' | '<' | '>' => {
                let next = chars.get(i + 1).map(|(_, c)| *c);
                let (op, length) = match (c, next) {
                    ('=', Some('=')) => (Op::Eq, 2),
                    ('=', _) => (Op::Eq, 1),
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('>')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('>', _) => (Op::Gt, 1),
                    _ => return Err(error(i, "`!` alone is no operator: `!=` or `not`".into())),
                };
                tokens.push(simple(TokenKind::Op(op), length));
                i += length;
            }
            '\'' | '"' => {
                // SQL's way: the quote doubled inside is one quote.
                let mut value = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j).map(|(_, c)| *c) {
                        None => return Err(error(i, format!("text opened here is never closed with {c}"))),
                        Some(q) if q == c && chars.get(j + 1).map(|(_, c)| *c) == Some(c) => {
                            value.push(c);
                            j += 2;
                        }
                        Some(q) if q == c => break,
                        Some(other) => {
                            value.push(other);
                            j += 1;
                        }
                    }
                }
                tokens.push(simple(TokenKind::Text(value), j + 1 - i));
                i = j + 1;
            }
            c if c.is_ascii_digit()
                || (c == '-' || c == '.' || c == '+')
                    && chars.get(i + 1).is_some_and(|(_, d)| d.is_ascii_digit() || *d == '.') =>
            {
                let mut j = i + 1;
                while let Some((_, d)) = chars.get(j) {
                    let exponent_sign = (*d == '-' || *d == '+') && matches!(chars[j - 1].1, 'e' | 'E');
                    if d.is_ascii_alphanumeric() || *d == '.' || exponent_sign {
                        j += 1;
                    } else {
                        break;
                    }
                }
                let written = &text[byte(i)..byte(j)];
                let number: f64 = written
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| error(i, format!("`{written}` is not a number")))?;
                tokens.push(simple(TokenKind::Number(number), j - i));
                i = j;
            }
            c if segment_char(c) || c == '`' => {
                let mut segments = Vec::new();
                let mut j = i;
                loop {
                    match chars.get(j).map(|(_, c)| *c) {
                        Some('`') => {
                            let mut segment = String::new();
                            let mut k = j + 1;
                            loop {
                                match chars.get(k).map(|(_, c)| *c) {
                                    None => return Err(error(j, "a name opened here with ` is never closed".into())),
                                    Some('`') => break,
                                    Some(other) => segment.push(other),
                                }
                                k += 1;
                            }
                            if segment.is_empty() {
                                return Err(error(j, "an empty name in backquotes".into()));
                            }
                            segments.push(segment);
                            j = k + 1;
                        }
                        Some(c) if segment_char(c) => {
                            let from = j;
                            while chars.get(j).is_some_and(|(_, c)| segment_char(*c)) {
                                j += 1;
                            }
                            segments.push(text[byte(from)..byte(j)].to_owned());
                        }
                        _ => return Err(error(j, "expected a name after `.`".into())),
                    }
                    if chars.get(j).map(|(_, c)| *c) == Some('.') {
                        j += 1;
                    } else {
                        break;
                    }
                }
                let word = text[byte(i)..byte(j)].to_owned();
                tokens.push(Token {
                    kind: TokenKind::Word(word),
                    column: start + 1,
                    start: byte(start),
                    end: byte(j),
                    segments,
                });
                i = j;
            }
            other => return Err(error(i, format!("unexpected character {other:?}"))),
        }
    }
    Ok(tokens)
}

struct Parser {
    text: String,
    tokens: Vec<Token>,
    at: usize,
    /// Comparisons read so far.
    comparisons: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Parser, QueryError> {
        if text.len() > MAX_TEXT {
            return Err(QueryError {
                message: format!("the expression is longer than {MAX_TEXT} bytes"),
                column: 1,
                text: text.chars().take(80).collect(),
            });
        }
        let tokens = lex(text)?;
        if tokens.is_empty() {
            return Err(QueryError { message: "the expression is empty".into(), column: 1, text: text.to_owned() });
        }
        Ok(Parser { text: text.to_owned(), tokens, at: 0, comparisons: 0 })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn advance(&mut self) {
        self.at += 1;
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    /// The byte offset the next token starts at.
    fn position(&self) -> usize {
        self.peek().map_or(self.text.len(), |t| t.start)
    }

    /// The text from `start` to the end of the last token read.
    fn slice(&self, start: usize) -> String {
        let end = self.tokens.get(self.at.wrapping_sub(1)).map_or(start, |t| t.end);
        self.text[start..end.max(start)].trim().to_owned()
    }

    fn error_at(&self, column: usize, message: String) -> QueryError {
        QueryError { message, column, text: self.text.clone() }
    }

    /// An error at the next token, or just past the end.
    fn error_here(&self, message: impl Into<String>) -> QueryError {
        let column = self.peek().map_or(self.text.chars().count() + 1, |t| t.column);
        self.error_at(column, message.into())
    }

    /// Whether the next token is the keyword `word`; consumes it if so.
    fn keyword(&mut self, word: &str) -> bool {
        let is = matches!(self.peek(), Some(Token { kind: TokenKind::Word(w), segments, .. })
            if segments.len() == 1 && w.eq_ignore_ascii_case(word));
        if is {
            self.advance();
        }
        is
    }

    fn or(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let mut left = self.and(depth)?;
        while self.keyword("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let mut left = self.unary(depth)?;
        while self.keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.unary(depth)?));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, QueryError> {
        if depth > MAX_DEPTH {
            return Err(self.error_here(format!("nested more than {MAX_DEPTH} deep")));
        }
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if matches!(self.peek(), Some(Token { kind: TokenKind::Open, .. })) {
            let open = self.next().map_or(0, |t| t.column);
            let inner = self.or(depth + 1)?;
            return match self.next() {
                Some(Token { kind: TokenKind::Close, .. }) => Ok(inner),
                Some(token) => Err(self.error_at(token.column, format!("expected `)`, found {}", token.kind))),
                None => Err(self.error_at(open, "this `(` is never closed".into())),
            };
        }
        self.predicate()
    }

    /// Counts one more comparison (at `column`), refusing one past the limit.
    fn count(&mut self, column: usize) -> Result<(), QueryError> {
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return Err(self.error_at(
                column,
                format!("more than {MAX_COMPARISONS} comparisons (each value of an `in` list counts)"),
            ));
        }
        Ok(())
    }

    fn predicate(&mut self) -> Result<Expr, QueryError> {
        let column = self.peek().map_or(0, |t| t.column);
        self.count(column)?;
        let key = self.key()?;
        let bare = |parser: &Parser| -> Result<Expr, QueryError> {
            if key == Key::Verified {
                Ok(Expr::Holds(key.clone()))
            } else {
                Err(parser.error_here(format!(
                    "expected a comparison (=, !=, <, <=, >, >=, in, like, is null) after `{}`",
                    key.canonical()
                )))
            }
        };
        let Some(token) = self.peek().cloned() else { return bare(self) };
        match &token.kind {
            TokenKind::Op(op) => {
                let op = *op;
                self.advance();
                // A value of the wrong kind is marked where the value is.
                let value_column = self.peek().map_or(column, |t| t.column);
                let value = self.literal()?;
                check_value(&key, &value, Some(op)).map_err(|m| self.error_at(value_column, m))?;
                Ok(Expr::Compare { key, op, value })
            }
            TokenKind::Word(_) => {
                let negated = self.keyword("not");
                if self.keyword("in") {
                    let values = self.list()?;
                    for value in &values {
                        check_value(&key, value, Some(Op::Eq)).map_err(|m| self.error_at(column, m))?;
                    }
                    Ok(Expr::In { key, values, negated })
                } else if self.keyword("like") {
                    let pattern = match self.literal()? {
                        Literal::Text(pattern) => pattern,
                        other => {
                            return Err(
                                self.error_at(token.column, format!("`like` takes text in quotes, not {other}"))
                            );
                        }
                    };
                    check_like(&key).map_err(|m| self.error_at(column, m))?;
                    Ok(Expr::Like { key, pattern, negated })
                } else if !negated && self.keyword("is") {
                    let negated = self.keyword("not");
                    if !self.keyword("null") {
                        return Err(self.error_here("expected `null` after `is`"));
                    }
                    Ok(Expr::IsNull { key, negated })
                } else if negated {
                    Err(self.error_here("expected `in` or `like` after `not`"))
                } else {
                    bare(self)
                }
            }
            _ => bare(self),
        }
    }

    fn list(&mut self) -> Result<Vec<Literal>, QueryError> {
        match self.next() {
            Some(Token { kind: TokenKind::Open, .. }) => {}
            _ => return Err(self.error_here("expected `(` and a list after `in`")),
        }
        let mut values = Vec::new();
        loop {
            if !values.is_empty() {
                let column = self.peek().map_or(0, |t| t.column);
                self.count(column)?;
            }
            values.push(self.literal()?);
            match self.next() {
                Some(Token { kind: TokenKind::Comma, .. }) => {}
                Some(Token { kind: TokenKind::Close, .. }) => return Ok(values),
                Some(token) => {
                    return Err(self.error_at(token.column, format!("expected `,` or `)`, found {}", token.kind)));
                }
                None => return Err(self.error_here("the list is never closed with `)`")),
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, QueryError> {
        match self.next() {
            Some(Token { kind: TokenKind::Number(n), .. }) => Ok(Literal::Number(n)),
            Some(Token { kind: TokenKind::Text(t), .. }) => Ok(Literal::Text(t)),
            Some(Token { kind: TokenKind::Word(w), segments, .. })
                if segments.len() == 1 && w.eq_ignore_ascii_case("true") =>
            {
                Ok(Literal::Bool(true))
            }
            Some(Token { kind: TokenKind::Word(w), segments, .. })
                if segments.len() == 1 && w.eq_ignore_ascii_case("false") =>
            {
                Ok(Literal::Bool(false))
            }
            Some(Token { kind: TokenKind::Word(w), column, .. }) => {
                Err(self.error_at(column, format!("expected a value, found `{w}` (text goes in quotes: '{w}')")))
            }
            Some(token) => Err(self.error_at(token.column, format!("expected a value, found {}", token.kind))),
            None => {
                self.at = self.tokens.len();
                Err(self.error_here("expected a value after the operator"))
            }
        }
    }

    fn key(&mut self) -> Result<Key, QueryError> {
        let token = match self.next() {
            Some(token @ Token { kind: TokenKind::Word(_), .. }) => token,
            Some(token) => {
                return Err(self.error_at(
                    token.column,
                    format!("expected a key such as metrics.test.accuracy, found {}", token.kind),
                ));
            }
            None => return Err(self.error_here("expected a key such as metrics.test.accuracy")),
        };
        let error = |message: String| QueryError { message, column: token.column, text: self.text.clone() };
        let segments = &token.segments;
        let rest = || segments[1..].join(".");
        let first = segments[0].to_ascii_lowercase();
        let needs_rest = |what: &str| -> Result<(), QueryError> {
            if segments.len() < 2 {
                return Err(error(format!("`{first}` needs a name after it: {first}.{what}")));
            }
            Ok(())
        };
        let key = match first.as_str() {
            "metrics" | "metric" => {
                needs_rest("NAME")?;
                let mut value = MetricValue::Final;
                let mut names = segments[1..].to_vec();
                if names.len() > 1 {
                    let aggregate = match names.last().map(|s| s.to_ascii_lowercase()).as_deref() {
                        Some("min") => Some(Aggregate::Min),
                        Some("max") => Some(Aggregate::Max),
                        Some("first") => Some(Aggregate::First),
                        Some("last") => Some(Aggregate::Last),
                        Some("mean" | "avg") => Some(Aggregate::Mean),
                        _ => None,
                    };
                    if let Some(aggregate) = aggregate {
                        names.pop();
                        value = MetricValue::Over(aggregate);
                    }
                }
                if matches!(self.peek(), Some(Token { kind: TokenKind::At, .. })) {
                    self.advance();
                    if value != MetricValue::Final {
                        return Err(self.error_here("`@epoch=` takes one epoch's value, not an aggregate's"));
                    }
                    if !self.keyword("epoch") {
                        return Err(self.error_here("expected `epoch` after `@`"));
                    }
                    if !matches!(self.next(), Some(Token { kind: TokenKind::Op(Op::Eq), .. })) {
                        self.at -= 1;
                        return Err(self.error_here("expected `=` after `@epoch`"));
                    }
                    match self.next() {
                        Some(Token { kind: TokenKind::Number(n), .. })
                            if n.fract() == 0.0 && (0.0..1e15).contains(&n) =>
                        {
                            value = MetricValue::Epoch(n as i64);
                        }
                        _ => {
                            self.at -= 1;
                            return Err(self.error_here("expected an epoch number after `@epoch=`"));
                        }
                    }
                }
                Key::Metric { name: names.join("."), value }
            }
            "params" | "param" | "parameters" => {
                needs_rest("KEY")?;
                Key::Param(rest())
            }
            "tags" | "tag" => {
                needs_rest("KEY")?;
                Key::Tag(rest())
            }
            "attributes" | "attribute" | "attr" => {
                needs_rest("status")?;
                let name = rest();
                match Attribute::named(&name) {
                    Some(Attribute::Sweep | Attribute::Trial | Attribute::ReplayOf) | None => {
                        return Err(error(format!("no attribute `{name}`; the attributes: {}", attribute_names())));
                    }
                    Some(attribute) => Key::Attribute(attribute),
                }
            }
            "data" => match rest().to_ascii_lowercase().as_str() {
                "sha256" => Key::DataSha256,
                _ => return Err(error(format!("no key `{}`: the data key is data.sha256", token_word(&token)))),
            },
            "plugin" | "plugins" => {
                needs_rest("model")?;
                let name = rest().to_ascii_lowercase();
                if name == "sha256" {
                    Key::PluginSha256
                } else {
                    match PLUGIN_KINDS.iter().find(|(_, names)| names.contains(&name.as_str())) {
                        Some((kind, _)) => Key::PluginClass((*kind).to_owned()),
                        None => {
                            return Err(error(format!(
                                "no plugin kind `{name}`; the keys: plugin.model, plugin.loader, plugin.report, plugin.sha256"
                            )));
                        }
                    }
                }
            }
            "sha256" if segments.len() == 1 => Key::AnySha256,
            "verified" if segments.len() == 1 => Key::Verified,
            _ => match (segments.len(), Attribute::named(&first)) {
                (1, Some(attribute)) => Key::Attribute(attribute),
                _ => {
                    return Err(error(format!(
                        "unknown key `{}`; keys start with metrics., params., attributes., tags., data., plugin. or are one of {}, sha256, verified",
                        token_word(&token),
                        attribute_names()
                    )));
                }
            },
        };
        Ok(key)
    }
}

fn token_word(token: &Token) -> &str {
    match &token.kind {
        TokenKind::Word(word) => word,
        _ => "",
    }
}

fn attribute_names() -> String {
    Attribute::NAMES.iter().map(|(_, names)| names[0]).collect::<Vec<_>>().join(", ")
}

fn is_hex_prefix(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `value` can be compared with `key` by `op`: the message if not.
fn check_value(key: &Key, value: &Literal, op: Option<Op>) -> Result<(), String> {
    let ordered = matches!(op, Some(Op::Lt | Op::Le | Op::Gt | Op::Ge));
    match key {
        Key::Metric { .. } => match value {
            Literal::Number(_) => Ok(()),
            other => Err(format!("{} is a number; compare it with a number, not {other}", key.canonical())),
        },
        Key::Attribute(attribute) if attribute.numeric() => match value {
            Literal::Number(_) => Ok(()),
            other => Err(format!("{} is a number; compare it with a number, not {other}", key.canonical())),
        },
        Key::Attribute(Attribute::Status) => match value {
            Literal::Text(status) if status.parse::<record::RunStatus>().is_ok() => Ok(()),
            other => Err(format!(
                "no status {other}; a run's status is one of 'running', 'completed', 'failed', 'cancelled', 'interrupted'"
            )),
        },
        Key::Attribute(_) | Key::Tag(_) | Key::PluginClass(_) => match value {
            Literal::Text(_) => Ok(()),
            other => Err(format!("{} is text; write the value in quotes, not {other}", key.canonical())),
        },
        Key::PluginSha256 | Key::DataSha256 | Key::AnySha256 => match value {
            _ if ordered => Err(format!("{} is matched by prefix with = or !=, not ordered", key.canonical())),
            Literal::Text(prefix) if is_hex_prefix(prefix) => Ok(()),
            other => {
                Err(format!("{} is matched by a SHA-256 prefix in quotes (hex digits), not {other}", key.canonical()))
            }
        },
        Key::Verified => match value {
            _ if ordered => Err("verified is true or false: compare it with = or !=".into()),
            Literal::Bool(_) => Ok(()),
            other => Err(format!("verified is true or false, not {other}")),
        },
        Key::Param(_) => match value {
            Literal::Bool(_) if ordered => Err(format!("{} cannot be ordered against true or false", key.canonical())),
            _ => Ok(()),
        },
    }
}

fn check_like(key: &Key) -> Result<(), String> {
    match key {
        Key::Metric { .. } | Key::Verified | Key::PluginSha256 | Key::DataSha256 | Key::AnySha256 => {
            Err(format!("`like` matches text; {} is not text", key.canonical()))
        }
        Key::Attribute(attribute) if attribute.numeric() => {
            Err(format!("`like` matches text; {} is a number", key.canonical()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(key: Key, op: Op, value: Literal) -> Expr {
        Expr::Compare { key, op, value }
    }

    #[test]
    fn mlflow_core_syntax_parses() {
        let expr = parse_filter("metrics.accuracy > 0.9 and params.training.learning_rate = 0.001").unwrap();
        assert_eq!(
            expr,
            Expr::And(
                Box::new(cmp(
                    Key::Metric { name: "accuracy".into(), value: MetricValue::Final },
                    Op::Gt,
                    Literal::Number(0.9)
                )),
                Box::new(cmp(Key::Param("training.learning_rate".into()), Op::Eq, Literal::Number(0.001))),
            )
        );
        assert_eq!(
            parse_filter("attributes.status = 'completed'").unwrap(),
            cmp(Key::Attribute(Attribute::Status), Op::Eq, Literal::Text("completed".into()))
        );
        assert_eq!(
            parse_filter("tags.owner = \"ana\"").unwrap(),
            cmp(Key::Tag("owner".into()), Op::Eq, Literal::Text("ana".into()))
        );
    }

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_override() {
        let a = || cmp(Key::Tag("a".into()), Op::Eq, Literal::Text("1".into()));
        let b = || cmp(Key::Tag("b".into()), Op::Eq, Literal::Text("2".into()));
        let c = || cmp(Key::Tag("c".into()), Op::Eq, Literal::Text("3".into()));
        assert_eq!(
            parse_filter("tags.a = '1' or tags.b = '2' and tags.c = '3'").unwrap(),
            Expr::Or(Box::new(a()), Box::new(Expr::And(Box::new(b()), Box::new(c()))))
        );
        assert_eq!(
            parse_filter("(tags.a = '1' OR tags.b = '2') AND NOT tags.c = '3'").unwrap(),
            Expr::And(Box::new(Expr::Or(Box::new(a()), Box::new(b()))), Box::new(Expr::Not(Box::new(c()))))
        );
    }

    #[test]
    fn aggregates_epochs_and_provenance_keys_parse() {
        let key = |text: &str| match parse_filter(&format!("{text} is null")).unwrap() {
            Expr::IsNull { key, .. } => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            key("metrics.val_loss.min"),
            Key::Metric { name: "val_loss".into(), value: MetricValue::Over(Aggregate::Min) }
        );
        assert_eq!(
            key("metrics.loss.last"),
            Key::Metric { name: "loss".into(), value: MetricValue::Over(Aggregate::Last) }
        );
        assert_eq!(
            key("metrics.accuracy@epoch=3"),
            Key::Metric { name: "accuracy".into(), value: MetricValue::Epoch(3) }
        );
        assert_eq!(
            key("metrics.test.accuracy"),
            Key::Metric { name: "test.accuracy".into(), value: MetricValue::Final }
        );
        assert_eq!(key("metrics.`min`"), Key::Metric { name: "min".into(), value: MetricValue::Final });
        assert_eq!(
            key("metrics.`a b`.max"),
            Key::Metric { name: "a b".into(), value: MetricValue::Over(Aggregate::Max) }
        );
        assert_eq!(key("plugin.model"), Key::PluginClass("Model".into()));
        assert_eq!(key("plugin.data_loader"), Key::PluginClass("Loader".into()));
        assert_eq!(key("plugin.sha256"), Key::PluginSha256);
        assert_eq!(key("data.sha256"), Key::DataSha256);
        assert_eq!(key("sweep"), Key::Attribute(Attribute::Sweep));
        assert_eq!(key("replay_of"), Key::Attribute(Attribute::ReplayOf));
        assert_eq!(key("attributes.start_time"), Key::Attribute(Attribute::StartedAt));
        assert_eq!(parse_filter("verified").unwrap(), Expr::Holds(Key::Verified));
        assert_eq!(parse_filter("not verified").unwrap(), Expr::Not(Box::new(Expr::Holds(Key::Verified))));
    }

    #[test]
    fn in_like_and_null_forms_parse() {
        assert_eq!(
            parse_filter("status not in ('failed', 'cancelled')").unwrap(),
            Expr::In {
                key: Key::Attribute(Attribute::Status),
                values: vec![Literal::Text("failed".into()), Literal::Text("cancelled".into())],
                negated: true
            }
        );
        assert_eq!(
            parse_filter("experiment like 'mnist%'").unwrap(),
            Expr::Like { key: Key::Attribute(Attribute::Experiment), pattern: "mnist%".into(), negated: false }
        );
        assert_eq!(
            parse_filter("tags.x is not null").unwrap(),
            Expr::IsNull { key: Key::Tag("x".into()), negated: true }
        );
        assert_eq!(
            parse_filter("params.a = 'it''s'").unwrap(),
            cmp(Key::Param("a".into()), Op::Eq, Literal::Text("it's".into()))
        );
        assert_eq!(
            parse_filter("params.a >= -1.5e-3").unwrap(),
            cmp(Key::Param("a".into()), Op::Ge, Literal::Number(-1.5e-3))
        );
    }

    #[test]
    fn errors_point_at_the_column() {
        let error = |text: &str| parse_filter(text).unwrap_err();
        let e = error("metrics.accuracy > ");
        assert_eq!(e.column, 20, "{e}");
        assert!(e.to_string().contains("expected a value"), "{e}");
        let e = error("metrics.accuracy > 0.9 and bogus.x = 1");
        assert_eq!(e.column, 28);
        assert!(e.message.contains("unknown key `bogus.x`"), "{e}");
        let e = error("status = 'done'");
        assert_eq!(e.column, 10, "under the value");
        assert!(e.message.contains("'completed'"), "{e}");
        let e = error("(tags.a = 'x'");
        assert_eq!(e.column, 1, "{e}");
        assert!(e.message.contains("never closed"));
        let e = error("tags.a = 'x' tags.b = 'y'");
        assert_eq!(e.column, 14, "{e}");
        let e = error("tags.a = x");
        assert!(e.message.contains("in quotes"), "{e}");
        let e = error("metrics.loss = 'low'");
        assert!(e.message.contains("is a number"), "{e}");
        let e = error("data.sha256 > 'ab'");
        assert!(e.message.contains("prefix"), "{e}");
        let e = error("data.sha256 = 'xyz'");
        assert!(e.message.contains("hex"), "{e}");
        let e = error("tags.a = 'x");
        assert_eq!(e.column, 10);
        let e = error("metrics.x.min@epoch=2 > 1");
        assert!(e.message.contains("aggregate"), "{e}");
        assert!(error("").message.contains("empty"));
        let shown = error("tags.a == ").to_string();
        assert!(shown.ends_with("\n  tags.a == \n            ^"), "{shown:?}");
    }

    #[test]
    fn deep_nesting_and_long_text_are_refused_not_overflowing() {
        let deep = format!("{}tags.a = 'x'{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse_filter(&deep).unwrap_err().message.contains("longer than 16384 bytes"));
        let deep = format!("{}verified", "not ".repeat(1_000));
        assert!(parse_filter(&deep).unwrap_err().message.contains("nested"));
        let deep = format!("{}verified{}", "(".repeat(100), ")".repeat(100));
        assert!(parse_filter(&deep).unwrap_err().message.contains("nested"));
        let long = vec!["seed = 1"; 300].join(" or ");
        let error = parse_filter(&long).unwrap_err();
        assert!(error.message.contains("more than 256 comparisons") && error.column == 256 * 12 + 1, "{error:?}");
        let values: Vec<String> = (0..300).map(|n| n.to_string()).collect();
        assert!(parse_filter(&format!("seed in ({})", values.join(", "))).unwrap_err().message.contains("comparisons"));
        assert!(parse_filter(&vec!["seed = 1"; 256].join(" or ")).is_ok());
    }

    /// Random soups of the language's tokens: each parses or is refused with a column inside
    /// the text (or just past it), never a panic; each parse compiles, binding one value per
    /// placeholder, and none of the soup's text reaches the SQL.
    #[test]
    fn random_expressions_parse_or_are_refused_and_compile_with_every_value_bound() {
        let pieces = [
            "metrics.test.accuracy",
            "params.a.b",
            "tags.owner",
            "status",
            "seed",
            "data.sha256",
            "plugin.model",
            "verified",
            "metrics.loss.min",
            "metrics.x@epoch=2",
            "sweep",
            "=",
            "!=",
            "<",
            ">=",
            "in",
            "not",
            "like",
            "is",
            "null",
            "and",
            "or",
            "(",
            ")",
            ",",
            "'ab'",
            "'x'' or 1=1 --'",
            "3",
            "-0.5e2",
            "true",
            "`a b`",
            "@",
            "'completed'",
            ".",
            "\"q\"",
            "1e999",
            "'",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut parsed = 0;
        for _ in 0..20_000 {
            let text = if next(2) == 0 {
                let length = 1 + next(9);
                let text: Vec<&str> = (0..length).map(|_| pieces[next(pieces.len())]).collect();
                text.join(if next(3) == 0 { "" } else { " " })
            } else {
                // Well-formed comparisons joined, with a random piece spliced in now and then.
                let keys =
                    ["metrics.test.accuracy", "params.a.b", "tags.owner", "seed", "plugin.model", "metrics.loss.min"];
                let values = ["'ab'", "'x'' or 1=1 --'", "3", "-0.5e2", "true"];
                let mut parts = Vec::new();
                for i in 0..1 + next(4) {
                    if i > 0 {
                        parts.push(["and", "or", "and not"][next(3)].to_owned());
                    }
                    parts.push(format!(
                        "{} {} {}",
                        keys[next(keys.len())],
                        ["=", "!=", "<", ">="][next(4)],
                        values[next(values.len())]
                    ));
                }
                if next(4) == 0 {
                    let at = next(parts.len() + 1);
                    parts.insert(at, pieces[next(pieces.len())].to_owned());
                }
                parts.join(" ")
            };
            match parse_filter(&text) {
                Ok(filter) => {
                    parsed += 1;
                    let query = RunQuery { filter: Some(filter), ..Default::default() };
                    for postgres in [false, true] {
                        for (sql, binds) in compiled_sql(&query, postgres).unwrap() {
                            assert!(!sql.contains("1=1") && !sql.contains("a b"), "{text} -> {sql}");
                            let placeholders = (1..=binds)
                                .filter(|n| sql.contains(&if postgres { format!("${n}::") } else { format!("?{n}") }));
                            assert_eq!(placeholders.count(), binds, "{text} -> {sql}");
                        }
                    }
                }
                Err(error) => {
                    assert!(error.column >= 1 && error.column <= text.chars().count() + 1, "{text}: {error:?}")
                }
            }
        }
        assert!(parsed > 500, "the soup parses sometimes: {parsed}");
    }

    #[test]
    fn columns_and_order_parse_with_their_labels() {
        let columns = parse_columns("run_id, metrics.test.accuracy,params.training.learning_rate").unwrap();
        assert_eq!(
            columns.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(),
            ["run_id", "metrics.test.accuracy", "params.training.learning_rate"]
        );
        let order = parse_order("metrics.test.accuracy desc, started_at").unwrap();
        assert_eq!(order.len(), 2);
        assert!(order[0].descending && !order[1].descending);
        assert!(parse_order("metrics.x sideways").unwrap_err().message.contains("asc"));
    }
}
