//! Compatibility rules: can data written with one schema be read with another?
//!
//! This follows the Avro specification's schema-resolution rules, as Confluent's registry does:
//! a reader field missing from the writer needs a default; writer fields unknown to the reader are
//! skipped; int→long→float→double and string↔bytes promote; every writer enum symbol must be
//! known to the reader (or the reader enum has a default); a writer union needs every branch
//! readable, a reader union needs one branch that reads the writer. Each problem is reported with
//! its path so a user knows which field broke the contract.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use super::schema::{Kind, Model, Named};

/// Registry compatibility level (Confluent's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compatibility {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid compatibility level `{0}`: expected one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE"
)]
pub struct BadLevel(pub String);

impl FromStr for Compatibility {
    type Err = BadLevel;
    fn from_str(s: &str) -> Result<Self, BadLevel> {
        Ok(match s {
            "NONE" => Self::None,
            "BACKWARD" => Self::Backward,
            "BACKWARD_TRANSITIVE" => Self::BackwardTransitive,
            "FORWARD" => Self::Forward,
            "FORWARD_TRANSITIVE" => Self::ForwardTransitive,
            "FULL" => Self::Full,
            "FULL_TRANSITIVE" => Self::FullTransitive,
            other => return Err(BadLevel(other.to_string())),
        })
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        })
    }
}

impl Compatibility {
    /// The registry's default, like Confluent's.
    pub const DEFAULT: Compatibility = Compatibility::Backward;

    fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }
    fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }
    fn forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// Checks `candidate` against the existing versions of a subject (oldest first). Returns the
    /// problems found; empty means compatible. Non-transitive levels look at the latest only.
    pub fn check(self, candidate: &Model, existing: &[(i64, &Model)]) -> Vec<String> {
        let against: &[(i64, &Model)] = if self.transitive() {
            existing
        } else {
            existing.last().map(std::slice::from_ref).unwrap_or(&[])
        };
        let mut out = Vec::new();
        for (version, old) in against {
            if self.backward() {
                for p in can_read(old, candidate) {
                    out.push(format!(
                        "BACKWARD: the new schema cannot read data written with version {version}: {p}"
                    ));
                }
            }
            if self.forward() {
                for p in can_read(candidate, old) {
                    out.push(format!(
                        "FORWARD: version {version} cannot read data written with the new schema: {p}"
                    ));
                }
            }
        }
        out
    }
}

/// Problems a reader with schema `reader` has reading data written with `writer`.
pub fn can_read(writer: &Model, reader: &Model) -> Vec<String> {
    let mut r = Resolver {
        writer,
        reader,
        seen: HashSet::new(),
        problems: Vec::new(),
    };
    r.check(&writer.root, &reader.root, "$");
    r.problems
}

struct Resolver<'a> {
    writer: &'a Model,
    reader: &'a Model,
    /// Named pairs already being checked: recursive types terminate.
    seen: HashSet<(usize, usize)>,
    problems: Vec<String>,
}

fn kind_name(m: &Model, k: &Kind) -> String {
    match k {
        Kind::Null => "null".into(),
        Kind::Boolean => "boolean".into(),
        Kind::Int => "int".into(),
        Kind::Long => "long".into(),
        Kind::Float => "float".into(),
        Kind::Double => "double".into(),
        Kind::Bytes => "bytes".into(),
        Kind::String => "string".into(),
        Kind::Array(i) => format!("array<{}>", kind_name(m, i)),
        Kind::Map(v) => format!("map<{}>", kind_name(m, v)),
        Kind::Union(b) => format!(
            "union[{}]",
            b.iter()
                .map(|k| kind_name(m, k))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Kind::Named(i) => {
            let n = m.named(*i);
            let what = match n {
                Named::Record { .. } => "record",
                Named::Enum { .. } => "enum",
                Named::Fixed { .. } => "fixed",
            };
            format!("{what} {}", n.fullname())
        }
    }
}

impl Resolver<'_> {
    /// Whether the pair resolves, without recording problems (used to pick union branches).
    fn fits(&mut self, w: &Kind, r: &Kind) -> bool {
        let saved = std::mem::take(&mut self.problems);
        self.check(w, r, "");
        let ok = self.problems.is_empty();
        self.problems = saved;
        ok
    }

    fn mismatch(&mut self, w: &Kind, r: &Kind, path: &str) {
        self.problems.push(format!(
            "{path}: reader expects {}, writer wrote {}",
            kind_name(self.reader, r),
            kind_name(self.writer, w)
        ));
    }

    fn check(&mut self, w: &Kind, r: &Kind, path: &str) {
        use Kind::*;
        match (w, r) {
            (Union(wb), _) => {
                for (i, b) in wb.iter().enumerate() {
                    let sub = format!("{path}<branch {i}: {}>", kind_name(self.writer, b));
                    self.check(b, r, &sub);
                }
            }
            (_, Union(rb)) => {
                let rb = rb.clone();
                if !rb.iter().any(|b| self.fits(w, b)) {
                    self.mismatch(w, r, path);
                }
            }
            (Null, Null)
            | (Boolean, Boolean)
            | (Int, Int)
            | (Long, Long)
            | (Float, Float)
            | (Double, Double)
            | (Bytes, Bytes)
            | (String, String) => {}
            // Promotions allowed by the Avro specification.
            (Int, Long | Float | Double) | (Long, Float | Double) | (Float, Double) => {}
            (String, Bytes) | (Bytes, String) => {}
            (Array(wi), Array(ri)) => self.check(wi, ri, &format!("{path}[]")),
            (Map(wv), Map(rv)) => self.check(wv, rv, &format!("{path}{{}}")),
            (Named(wi), Named(ri)) => self.named(*wi, *ri, path, w, r),
            _ => self.mismatch(w, r, path),
        }
    }

    fn named(&mut self, wi: usize, ri: usize, path: &str, w: &Kind, r: &Kind) {
        if !self.seen.insert((wi, ri)) {
            return;
        }
        let (wn, rn) = (self.writer.named(wi).clone(), self.reader.named(ri).clone());
        let name_ok = wn.short_name() == rn.short_name()
            || wn.fullname() == rn.fullname()
            || rn
                .aliases()
                .iter()
                .any(|a| a == wn.fullname() || a.rsplit('.').next() == Some(wn.short_name()));
        match (&wn, &rn) {
            (Named::Record { fields: wf, .. }, Named::Record { fields: rf, .. }) if name_ok => {
                for f in rf {
                    let fpath = if path == "$" {
                        format!("$.{}", f.name)
                    } else {
                        format!("{path}.{}", f.name)
                    };
                    let found = wf
                        .iter()
                        .find(|x| x.name == f.name)
                        .or_else(|| wf.iter().find(|x| f.aliases.contains(&x.name)));
                    match found {
                        Some(x) => self.check(&x.kind, &f.kind, &fpath),
                        None if f.has_default => {}
                        None => self.problems.push(format!(
                            "{fpath}: reader field `{}` ({}) is missing from the writer's schema and has no default",
                            f.name,
                            kind_name(self.reader, &f.kind)
                        )),
                    }
                }
            }
            (
                Named::Enum { symbols: ws, .. },
                Named::Enum {
                    symbols: rs,
                    default,
                    ..
                },
            ) if name_ok => {
                if default.is_none() {
                    let missing: Vec<&str> = ws
                        .iter()
                        .filter(|s| !rs.contains(s))
                        .map(String::as_str)
                        .collect();
                    if !missing.is_empty() {
                        self.problems.push(format!(
                            "{path}: enum {} lacks writer symbol(s) {} and has no default symbol",
                            rn.fullname(),
                            missing.join(", ")
                        ));
                    }
                }
            }
            (Named::Fixed { size: ws, .. }, Named::Fixed { size: rs, .. }) if name_ok => {
                if ws != rs {
                    self.problems.push(format!(
                        "{path}: fixed {} has size {rs} in the reader, {ws} in the writer",
                        rn.fullname()
                    ));
                }
            }
            _ if !name_ok && std::mem::discriminant(&wn) == std::mem::discriminant(&rn) => {
                self.problems.push(format!(
                    "{path}: reader expects named type {}, writer wrote {} (names differ and no alias matches)",
                    rn.fullname(),
                    wn.fullname()
                ));
            }
            _ => self.mismatch(w, r, path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::schema::{ParsedSchema, builtin};

    fn m(s: &str) -> Model {
        ParsedSchema::parse(s).unwrap().model
    }

    fn rec(fields: &str) -> Model {
        m(&format!(
            r#"{{"type":"record","name":"R","namespace":"t","fields":[{fields}]}}"#
        ))
    }

    fn ok(w: &Model, r: &Model) -> bool {
        can_read(w, r).is_empty()
    }

    #[test]
    fn added_field_with_default_is_backward_compatible() {
        let old = rec(r#"{"name":"a","type":"int"}"#);
        let new = rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}"#);
        assert!(Compatibility::Backward.check(&new, &[(1, &old)]).is_empty());
        // Old readers skip the unknown field: forward compatible too.
        assert!(Compatibility::Forward.check(&new, &[(1, &old)]).is_empty());
        assert!(Compatibility::Full.check(&new, &[(1, &old)]).is_empty());
    }

    #[test]
    fn added_field_without_default_breaks_backward_only() {
        let old = rec(r#"{"name":"a","type":"int"}"#);
        let new = rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#);
        let p = Compatibility::Backward.check(&new, &[(1, &old)]);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("$.b") && p[0].contains("no default"), "{p:?}");
        assert!(Compatibility::Forward.check(&new, &[(1, &old)]).is_empty());
        assert_eq!(Compatibility::Full.check(&new, &[(1, &old)]).len(), 1);
    }

    #[test]
    fn removed_field_breaks_forward_unless_it_had_a_default() {
        let old = rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#);
        let new = rec(r#"{"name":"a","type":"int"}"#);
        assert!(Compatibility::Backward.check(&new, &[(1, &old)]).is_empty());
        let p = Compatibility::Forward.check(&new, &[(1, &old)]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("FORWARD") && p[0].contains("$.b"));
        let old_with_default =
            rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string","default":""}"#);
        assert!(
            Compatibility::Full
                .check(&new, &[(1, &old_with_default)])
                .is_empty()
        );
    }

    #[test]
    fn numeric_promotions_follow_avro() {
        let t = |ty: &str| rec(&format!(r#"{{"name":"a","type":"{ty}"}}"#));
        let chain = ["int", "long", "float", "double"];
        for (i, w) in chain.iter().enumerate() {
            for (j, r) in chain.iter().enumerate() {
                assert_eq!(ok(&t(w), &t(r)), i <= j, "writer {w} reader {r}");
            }
        }
        assert!(ok(&t("string"), &t("bytes")));
        assert!(ok(&t("bytes"), &t("string")));
        assert!(!ok(&t("int"), &t("string")));
        assert!(!ok(&t("boolean"), &t("int")));
    }

    #[test]
    fn enum_symbols() {
        let e = |syms: &str, default: &str| {
            rec(&format!(
                r#"{{"name":"s","type":{{"type":"enum","name":"S","symbols":[{syms}]{default}}}}}"#
            ))
        };
        let ab = e(r#""A","B""#, "");
        let abc = e(r#""A","B","C""#, "");
        // Adding a symbol: new readers read old data; old readers cannot read `C`.
        assert!(Compatibility::Backward.check(&abc, &[(1, &ab)]).is_empty());
        let p = Compatibility::Forward.check(&abc, &[(1, &ab)]);
        assert!(
            p.len() == 1 && p[0].contains("lacks writer symbol(s) C"),
            "{p:?}"
        );
        // A reader default symbol absorbs unknown symbols.
        let ab_default = e(r#""A","B""#, r#","default":"A""#);
        assert!(ok(&abc, &ab_default));
        // Renamed enum type is a different type.
        let other = m(
            r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"s","type":{"type":"enum","name":"T","symbols":["A","B"]}}]}"#,
        );
        assert!(!ok(&ab, &other));
    }

    #[test]
    fn unions() {
        let t = |ty: &str| rec(&format!(r#"{{"name":"a","type":{ty},"default":null}}"#));
        let nullable_string = t(r#"["null","string"]"#);
        let string = rec(r#"{"name":"a","type":"string"}"#);
        // Writer non-union read by a union containing a matching branch.
        assert!(ok(&string, &nullable_string));
        // Writer union read by non-union: the null branch cannot be read.
        let p = can_read(&nullable_string, &string);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("branch 0: null"), "{p:?}");
        // Adding a branch: backward yes, forward no.
        let wider = t(r#"["null","string","long"]"#);
        assert!(
            Compatibility::Backward
                .check(&wider, &[(1, &nullable_string)])
                .is_empty()
        );
        assert!(
            !Compatibility::Forward
                .check(&wider, &[(1, &nullable_string)])
                .is_empty()
        );
        // Promotion into a union branch.
        assert!(ok(&t(r#"["null","int"]"#), &t(r#"["null","double"]"#)));
    }

    #[test]
    fn nested_records_arrays_maps() {
        let v1 = m(builtin::ORDERS_V1);
        let bad_item = m(&builtin::ORDERS_V1.replace(
            r#"{"name": "quantity", "type": "int"}"#,
            r#"{"name": "quantity", "type": "string"}"#,
        ));
        let p = can_read(&v1, &bad_item);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("$.items[].quantity"), "{p:?}");
        let map_w = rec(r#"{"name":"m","type":{"type":"map","values":"int"}}"#);
        let map_r = rec(r#"{"name":"m","type":{"type":"map","values":"long"}}"#);
        assert!(ok(&map_w, &map_r));
        assert!(!ok(&map_r, &map_w));
    }

    #[test]
    fn recursive_records_terminate() {
        let list = m(
            r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}"#,
        );
        assert!(ok(&list, &list));
    }

    #[test]
    fn transitive_checks_every_version_plain_checks_latest() {
        let v1 = rec(r#"{"name":"a","type":"int"}"#);
        let v2 = rec(r#"{"name":"a","type":"int"},{"name":"b","type":"int","default":0}"#);
        let v3 = rec(
            r#"{"name":"a","type":"int"},{"name":"b","type":"int","default":0},{"name":"c","type":"int","default":1}"#,
        );
        let existing = [(1, &v1), (2, &v2)];
        assert!(
            Compatibility::BackwardTransitive
                .check(&v3, &existing)
                .is_empty()
        );
        // Requires b without default: fine against v2 (has b), broken against v1 (lacks b).
        let v3b = rec(r#"{"name":"a","type":"int"},{"name":"b","type":"int"}"#);
        assert!(Compatibility::Backward.check(&v3b, &existing).is_empty());
        let p = Compatibility::BackwardTransitive.check(&v3b, &existing);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("version 1"), "{p:?}");
        assert!(Compatibility::FullTransitive.check(&v3b, &existing).len() == 1);
        assert!(
            Compatibility::ForwardTransitive
                .check(&v3b, &existing)
                .is_empty()
        );
    }

    #[test]
    fn none_accepts_anything() {
        let a = rec(r#"{"name":"a","type":"int"}"#);
        let b = m(r#""string""#);
        assert!(Compatibility::None.check(&b, &[(1, &a)]).is_empty());
        assert!(!Compatibility::Full.check(&b, &[(1, &a)]).is_empty());
    }

    #[test]
    fn shipped_orders_evolution() {
        let v1 = m(builtin::ORDERS_V1);
        let v2 = m(builtin::ORDERS_V2);
        let bad = m(builtin::ORDERS_INCOMPATIBLE);
        assert!(Compatibility::Full.check(&v2, &[(1, &v1)]).is_empty());
        let p = Compatibility::Backward.check(&bad, &[(1, &v1), (2, &v2)]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().any(|p| p.contains("$.amount")));
        assert!(p.iter().any(|p| p.contains("$.warehouse_id")));
    }

    #[test]
    fn levels_round_trip() {
        for s in [
            "NONE",
            "BACKWARD",
            "BACKWARD_TRANSITIVE",
            "FORWARD",
            "FORWARD_TRANSITIVE",
            "FULL",
            "FULL_TRANSITIVE",
        ] {
            assert_eq!(s.parse::<Compatibility>().unwrap().to_string(), s);
        }
        assert!("backward".parse::<Compatibility>().is_err());
    }
}
