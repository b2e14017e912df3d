//! Rules and checks against the columns their table really has. An expectation on a column
//! the table never holds (a typo, a renamed field) would otherwise validate, then fail at run
//! time with a message about types; this names the file, the line and the columns there are.

use super::model::Metric;
use super::{ExpectationSet, TableExpectations};
use crate::vocab::SourceError;

impl Metric {
    /// Every column of its own table the metric reads.
    fn columns(&self) -> Vec<&str> {
        match self {
            Metric::RowCount => vec![],
            Metric::MissingCount { column, .. }
            | Metric::MissingPercent { column, .. }
            | Metric::InvalidCount { column, .. }
            | Metric::InvalidPercent { column, .. }
            | Metric::Freshness { column }
            | Metric::ValuesIn { column, .. }
            | Metric::Stat { column, .. } => vec![column.as_str()],
            Metric::DuplicateCount { columns } => columns.iter().map(String::as_str).collect(),
            Metric::Schema { columns } => columns.iter().map(|(c, _)| c.as_str()).collect(),
        }
    }
}

impl TableExpectations {
    /// One error per rule or check naming a column that is not in `columns` (the table's).
    pub fn unknown_columns(&self, columns: &[String]) -> Vec<SourceError> {
        let named = self
            .rules
            .iter()
            .map(|r| (r.line, "rule", r.name.as_str(), r.column.as_str()))
            .chain(self.checks.iter().flat_map(|c| {
                c.metric
                    .columns()
                    .into_iter()
                    .map(move |col| (c.line, "check", c.name.as_str(), col))
            }));
        named
            .filter(|(_, _, _, col)| !columns.iter().any(|c| c == col))
            .map(|(line, what, name, col)| self.unknown(line, what, name, col, &self.name, columns))
            .collect()
    }

    fn unknown(
        &self,
        line: usize,
        what: &str,
        name: &str,
        column: &str,
        table: &str,
        columns: &[String],
    ) -> SourceError {
        SourceError {
            path: self.path.clone(),
            line,
            message: format!(
                "{what} `{name}` names column `{column}`, which {table} does not have (its columns: {})",
                columns.join(", ")
            ),
        }
    }
}

impl ExpectationSet {
    /// Every rule or check (and every `values_in` reference) naming a column its table does not
    /// have, for the tables whose columns `columns_of` knows.
    pub fn unknown_columns(
        &self,
        columns_of: impl Fn(&str) -> Option<Vec<String>>,
    ) -> Vec<SourceError> {
        let mut out = Vec::new();
        for t in self.tables.values() {
            if let Some(cols) = columns_of(&t.name) {
                out.extend(t.unknown_columns(&cols));
            }
            for c in &t.checks {
                if let Metric::ValuesIn {
                    table, ref_column, ..
                } = &c.metric
                    && let Some(cols) = columns_of(table)
                    && !cols.contains(ref_column)
                {
                    out.push(t.unknown(c.line, "check", &c.name, ref_column, table, &cols));
                }
            }
        }
        out.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
        out
    }
}
