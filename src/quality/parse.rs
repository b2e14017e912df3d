//! Expectation files → validated [`TableExpectations`]. The YAML tree is walked by hand (with
//! marked-yaml's line numbers) rather than through serde, so that one pass reports *every*
//! problem of a file — unknown keys, bad thresholds, bad regexes, bad bounds — each with
//! `file:line: reason`, the way flow validation does.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use marked_yaml::types::MarkedScalarNode;
use marked_yaml::{LoaderOptions, Node};

use super::TableExpectations;
use super::entries::{parse_check, parse_rule};
use super::model::RuleKind;

/// One problem in one expectation file.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectationError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem concerns the whole file.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ExpectationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.path.display(), self.message)
        }
    }
}

/// Every problem found, one `file:line: reason` per line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ExpectationErrors(pub Vec<ExpectationError>);

impl fmt::Display for ExpectationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

pub(super) fn line_of(n: &Node) -> usize {
    n.span().start().map(|m| m.line()).unwrap_or(0)
}

pub(super) fn sline(n: &MarkedScalarNode) -> usize {
    n.span().start().map(|m| m.line()).unwrap_or(0)
}

pub(super) struct Ctx<'p> {
    path: &'p Path,
    pub(super) errors: Vec<ExpectationError>,
}

impl Ctx<'_> {
    pub(super) fn err(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(ExpectationError {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    /// A scalar, or an error at the node saying what `what` should have been.
    pub(super) fn scalar<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n MarkedScalarNode> {
        let s = n.as_scalar();
        if s.is_none() {
            self.err(line_of(n), format!("{what} must be a single value"));
        }
        s
    }

    pub(super) fn string_list(&mut self, n: &Node, what: &str) -> Option<Vec<String>> {
        match n {
            Node::Sequence(seq) => {
                let mut out = Vec::new();
                for item in seq.iter() {
                    out.push(
                        self.scalar(item, &format!("every entry of {what}"))?
                            .as_str()
                            .to_string(),
                    );
                }
                Some(out)
            }
            _ => {
                self.err(line_of(n), format!("{what} must be a list, e.g. [a, b]"));
                None
            }
        }
    }

    pub(super) fn column(&mut self, n: &Node, key: &str) -> Option<String> {
        let s = self.scalar(n, &format!("`{key}` (a column name)"))?;
        let c = s.as_str().trim();
        if c.is_empty() {
            self.err(sline(s), format!("`{key}` needs a column name"));
            return None;
        }
        Some(c.to_string())
    }
}

/// Parses one file's text; `path` names the table (its stem) and labels the errors.
pub fn parse_file(path: &Path, text: &str) -> Result<TableExpectations, ExpectationErrors> {
    let mut cx = Ctx {
        path,
        errors: Vec::new(),
    };
    let table = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let root = match marked_yaml::parse_yaml_with_options(
        0,
        text,
        LoaderOptions::default().error_on_duplicate_keys(true),
    ) {
        Ok(r) => r,
        Err(e) => {
            let (line, msg) = load_error(&e);
            cx.err(line, msg);
            return Err(ExpectationErrors(cx.errors));
        }
    };
    let mut rules = Vec::new();
    let mut checks = Vec::new();
    let Some(map) = root.as_mapping() else {
        cx.err(
            line_of(&root),
            "the top level must be a mapping (table:, rules:, checks:)",
        );
        return Err(ExpectationErrors(cx.errors));
    };
    for (k, v) in map.iter() {
        match k.as_str() {
            "table" => {
                if let Some(s) = cx.scalar(v, "`table`")
                    && s.as_str() != table
                {
                    cx.err(
                        sline(s),
                        format!(
                            "`table: {}` does not match the file name (expected `{table}`)",
                            s.as_str()
                        ),
                    );
                }
            }
            "description" => {}
            "rules" | "checks" => {
                let Some(seq) = v.as_sequence() else {
                    cx.err(line_of(v), format!("`{}` must be a list", k.as_str()));
                    continue;
                };
                for item in seq.iter() {
                    let Some(m) = item.as_mapping() else {
                        cx.err(
                            line_of(item),
                            format!("each entry of `{}` must be a mapping", k.as_str()),
                        );
                        continue;
                    };
                    if k.as_str() == "rules" {
                        rules.extend(parse_rule(&mut cx, m, line_of(item)));
                    } else {
                        checks.extend(parse_check(&mut cx, m, line_of(item)));
                    }
                }
            }
            other => cx.err(
                sline(k),
                format!("unknown key `{other}` (expected table, description, rules, checks)"),
            ),
        }
    }
    let mut seen = HashSet::new();
    for r in &rules {
        if !seen.insert(r.name.clone()) {
            cx.err(r.line, format!("duplicate rule name `{}`", r.name));
        }
    }
    let mut seen = HashSet::new();
    for c in &checks {
        if !seen.insert(c.name.clone()) {
            cx.err(
                c.line,
                format!(
                    "duplicate check name `{}` (give one of them a `name:`)",
                    c.name
                ),
            );
        }
    }
    if rules.is_empty() && checks.is_empty() && cx.errors.is_empty() {
        cx.err(0, "no rules and no checks");
    }
    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|e| e.line);
        return Err(ExpectationErrors(cx.errors));
    }
    let required = rules
        .iter()
        .filter(|r| matches!(r.kind, RuleKind::Missing))
        .map(|r| r.column.clone())
        .collect();
    Ok(TableExpectations {
        name: table,
        path: path.to_path_buf(),
        rules,
        checks,
        required,
    })
}

fn load_error(e: &marked_yaml::LoadError) -> (usize, String) {
    use marked_yaml::LoadError as L;
    match e {
        L::TopLevelMustBeMapping(m) => (
            m.line(),
            "the top level must be a mapping (table:, rules:, checks:)".into(),
        ),
        L::TopLevelMustBeSequence(m) => (m.line(), "expected a sequence".into()),
        L::UnexpectedAnchor(m) => (
            m.line(),
            "YAML anchors are not supported in expectation files".into(),
        ),
        L::MappingKeyMustBeScalar(m) => (m.line(), "mapping keys must be plain scalars".into()),
        L::UnexpectedTag(m) => (
            m.line(),
            "YAML tags are not supported in expectation files".into(),
        ),
        L::ScanError(m, s) => (m.line(), format!("malformed YAML: {s}")),
        L::DuplicateKey(d) => (
            d.key.span().start().map(|m| m.line()).unwrap_or(0),
            format!(
                "duplicate key `{}` (first at line {})",
                d.key.as_str(),
                d.prev_key.span().start().map(|m| m.line()).unwrap_or(0)
            ),
        ),
    }
}
