//! Compiling a [`RunQuery`] to SQL for one backend. Every value of the expression becomes a
//! bound parameter; only keys' names known here and placeholders reach the text. Every
//! condition is true or false, never NULL (`COALESCE(..., FALSE)`), so `not` of a comparison
//! with a missing value holds.

use super::{Aggregate, Attribute, Column, DATA_KINDS, Expr, Key, Literal, MetricValue, Op, Order, RunQuery};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    Real(f64),
    Int(i64),
}

/// How a column's value reads back as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Text,
    Real,
    Integer,
    /// A parameter's JSON text.
    Json,
    /// 0 or 1.
    Flag,
}

/// The statements a query needs and what they bind.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    /// The page: run id, then one value per column.
    pub page: String,
    pub page_binds: Vec<Bind>,
    /// How many runs match.
    pub count: String,
    pub count_binds: Vec<Bind>,
    pub shapes: Vec<Shape>,
}

struct Builder {
    dialect: Dialect,
    binds: Vec<Bind>,
}

const FROM: &str = "FROM runs r JOIN experiments e ON e.id = r.experiment_id";

impl Builder {
    fn bind(&mut self, value: Bind) -> String {
        let cast = match &value {
            Bind::Text(_) => "text",
            Bind::Real(_) => "float8",
            Bind::Int(_) => "int8",
        };
        self.binds.push(value);
        match self.dialect {
            Dialect::Sqlite => format!("?{}", self.binds.len()),
            Dialect::Postgres => format!("${}::{cast}", self.binds.len()),
        }
    }

    fn text(&mut self, text: &str) -> String {
        self.bind(Bind::Text(text.to_owned()))
    }

    fn real_type(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "REAL",
            Dialect::Postgres => "DOUBLE PRECISION",
        }
    }

    /// A JSON string's text (`"a"` -> `a`).
    fn json_text(&self, column: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("json_extract({column}, '$')"),
            Dialect::Postgres => format!("({column}::jsonb #>> '{{}}')"),
        }
    }

    fn like(&self) -> &'static str {
        match self.dialect {
            // SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE does the same.
            Dialect::Sqlite => "LIKE",
            Dialect::Postgres => "ILIKE",
        }
    }

    fn metric(&mut self, name: &str, value: MetricValue) -> String {
        let name = self.text(name);
        let from = format!("FROM metrics m WHERE m.run_id = r.run_id AND m.name = {name}");
        let one =
            |order: &str| format!("(SELECT m.value {from} AND m.step IS NOT NULL ORDER BY m.step {order} LIMIT 1)");
        match value {
            MetricValue::Final => {
                format!("COALESCE((SELECT m.value {from} AND m.step IS NULL LIMIT 1), {})", one("DESC"))
            }
            MetricValue::Over(Aggregate::First) => one("ASC"),
            MetricValue::Over(Aggregate::Last) => one("DESC"),
            MetricValue::Over(aggregate) => {
                let function = match aggregate {
                    Aggregate::Min => "MIN",
                    Aggregate::Max => "MAX",
                    _ => "AVG",
                };
                format!("(SELECT {function}(m.value) {from} AND m.step IS NOT NULL)")
            }
            MetricValue::Epoch(epoch) => {
                let epoch = self.bind(Bind::Int(epoch));
                format!("(SELECT m.value {from} AND m.step = {epoch} LIMIT 1)")
            }
        }
    }

    /// A parameter as a number (numbers only), as text (strings decoded, other values as JSON
    /// text), or as its JSON text.
    fn param(&mut self, name: &str, shape: Shape) -> String {
        let name = self.text(name);
        let value = match shape {
            Shape::Real => {
                format!("CASE WHEN p.type IN ('integer', 'number') THEN CAST(p.value_json AS {}) END", self.real_type())
            }
            Shape::Text => {
                format!("CASE WHEN p.type = 'string' THEN {} ELSE p.value_json END", self.json_text("p.value_json"))
            }
            _ => "p.value_json".to_owned(),
        };
        format!("(SELECT {value} FROM parameters p WHERE p.run_id = r.run_id AND p.name = {name})")
    }

    fn attribute(&self, attribute: Attribute) -> String {
        match attribute {
            Attribute::RunId => "r.run_id".into(),
            Attribute::Experiment => "e.name".into(),
            Attribute::Status => "r.status".into(),
            Attribute::StartedAt => "r.started_at".into(),
            Attribute::FinishedAt => "r.finished_at".into(),
            Attribute::Duration => match self.dialect {
                // Exact to the fraction (julianday's arithmetic read a 1 s run as 0.9999946 s).
                Dialect::Sqlite => "(unixepoch(r.finished_at, 'subsec') - unixepoch(r.started_at, 'subsec'))".into(),
                Dialect::Postgres => {
                    "EXTRACT(EPOCH FROM (r.finished_at::timestamptz - r.started_at::timestamptz))::float8".into()
                }
            },
            Attribute::Seed => "r.seed".into(),
            Attribute::Threads => "r.threads".into(),
            Attribute::ConfigFile => "r.config_file".into(),
            Attribute::ConfigSha256 => "r.config_sha256".into(),
            Attribute::Hostname => "r.hostname".into(),
            Attribute::HostVersion => "r.host_version".into(),
            Attribute::GitCommit => "r.git_commit".into(),
            Attribute::Error => "r.error".into(),
            Attribute::FailedStage => "r.failed_stage".into(),
            Attribute::Sweep => "r.sweep_id".into(),
            Attribute::Trial => "r.trial".into(),
            Attribute::ReplayOf => "r.replay_of".into(),
        }
    }

    /// A key with one value per run, as `shape` wants it (parameters only differ by shape).
    fn scalar(&mut self, key: &Key, shape: Shape) -> String {
        match key {
            Key::Metric { name, value } => self.metric(name, *value),
            Key::Param(name) => self.param(name, shape),
            Key::Attribute(attribute) => self.attribute(*attribute),
            Key::Tag(name) => {
                let name = self.text(name);
                format!(
                    "(SELECT a.value FROM annotations a WHERE a.run_id = r.run_id AND a.kind = 'tag' AND a.name = {name} ORDER BY a.id DESC LIMIT 1)"
                )
            }
            Key::PluginClass(kind) => {
                let kind = self.text(kind);
                format!("(SELECT rp.class FROM run_plugins rp WHERE rp.run_id = r.run_id AND rp.kind = {kind})")
            }
            Key::Verified => {
                "(SELECT v.ok FROM verifications v WHERE v.run_id = r.run_id ORDER BY v.id DESC LIMIT 1)".into()
            }
            Key::PluginSha256 | Key::DataSha256 | Key::AnySha256 => self.digests(key),
        }
    }

    /// The digests a many-valued key has for a run, joined by commas in order (a column).
    fn digests(&mut self, key: &Key) -> String {
        let list = |column: &str, from: &str| match self.dialect {
            Dialect::Sqlite => {
                format!("(SELECT group_concat(d, ',') FROM (SELECT DISTINCT {column} AS d {from} ORDER BY d))")
            }
            Dialect::Postgres => format!("(SELECT string_agg(DISTINCT {column}, ',' ORDER BY {column}) {from})"),
        };
        match key {
            Key::PluginSha256 => list("rp.library_sha256", "FROM run_plugins rp WHERE rp.run_id = r.run_id"),
            Key::DataSha256 => list("ra.sha256", &data_files()),
            _ => list("x.sha256", &format!("FROM ({}) x", any_digest())),
        }
    }

    /// Whether one of a many-valued key's digests starts with one of `prefixes`; with none,
    /// whether it has any.
    fn has_digest(&mut self, key: &Key, prefixes: &[&str]) -> String {
        let (column, from) = match key {
            Key::PluginSha256 => ("rp.library_sha256", "FROM run_plugins rp WHERE rp.run_id = r.run_id".to_owned()),
            Key::DataSha256 => ("ra.sha256", data_files()),
            _ => ("x.sha256", format!("FROM ({}) x WHERE TRUE", any_digest())),
        };
        let matches: Vec<String> = prefixes
            .iter()
            .map(|prefix| {
                let pattern = self.text(&format!("{}%", prefix.to_ascii_lowercase()));
                format!("{column} LIKE {pattern}")
            })
            .collect();
        let condition = if matches.is_empty() { String::new() } else { format!(" AND ({})", matches.join(" OR ")) };
        format!("EXISTS (SELECT 1 {from}{condition})")
    }

    fn condition(&mut self, expr: &Expr) -> String {
        match expr {
            Expr::And(a, b) => format!("({} AND {})", self.condition(a), self.condition(b)),
            Expr::Or(a, b) => format!("({} OR {})", self.condition(a), self.condition(b)),
            Expr::Not(a) => format!("(NOT {})", self.condition(a)),
            Expr::Compare { key, op, value } => self.compare(key, *op, value),
            Expr::In { key, values, negated } => {
                let any = if key.many() {
                    let prefixes: Vec<&str> = values.iter().filter_map(literal_text).collect();
                    self.has_digest(key, &prefixes)
                } else {
                    let each: Vec<String> = values.iter().map(|v| self.compare(key, Op::Eq, v)).collect();
                    format!("({})", each.join(" OR "))
                };
                if *negated { format!("(NOT {any})") } else { any }
            }
            Expr::Like { key, pattern, negated } => {
                let value = self.scalar(key, Shape::Text);
                let pattern = self.text(pattern);
                let like = format!("COALESCE({value} {} {pattern} ESCAPE '\\', FALSE)", self.like());
                if *negated { format!("(NOT {like})") } else { like }
            }
            Expr::IsNull { key, negated } => {
                let null = if key.many() {
                    format!("(NOT {})", self.has_digest(key, &[]))
                } else {
                    format!("({} IS NULL)", self.scalar(key, Shape::Json))
                };
                if *negated { format!("(NOT {null})") } else { null }
            }
            Expr::Holds(key) => self.compare(key, Op::Eq, &Literal::Bool(true)),
        }
    }

    /// The whole filter: the implied conditions `selective` picks (see [`probes`]), then
    /// `expr`'s own condition.
    fn filter(&mut self, expr: &Expr, selective: &[bool]) -> String {
        let mut parts = Vec::new();
        for (index, implied) in implied(expr).into_iter().enumerate() {
            if selective.get(index).copied().unwrap_or(false) {
                let rows = self.implied_rows(&implied);
                parts.push(match self.dialect {
                    Dialect::Sqlite => format!("r.run_id IN (SELECT x.run_id {rows})"),
                    // An array computed once, then runs by their key: PostgreSQL's planner would
                    // otherwise guess the rest of the filter selective and walk every run.
                    Dialect::Postgres => format!("r.run_id = ANY(ARRAY(SELECT x.run_id {rows}))"),
                });
            }
        }
        parts.push(self.condition(expr));
        parts.join(" AND ")
    }

    /// The `FROM ... WHERE ...` of the rows an implied condition is about.
    fn implied_rows(&mut self, implied: &Implied<'_>) -> String {
        match implied {
            Implied::Metric { name, op, number } => {
                let (name, number) = (self.text(name), self.bind(Bind::Real(*number)));
                format!("FROM metrics x WHERE x.name = {name} AND x.value {} {number}", op.sql())
            }
            Implied::Tag { name, text } => {
                let (name, text) = (self.text(name), self.text(text));
                format!("FROM annotations x WHERE x.kind = 'tag' AND x.name = {name} AND x.value = {text}")
            }
            Implied::Digest { key, prefix } => {
                // A prefix as a range ('g' follows every hex digit), which an index answers.
                let prefix = prefix.to_ascii_lowercase();
                let (low, high) = (self.text(&prefix), self.text(&format!("{prefix}g")));
                match key {
                    Key::PluginSha256 => {
                        format!("FROM run_plugins x WHERE x.library_sha256 >= {low} AND x.library_sha256 < {high}")
                    }
                    Key::DataSha256 => format!(
                        "FROM run_artifacts x JOIN artifacts a ON a.sha256 = x.sha256 WHERE x.sha256 >= {low} AND x.sha256 < {high} AND a.kind IN ({})",
                        DATA_KINDS.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")
                    ),
                    _ => format!(
                        "FROM (SELECT ra.run_id, ra.sha256 FROM run_artifacts ra UNION ALL SELECT rp.run_id, rp.library_sha256 FROM run_plugins rp) x WHERE x.sha256 >= {low} AND x.sha256 < {high}"
                    ),
                }
            }
            Implied::Column { attribute, text } => {
                let text = self.text(text);
                match attribute {
                    Attribute::Experiment => {
                        format!(
                            "FROM runs x WHERE x.experiment_id IN (SELECT e2.id FROM experiments e2 WHERE e2.name = {text})"
                        )
                    }
                    Attribute::Status => format!("FROM runs x WHERE x.status = {text}"),
                    _ => format!("FROM runs x WHERE x.sweep_id = {text}"),
                }
            }
        }
    }

    fn compare(&mut self, key: &Key, op: Op, value: &Literal) -> String {
        if key.many() {
            let prefix = literal_text(value).unwrap_or_default();
            let has = self.has_digest(key, &[prefix]);
            return if op == Op::Ne { format!("(NOT {has})") } else { has };
        }
        let (left, right) = match (key, value) {
            (Key::Verified, Literal::Bool(flag)) => {
                // Unverified (no verification) is not verified: `verified = false` holds.
                let verified = format!("COALESCE({} = 1, FALSE)", self.scalar(key, Shape::Flag));
                let wanted = (op == Op::Eq) == *flag;
                return if wanted { verified } else { format!("(NOT {verified})") };
            }
            (Key::Param(_), Literal::Bool(flag)) => {
                let left = self.scalar(key, Shape::Json);
                (left, self.text(if *flag { "true" } else { "false" }))
            }
            (_, Literal::Number(number)) => {
                let left = self.scalar(key, Shape::Real);
                let left = match key {
                    Key::Attribute(_) if self.dialect == Dialect::Postgres => format!("({left})::float8"),
                    _ => left,
                };
                (left, self.bind(Bind::Real(*number)))
            }
            (_, Literal::Text(text)) => {
                let left = self.scalar(key, Shape::Text);
                (left, self.text(text))
            }
            (_, Literal::Bool(flag)) => {
                let left = self.scalar(key, Shape::Text);
                (left, self.text(if *flag { "true" } else { "false" }))
            }
        };
        format!("COALESCE({left} {} {right}, FALSE)", op.sql())
    }

    fn order(&mut self, order: &[Order]) -> String {
        let mut terms = Vec::new();
        for Order { key, descending } in order {
            let direction = if *descending { "DESC" } else { "ASC" };
            if let Key::Param(_) = key {
                // Numbers by value, then the rest as text.
                let number = self.scalar(key, Shape::Real);
                let text = self.scalar(key, Shape::Text);
                terms.push(format!("{number} {direction} NULLS LAST"));
                terms.push(format!("{text} {direction} NULLS LAST"));
            } else {
                let value = self.scalar(key, Shape::Text);
                terms.push(format!("{value} {direction} NULLS LAST"));
            }
        }
        // Ties (and no order at all) newest first, the order `runs list` always had.
        terms.push("r.started_at DESC".into());
        terms.push("r.run_id DESC".into());
        terms.join(", ")
    }
}

/// A condition every run matching a filter meets, that an index answers: a metric's value
/// (final or an epoch's, whichever the key reads, is one of the metric's rows) and a tag's (its
/// newest value is one of its rows), and the indexed run columns. Taken from the comparisons
/// `and` joins at the top.
enum Implied<'a> {
    Metric {
        name: &'a str,
        op: Op,
        number: f64,
    },
    Tag {
        name: &'a str,
        text: &'a str,
    },
    /// A run column with an index: experiment, status, sweep.
    Column {
        attribute: Attribute,
        text: &'a str,
    },
    /// One of a run's files or plugin builds has a SHA-256 starting so.
    Digest {
        key: &'a Key,
        prefix: &'a str,
    },
}

fn implied(expr: &Expr) -> Vec<Implied<'_>> {
    match expr {
        Expr::And(a, b) => {
            let mut out = implied(a);
            out.extend(implied(b));
            out
        }
        Expr::Compare { key: Key::Metric { name, value: MetricValue::Final }, op, value: Literal::Number(number) }
            if *op != Op::Ne =>
        {
            vec![Implied::Metric { name, op: *op, number: *number }]
        }
        Expr::Compare { key: Key::Tag(name), op: Op::Eq, value: Literal::Text(text) } => {
            vec![Implied::Tag { name, text }]
        }
        Expr::Compare { key, op: Op::Eq, value: Literal::Text(prefix) } if key.many() => {
            vec![Implied::Digest { key, prefix }]
        }
        Expr::Compare {
            key: Key::Attribute(attribute @ (Attribute::Experiment | Attribute::Status | Attribute::Sweep)),
            op: Op::Eq,
            value: Literal::Text(text),
        } => vec![Implied::Column { attribute: *attribute, text }],
        _ => Vec::new(),
    }
}

/// An implied condition is used when at most this many rows meet it: then reading those runs
/// beats testing runs newest first until a page is full.
pub(crate) const SELECTIVE: i64 = 5000;

/// For each implied condition of `query`'s filter, a statement counting the rows that meet it
/// (up to one more than [`SELECTIVE`]); the backend runs them and compiles with the selective
/// ones.
pub(crate) fn probes(query: &RunQuery, dialect: Dialect) -> Vec<(String, Vec<Bind>)> {
    let Some(filter) = &query.filter else { return Vec::new() };
    implied(filter)
        .iter()
        .map(|implied| {
            let mut builder = Builder { dialect, binds: Vec::new() };
            let rows = builder.implied_rows(implied);
            (format!("SELECT COUNT(*) FROM (SELECT 1 {rows} LIMIT {}) probe", SELECTIVE + 1), builder.binds)
        })
        .collect()
}

fn literal_text(value: &Literal) -> Option<&str> {
    match value {
        Literal::Text(text) => Some(text),
        _ => None,
    }
}

fn data_files() -> String {
    let kinds: Vec<String> = DATA_KINDS.iter().map(|k| format!("'{k}'")).collect();
    format!(
        "FROM run_artifacts ra JOIN artifacts a ON a.sha256 = ra.sha256 WHERE ra.run_id = r.run_id AND a.kind IN ({})",
        kinds.join(", ")
    )
}

fn any_digest() -> &'static str {
    "SELECT ra.sha256 FROM run_artifacts ra WHERE ra.run_id = r.run_id
     UNION SELECT rp.library_sha256 FROM run_plugins rp WHERE rp.run_id = r.run_id"
}

/// How a column reads back.
fn shape(key: &Key) -> Shape {
    match key {
        Key::Metric { .. } => Shape::Real,
        Key::Param(_) => Shape::Json,
        Key::Attribute(Attribute::Duration) => Shape::Real,
        Key::Attribute(attribute) if attribute.numeric() => Shape::Integer,
        Key::Verified => Shape::Flag,
        _ => Shape::Text,
    }
}

/// The page and count statements for `query`.
/// `selective` says which implied conditions ([`probes`]) to use.
pub(crate) fn compile(query: &RunQuery, dialect: Dialect, selective: &[bool]) -> Result<Compiled, String> {
    for Order { key, .. } in &query.order {
        if key.many() {
            return Err(format!("runs cannot be sorted by {}: a run has several", key.canonical()));
        }
    }
    let mut count = Builder { dialect, binds: Vec::new() };
    let condition = match &query.filter {
        Some(filter) => format!("WHERE {}", count.filter(filter, selective)),
        None => String::new(),
    };
    let count_sql = match query.count_limit {
        0 => format!("SELECT COUNT(*) {FROM} {condition}"),
        // One more than the limit: whether more match. Newest first, as the page: the index on
        // start times holds each run's key, so the filter's lookups need no run's row (a scan
        // of the rows reads every record on PostgreSQL).
        limit => format!(
            "SELECT COUNT(*) FROM (SELECT 1 {FROM} {condition} ORDER BY r.started_at DESC, r.run_id DESC LIMIT {}) counted",
            limit + 1
        ),
    };
    let count_binds = std::mem::take(&mut count.binds);

    let mut page = Builder { dialect, binds: Vec::new() };
    let mut selected = vec!["r.run_id".to_owned()];
    let mut shapes = Vec::new();
    for Column { key, .. } in &query.columns {
        let shape = shape(key);
        let value = page.scalar(key, shape);
        selected.push(match dialect {
            // Read back as text and parsed by shape: one reader for every column type.
            Dialect::Postgres => format!("({value})::text"),
            Dialect::Sqlite => value,
        });
        shapes.push(shape);
    }
    let condition = match &query.filter {
        Some(filter) => format!("WHERE {}", page.filter(filter, selective)),
        None => String::new(),
    };
    let order = page.order(&query.order);
    let limit = if query.limit == 0 { i64::MAX } else { query.limit.min(i64::MAX as usize) as i64 };
    let limit = page.bind(Bind::Int(limit));
    let offset = page.bind(Bind::Int(query.offset.min(i64::MAX as usize) as i64));
    let page_sql =
        format!("SELECT {} {FROM} {condition} ORDER BY {order} LIMIT {limit} OFFSET {offset}", selected.join(", "));
    Ok(Compiled { page: page_sql, page_binds: page.binds, count: count_sql, count_binds, shapes })
}

/// A column's text as read back (PostgreSQL reads every column as text), as JSON.
pub(crate) fn parse_text(shape: Shape, text: Option<String>) -> serde_json::Value {
    use serde_json::Value;
    let Some(text) = text else { return Value::Null };
    match shape {
        Shape::Text => Value::String(text),
        Shape::Real => text
            .parse::<f64>()
            .ok()
            .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
            .unwrap_or(Value::Null),
        Shape::Integer => text.parse::<i64>().map(Value::from).unwrap_or(Value::String(text)),
        Shape::Json => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        Shape::Flag => Value::Bool(text == "1" || text == "true" || text == "t"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_filter;

    fn compiled(filter: &str, dialect: Dialect) -> Compiled {
        let query = RunQuery { filter: Some(parse_filter(filter).unwrap()), ..Default::default() };
        compile(&query, dialect, &[true; 4]).unwrap()
    }

    #[test]
    fn values_are_bound_never_pasted() {
        let hostile = "x' OR 1=1 --";
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let c = compiled(&format!("tags.owner = '{}' or params.`a'b` = 1", hostile.replace('\'', "''")), dialect);
            assert!(!c.count.contains("OR 1=1") && !c.count.contains("a'b"), "{}", c.count);
            assert!(c.count_binds.contains(&Bind::Text(hostile.into())), "{:?}", c.count_binds);
            assert!(c.count_binds.contains(&Bind::Text("a'b".into())));
        }
    }

    #[test]
    fn placeholders_follow_the_dialect() {
        let c = compiled("metrics.test.accuracy > 0.5", Dialect::Postgres);
        assert!(c.count.contains("$1::text") && c.count.contains("$2::float8"), "{}", c.count);
        let c = compiled("metrics.test.accuracy > 0.5", Dialect::Sqlite);
        assert!(c.count.contains("?1") && c.count.contains("?2"), "{}", c.count);
        // The implied condition an index answers, then the comparison itself.
        assert!(
            c.count.contains("r.run_id IN (SELECT x.run_id FROM metrics x WHERE x.name = ?1 AND x.value > ?2)"),
            "{}",
            c.count
        );
        assert_eq!(
            c.count_binds,
            [Bind::Text("test.accuracy".into()), Bind::Real(0.5), Bind::Text("test.accuracy".into()), Bind::Real(0.5)]
        );
    }

    #[test]
    fn many_valued_keys_cannot_sort() {
        let query = RunQuery { order: crate::query::parse_order("data.sha256").unwrap(), ..Default::default() };
        assert!(compile(&query, Dialect::Sqlite, &[]).unwrap_err().contains("several"));
    }
}
