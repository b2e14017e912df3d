//! Files the user writes (flows, expectations): one error type that says `file:line: reason`,
//! and a YAML reader that reports *every* problem of a file in one pass.
//!
//! Serde stops at the first error and often loses the line (`name: [1, 2]` used to say only
//! "invalid type"); so files are walked by hand over marked-yaml's nodes, each problem pushed
//! with the line of the node it is about. Duplicate keys are found by a scan of the parser's
//! events before the tree is built, because the tree keeps only one of them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoaderOptions, Node};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::duration::parse_duration;

/// One problem in one source file.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem is about the whole file.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.path.display(), self.message)
        }
    }
}

/// Every problem found, in file order, one `file:line: reason` per line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct SourceErrors(pub Vec<SourceError>);

impl fmt::Display for SourceErrors {
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

/// The line a node starts on (0 when unknown).
pub fn line_of(n: &Node) -> usize {
    n.span().start().map(|m| m.line()).unwrap_or(0)
}

/// The line a scalar starts on (0 when unknown).
pub fn sline(n: &MarkedScalarNode) -> usize {
    n.span().start().map(|m| m.line()).unwrap_or(0)
}

/// Collects the problems of one file while it is walked.
pub struct Reader<'p> {
    path: &'p Path,
    pub errors: Vec<SourceError>,
}

impl<'p> Reader<'p> {
    pub fn new(path: &'p Path) -> Reader<'p> {
        Reader {
            path,
            errors: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.path
    }

    pub fn err(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(SourceError {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    /// The errors so far, sorted by line; Ok when there are none.
    pub fn finish(mut self) -> Result<(), SourceErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|e| e.line);
        Err(SourceErrors(self.errors))
    }

    /// Parses `text` into a tree, reporting every duplicate key (the tree keeps the last) and
    /// refusing anchors and tags (`kind` names the file kind in those messages, `keys` the top
    /// level's main keys). None when the text is not YAML at all or its top level is not a mapping.
    pub fn parse(&mut self, text: &str, kind: &str, keys: &str) -> Option<Node> {
        for (key, line, first) in duplicate_keys(text) {
            self.err(
                line,
                format!("duplicate key `{key}` (first at line {first})"),
            );
        }
        match marked_yaml::parse_yaml_with_options(0, text, LoaderOptions::default()) {
            Ok(root) => Some(root),
            Err(e) => {
                let (line, message) = load_error(&e, kind, keys);
                self.err(line, message);
                None
            }
        }
    }

    /// A scalar, or an error at the node saying what `what` should have been.
    pub fn scalar<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n MarkedScalarNode> {
        let s = n.as_scalar();
        if s.is_none() {
            self.err(line_of(n), format!("{what} must be a single value"));
        }
        s
    }

    /// A mapping, or an error at the node.
    pub fn mapping<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n MarkedMappingNode> {
        let m = n.as_mapping();
        if m.is_none() {
            self.err(line_of(n), format!("{what} must be a mapping"));
        }
        m
    }

    /// A list of single values. A lone value where a list belongs is an error, not a list of one
    /// (`depends_on: a` is a typo for `[a]` as often as not).
    pub fn string_list(&mut self, n: &Node, what: &str) -> Option<Vec<String>> {
        self.scalar_list(n, what)
            .map(|v| v.into_iter().map(|s| s.as_str().to_string()).collect())
    }

    /// Like [`Reader::string_list`], keeping each entry's node (for its line).
    pub fn scalar_list<'n>(
        &mut self,
        n: &'n Node,
        what: &str,
    ) -> Option<Vec<&'n MarkedScalarNode>> {
        let Node::Sequence(seq) = n else {
            self.err(line_of(n), format!("{what} must be a list, e.g. [a, b]"));
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in seq.iter() {
            match self.scalar(item, &format!("every entry of {what}")) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A non-empty single value, trimmed.
    pub fn name(&mut self, n: &Node, what: &str) -> Option<String> {
        let s = self.scalar(n, what)?;
        let v = s.as_str().trim();
        if v.is_empty() {
            self.err(sline(s), format!("{what} is empty"));
            return None;
        }
        Some(v.to_string())
    }

    /// A whole number in `min..=max`.
    pub fn integer(&mut self, n: &Node, what: &str, min: i64, max: i64) -> Option<i64> {
        let s = self.scalar(n, what)?;
        match s.as_str().trim().parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.err(
                    sline(s),
                    format!(
                        "{what} must be a whole number from {min} to {max}, found `{}`",
                        s.as_str()
                    ),
                );
                None
            }
        }
    }

    /// A finite number in `min..=max`.
    pub fn number(&mut self, n: &Node, what: &str, min: f64, max: f64) -> Option<f64> {
        let s = self.scalar(n, what)?;
        match s.as_str().trim().parse::<f64>() {
            Ok(v) if v.is_finite() && (min..=max).contains(&v) => Some(v),
            _ => {
                self.err(
                    sline(s),
                    format!(
                        "{what} must be a number from {min} to {max}, found `{}`",
                        s.as_str()
                    ),
                );
                None
            }
        }
    }

    /// `true` or `false`.
    pub fn boolean(&mut self, n: &Node, what: &str) -> Option<bool> {
        let s = self.scalar(n, what)?;
        match s.as_str().trim() {
            "true" | "True" | "TRUE" | "yes" | "on" => Some(true),
            "false" | "False" | "FALSE" | "no" | "off" => Some(false),
            other => {
                self.err(
                    sline(s),
                    format!("{what} must be true or false, found `{other}`"),
                );
                None
            }
        }
    }

    /// A duration (`30s`, `5m`, `1h30m`; at most a year), optionally refusing zero.
    pub fn duration(&mut self, n: &Node, what: &str, allow_zero: bool) -> Option<Duration> {
        let s = self.scalar(n, what)?;
        match parse_duration(s.as_str()) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.err(
                    sline(s),
                    format!("{what} must be longer than zero, found `{}`", s.as_str()),
                );
                None
            }
            Ok(d) => Some(d),
            Err(m) => {
                self.err(sline(s), format!("{what}: {m}"));
                None
            }
        }
    }

    /// Reports every key of `map` not in `known` (`what` names the mapping in the message).
    pub fn unknown_keys(&mut self, map: &MarkedMappingNode, known: &[&str], what: &str) {
        for k in map.keys() {
            if !known.contains(&k.as_str()) {
                self.err(
                    sline(k),
                    format!(
                        "unknown key `{}` in {what} (expected {})",
                        k.as_str(),
                        known.join(", ")
                    ),
                );
            }
        }
    }
}

fn load_error(e: &marked_yaml::LoadError, kind: &str, keys: &str) -> (usize, String) {
    use marked_yaml::LoadError as L;
    match e {
        L::TopLevelMustBeMapping(m) => (
            m.line(),
            format!("the top level must be a mapping ({keys})"),
        ),
        L::TopLevelMustBeSequence(m) => (m.line(), "expected a sequence".into()),
        L::UnexpectedAnchor(m) => (
            m.line(),
            format!("YAML anchors are not supported in {kind}"),
        ),
        L::MappingKeyMustBeScalar(m) => (m.line(), "mapping keys must be plain scalars".into()),
        L::UnexpectedTag(m) => (m.line(), format!("YAML tags are not supported in {kind}")),
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

/// Every repeated key of every mapping in `text`: (key, its line, the first one's line).
/// Complex keys (mappings or lists as keys) are skipped: the tree refuses them anyway.
fn duplicate_keys(text: &str) -> Vec<(String, usize, usize)> {
    /// An open mapping: its keys so far (with their lines) and whether the next value is a key.
    struct Mapping {
        keys: Vec<(String, usize)>,
        next_is_key: bool,
    }
    #[derive(Default)]
    struct Scan {
        /// One frame per open collection; None for a sequence.
        stack: Vec<Option<Mapping>>,
        found: Vec<(String, usize, usize)>,
    }
    impl Scan {
        /// A value (scalar or collection) starts at the current level: flips key/value turns.
        fn value(&mut self, key: Option<(&str, usize)>) {
            let Some(Some(m)) = self.stack.last_mut() else {
                return;
            };
            if m.next_is_key
                && let Some((k, line)) = key
            {
                match m.keys.iter().find(|(s, _)| s == k) {
                    Some((_, first)) => self.found.push((k.to_string(), line, *first)),
                    None => m.keys.push((k.to_string(), line)),
                }
            }
            m.next_is_key = !m.next_is_key;
        }
    }
    impl MarkedEventReceiver for Scan {
        fn on_event(&mut self, ev: Event, mark: Marker) {
            match ev {
                Event::Scalar(s, ..) => self.value(Some((&s, mark.line()))),
                Event::Alias(_) => self.value(None),
                Event::MappingStart(..) => {
                    self.value(None);
                    self.stack.push(Some(Mapping {
                        keys: Vec::new(),
                        next_is_key: true,
                    }));
                }
                Event::SequenceStart(..) => {
                    self.value(None);
                    self.stack.push(None);
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    self.stack.pop();
                }
                _ => {}
            }
        }
    }
    let mut scan = Scan::default();
    // A malformed file is reported by the tree's own parse, with its position.
    let _ = Parser::new_from_str(text).load(&mut scan, false);
    scan.found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duplicate_key_is_found_at_every_depth() {
        let text =
            "a: 1\nb:\n  x: 1\n  x: 2\n  y: [1, {k: 1, k: 2}]\na: 2\nc:\n  - {m: 1}\n  - {m: 2}\n";
        assert_eq!(
            duplicate_keys(text),
            vec![
                ("x".to_string(), 4, 3),
                ("k".to_string(), 5, 5),
                ("a".to_string(), 6, 1),
            ]
        );
    }

    #[test]
    fn a_reader_reports_all_problems_sorted_with_lines() {
        let path = Path::new("f.yaml");
        let mut r = Reader::new(path);
        let root = r
            .parse(
                "count: -1\nname: [1, 2]\ndeps: a\nname: x\n",
                "a test file",
                "count:",
            )
            .unwrap();
        let m = root.as_mapping().unwrap();
        r.integer(m.get_node("count").unwrap(), "count", 0, 10);
        r.string_list(m.get_node("deps").unwrap(), "deps");
        let e = r.finish().unwrap_err().to_string();
        assert_eq!(
            e,
            "f.yaml:1: count must be a whole number from 0 to 10, found `-1`\n\
             f.yaml:3: deps must be a list, e.g. [a, b]\n\
             f.yaml:4: duplicate key `name` (first at line 2)"
        );
    }
}
