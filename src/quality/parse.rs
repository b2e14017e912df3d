//! Expectation files → validated [`TableExpectations`]. The YAML tree is walked by hand (with
//! marked-yaml's line numbers) rather than through serde, so that one pass reports *every*
//! problem of a file — unknown keys, bad thresholds, bad regexes, bad bounds — each with
//! `file:line: reason`, the way flow validation does.

use std::collections::HashSet;
use std::path::Path;

use marked_yaml::Node;

use super::TableExpectations;
use super::domains::Domains;
use super::entries::{parse_check, parse_rule};
use super::model::RuleKind;
use crate::vocab::source::SourceErrors;
pub(super) use crate::vocab::source::{Reader as Ctx, line_of, sline};

/// A column name under `key`, or an error at the node.
pub(super) fn column(cx: &mut Ctx, n: &Node, key: &str) -> Option<String> {
    cx.name(n, &format!("`{key}` (a column name)"))
}

/// Parses one file's text; `path` names the table (its stem) and labels the errors.
pub fn parse_file(path: &Path, text: &str) -> Result<TableExpectations, SourceErrors> {
    parse_file_with(path, text, &Domains::default())
}

/// Parses one file's text with the value lists `domains` defines.
pub fn parse_file_with(
    path: &Path,
    text: &str,
    domains: &Domains,
) -> Result<TableExpectations, SourceErrors> {
    let mut cx = Ctx::new(path);
    let table = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let Some(root) = cx.parse(text, "expectation files", "table:, rules:, checks:") else {
        return Err(cx.finish().unwrap_err());
    };
    let mut rules = Vec::new();
    let mut checks = Vec::new();
    let Some(map) = root.as_mapping() else {
        cx.err(
            line_of(&root),
            "the top level must be a mapping (table:, rules:, checks:)",
        );
        return Err(cx.finish().unwrap_err());
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
                        rules.extend(parse_rule(&mut cx, domains, m, line_of(item)));
                    } else {
                        checks.extend(parse_check(&mut cx, domains, m, line_of(item)));
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
    cx.finish()?;
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
