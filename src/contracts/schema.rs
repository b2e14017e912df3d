//! Avro schemas as flowctl sees them: the normalized text the registry stores and serves, and a
//! small structural model that the compatibility rules and the encoder walk.
//!
//! We keep our own model next to `apache_avro::Schema` because schema resolution needs things the
//! library model hides (field defaults as "present or not", aliases, named-type identity for
//! recursion), and because error messages must name the path inside the schema.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

/// Why a schema could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid Avro schema at {path}: expected {expected}, found {found}")]
    Invalid {
        path: String,
        expected: String,
        found: String,
    },
    #[error("invalid Avro schema: {0}")]
    Avro(String),
    #[error("unsupported schema type `{0}`: flowctl's registry stores AVRO schemas only")]
    UnsupportedType(String),
    #[error("reading schema file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A structural Avro type; logical types are reduced to their underlying type, as schema
/// resolution does.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array(Box<Kind>),
    Map(Box<Kind>),
    Union(Vec<Kind>),
    /// Index into [`Model::named`].
    Named(usize),
}

/// A named type (record, enum, fixed).
#[derive(Debug, Clone, PartialEq)]
pub enum Named {
    Record {
        fullname: String,
        aliases: Vec<String>,
        fields: Vec<Field>,
    },
    Enum {
        fullname: String,
        aliases: Vec<String>,
        symbols: Vec<String>,
        default: Option<String>,
    },
    Fixed {
        fullname: String,
        size: usize,
    },
}

impl Named {
    pub fn fullname(&self) -> &str {
        match self {
            Named::Record { fullname, .. }
            | Named::Enum { fullname, .. }
            | Named::Fixed { fullname, .. } => fullname,
        }
    }
    /// Unqualified name: what Avro resolution compares.
    pub fn short_name(&self) -> &str {
        let f = self.fullname();
        f.rsplit('.').next().unwrap_or(f)
    }
    pub fn aliases(&self) -> &[String] {
        match self {
            Named::Record { aliases, .. } | Named::Enum { aliases, .. } => aliases,
            Named::Fixed { .. } => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub aliases: Vec<String>,
    pub kind: Kind,
    pub has_default: bool,
}

/// A parsed schema: the root type plus the table of named types it defines.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub root: Kind,
    pub named: Vec<Named>,
}

impl Model {
    pub fn named(&self, idx: usize) -> &Named {
        &self.named[idx]
    }

    pub fn parse(json: &Json) -> Result<Model, SchemaError> {
        let mut p = Parser {
            named: Vec::new(),
            by_name: HashMap::new(),
        };
        let root = p.kind(json, "", "$")?;
        Ok(Model {
            root,
            named: p.named,
        })
    }
}

struct Parser {
    named: Vec<Named>,
    by_name: HashMap<String, usize>,
}

fn invalid(path: &str, expected: &str, found: &Json) -> SchemaError {
    let mut found = found.to_string();
    if found.len() > 80 {
        found.truncate(77);
        found.push_str("...");
    }
    SchemaError::Invalid {
        path: path.to_string(),
        expected: expected.to_string(),
        found,
    }
}

fn qualify(name: &str, ns: &str) -> String {
    if name.contains('.') || ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}.{name}")
    }
}

impl Parser {
    fn kind(&mut self, json: &Json, ns: &str, path: &str) -> Result<Kind, SchemaError> {
        match json {
            Json::String(s) => self.by_type_name(s, ns, path, json),
            Json::Array(branches) => {
                let mut out = Vec::with_capacity(branches.len());
                for (i, b) in branches.iter().enumerate() {
                    let k = self.kind(b, ns, &format!("{path}[{i}]"))?;
                    if matches!(k, Kind::Union(_)) {
                        return Err(invalid(path, "no union directly inside a union", json));
                    }
                    out.push(k);
                }
                Ok(Kind::Union(out))
            }
            Json::Object(obj) => {
                let ty = obj
                    .get("type")
                    .ok_or_else(|| invalid(path, "an object with a \"type\"", json))?;
                let Json::String(ty) = ty else {
                    // {"type": {...}} or {"type": [...]} wraps another schema.
                    return self.kind(ty, ns, path);
                };
                match ty.as_str() {
                    "record" | "error" => self.record(obj, ns, path),
                    "enum" => self.enumeration(obj, ns, path),
                    "fixed" => {
                        let fullname = self.declare_name(obj, ns, path)?;
                        let size = obj
                            .get("size")
                            .and_then(Json::as_u64)
                            .ok_or_else(|| invalid(path, "fixed with an integer \"size\"", json))?;
                        Ok(self.define(
                            fullname,
                            Named::Fixed {
                                fullname: String::new(),
                                size: size as usize,
                            },
                        ))
                    }
                    "array" => {
                        let items = obj
                            .get("items")
                            .ok_or_else(|| invalid(path, "array with \"items\"", json))?;
                        Ok(Kind::Array(Box::new(self.kind(
                            items,
                            ns,
                            &format!("{path}.items"),
                        )?)))
                    }
                    "map" => {
                        let values = obj
                            .get("values")
                            .ok_or_else(|| invalid(path, "map with \"values\"", json))?;
                        Ok(Kind::Map(Box::new(self.kind(
                            values,
                            ns,
                            &format!("{path}.values"),
                        )?)))
                    }
                    other => self.by_type_name(other, ns, path, json),
                }
            }
            other => Err(invalid(
                path,
                "a type name, an object or a union array",
                other,
            )),
        }
    }

    fn by_type_name(
        &mut self,
        s: &str,
        ns: &str,
        path: &str,
        json: &Json,
    ) -> Result<Kind, SchemaError> {
        Ok(match s {
            "null" => Kind::Null,
            "boolean" => Kind::Boolean,
            "int" => Kind::Int,
            "long" => Kind::Long,
            "float" => Kind::Float,
            "double" => Kind::Double,
            "bytes" => Kind::Bytes,
            "string" => Kind::String,
            name => {
                let idx = self
                    .by_name
                    .get(&qualify(name, ns))
                    .or_else(|| self.by_name.get(name))
                    .copied()
                    .ok_or_else(|| {
                        invalid(path, "a primitive type or a defined named type", json)
                    })?;
                Kind::Named(idx)
            }
        })
    }

    fn declare_name(
        &self,
        obj: &serde_json::Map<String, Json>,
        ns: &str,
        path: &str,
    ) -> Result<String, SchemaError> {
        let name = obj.get("name").and_then(Json::as_str).ok_or_else(|| {
            invalid(
                path,
                "a named type with a string \"name\"",
                &Json::Object(obj.clone()),
            )
        })?;
        let ns = obj.get("namespace").and_then(Json::as_str).unwrap_or(ns);
        let full = qualify(name, ns);
        if self.by_name.contains_key(&full) {
            return Err(invalid(
                path,
                "each named type defined once",
                &Json::String(full),
            ));
        }
        Ok(full)
    }

    fn define(&mut self, fullname: String, mut n: Named) -> Kind {
        match &mut n {
            Named::Record { fullname: f, .. }
            | Named::Enum { fullname: f, .. }
            | Named::Fixed { fullname: f, .. } => *f = fullname.clone(),
        }
        let idx = self.named.len();
        self.named.push(n);
        self.by_name.insert(fullname, idx);
        Kind::Named(idx)
    }

    fn record(
        &mut self,
        obj: &serde_json::Map<String, Json>,
        ns: &str,
        path: &str,
    ) -> Result<Kind, SchemaError> {
        let fullname = self.declare_name(obj, ns, path)?;
        let inner_ns = namespace_of(&fullname);
        // Defined before its fields so a record may refer to itself.
        let kind = self.define(
            fullname.clone(),
            Named::Record {
                fullname: String::new(),
                aliases: aliases(obj, &inner_ns),
                fields: Vec::new(),
            },
        );
        let Some(Json::Array(jfields)) = obj.get("fields") else {
            return Err(invalid(
                path,
                "record with a \"fields\" array",
                &Json::Object(obj.clone()),
            ));
        };
        let mut fields = Vec::with_capacity(jfields.len());
        for (i, jf) in jfields.iter().enumerate() {
            let fpath = format!("{path}.fields[{i}]");
            let name = jf
                .get("name")
                .and_then(Json::as_str)
                .ok_or_else(|| invalid(&fpath, "field with a string \"name\"", jf))?;
            let fpath = format!("{}.{name}", if path == "$" { "$" } else { path });
            let ty = jf
                .get("type")
                .ok_or_else(|| invalid(&fpath, "field with a \"type\"", jf))?;
            let kind = self.kind(ty, &inner_ns, &fpath)?;
            if let (Kind::Union(branches), Some(default)) = (&kind, jf.get("default"))
                && let Some(first) = branches.first()
                && !self.default_fits(first, default)
            {
                return Err(invalid(
                    &fpath,
                    &format!(
                        "a default matching the union's first branch ({}), as the Avro specification requires",
                        self.branch_name(first)
                    ),
                    default,
                ));
            }
            if fields.iter().any(|f: &Field| f.name == name) {
                return Err(invalid(&fpath, "unique field names", jf));
            }
            fields.push(Field {
                name: name.to_string(),
                aliases: jf
                    .get("aliases")
                    .and_then(Json::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                kind,
                has_default: jf.get("default").is_some(),
            });
        }
        let Kind::Named(idx) = kind else {
            unreachable!()
        };
        if let Named::Record { fields: f, .. } = &mut self.named[idx] {
            *f = fields;
        }
        Ok(kind)
    }

    /// Shallow check of a default against a type (apache-avro validates defaults of non-union
    /// fields but accepts a union default matching any branch; Confluent and the spec do not).
    fn default_fits(&self, k: &Kind, v: &Json) -> bool {
        match k {
            Kind::Null => v.is_null(),
            Kind::Boolean => v.is_boolean(),
            Kind::Int | Kind::Long => v.is_i64() || v.is_u64(),
            Kind::Float | Kind::Double => v.is_number(),
            Kind::Bytes | Kind::String => v.is_string(),
            Kind::Array(_) => v.is_array(),
            Kind::Map(_) => v.is_object(),
            Kind::Union(_) => false,
            Kind::Named(i) => match &self.named[*i] {
                Named::Record { .. } => v.is_object(),
                Named::Enum { symbols, .. } => {
                    v.as_str().is_some_and(|s| symbols.iter().any(|x| x == s))
                }
                Named::Fixed { .. } => v.is_string(),
            },
        }
    }

    fn branch_name(&self, k: &Kind) -> String {
        match k {
            Kind::Named(i) => self.named[*i].fullname().to_string(),
            Kind::Array(_) => "array".into(),
            Kind::Map(_) => "map".into(),
            other => format!("{other:?}").to_lowercase(),
        }
    }

    fn enumeration(
        &mut self,
        obj: &serde_json::Map<String, Json>,
        ns: &str,
        path: &str,
    ) -> Result<Kind, SchemaError> {
        let fullname = self.declare_name(obj, ns, path)?;
        let inner_ns = namespace_of(&fullname);
        let symbols: Vec<String> = obj
            .get("symbols")
            .and_then(Json::as_array)
            .and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect())
            .ok_or_else(|| {
                invalid(
                    path,
                    "enum with a \"symbols\" array of strings",
                    &Json::Object(obj.clone()),
                )
            })?;
        let default = obj.get("default").and_then(Json::as_str).map(String::from);
        Ok(self.define(
            fullname,
            Named::Enum {
                fullname: String::new(),
                aliases: aliases(obj, &inner_ns),
                symbols,
                default,
            },
        ))
    }
}

fn aliases(obj: &serde_json::Map<String, Json>, ns: &str) -> Vec<String> {
    obj.get("aliases")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(|s| qualify(s, ns))
                .collect()
        })
        .unwrap_or_default()
}

/// A schema accepted by flowctl: validated by apache-avro and by our model.
#[derive(Debug, Clone)]
pub struct ParsedSchema {
    /// Compact JSON with sorted keys: the identity the registry stores, compares and serves.
    /// Whitespace and key order do not make two schemas different.
    pub normalized: String,
    pub model: Model,
    pub avro: apache_avro::Schema,
}

impl ParsedSchema {
    pub fn parse(text: &str) -> Result<ParsedSchema, SchemaError> {
        let json: Json = serde_json::from_str(text)?;
        let model = Model::parse(&json)?;
        let avro =
            apache_avro::Schema::parse(&json).map_err(|e| SchemaError::Avro(e.to_string()))?;
        // serde_json without `preserve_order` keeps object keys in a BTreeMap: sorted output.
        let normalized = serde_json::to_string(&json)?;
        Ok(ParsedSchema {
            normalized,
            model,
            avro,
        })
    }

    /// Parses a schema of the given registry `schemaType` (absent means AVRO).
    pub fn parse_typed(schema_type: Option<&str>, text: &str) -> Result<ParsedSchema, SchemaError> {
        match schema_type {
            None | Some("AVRO") => Self::parse(text),
            Some(other) => Err(SchemaError::UnsupportedType(other.to_string())),
        }
    }
}

/// One `.avsc` file of the `schemas/` folder and the subject it registers under.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    pub path: PathBuf,
    pub subject: String,
    pub text: String,
}

/// Files whose stem matches no topic's naming, e.g. the deliberately incompatible test schema,
/// are not registered by `schemas register`.
const SKIP_SUFFIXES: &[&str] = &["-incompatible"];

/// Maps `orders-v2.avsc` to topic `orders`: the version suffix names an evolution step of the
/// same topic's schema, not a different topic.
pub fn topic_of_file(stem: &str) -> Option<String> {
    if SKIP_SUFFIXES.iter().any(|s| stem.ends_with(s)) {
        return None;
    }
    let topic = match stem.rsplit_once("-v") {
        Some((t, v)) if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) => t,
        _ => stem,
    };
    Some(topic.to_string())
}

/// Reads every `.avsc` in `dir`, ordered so `orders-v1` comes before `orders-v2`
/// (versions must register oldest first for compatibility checks to mean anything).
pub fn load_dir(dir: &Path) -> Result<Vec<SchemaFile>, SchemaError> {
    let io = |source| SchemaError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("avsc") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let Some(topic) = topic_of_file(stem) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(|source| SchemaError::Io {
            path: path.clone(),
            source,
        })?;
        out.push(SchemaFile {
            subject: format!("{topic}-value"),
            path,
            text,
        });
    }
    out.sort_by_key(|f| {
        let stem = f
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let ver = stem
            .rsplit_once("-v")
            .and_then(|(_, v)| v.parse::<u32>().ok())
            .unwrap_or(0);
        (f.subject.clone(), ver)
    });
    Ok(out)
}

/// The schemas shipped with flowctl, so `produce` works from any directory.
pub mod builtin {
    pub const ORDERS_V1: &str = include_str!("../../schemas/orders-v1.avsc");
    pub const ORDERS_V2: &str = include_str!("../../schemas/orders-v2.avsc");
    pub const ORDERS_INCOMPATIBLE: &str = include_str!("../../schemas/orders-incompatible.avsc");
    pub const CLICKSTREAM: &str = include_str!("../../schemas/clickstream.avsc");
    pub const PAYMENTS: &str = include_str!("../../schemas/payments.avsc");
}

/// The namespace part of a full Avro name (`a.b.C` → `a.b`; empty for a bare name): where the
/// names used inside a record or enum resolve.
fn namespace_of(fullname: &str) -> String {
    fullname
        .rsplit_once('.')
        .map(|(n, _)| n)
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_schemas_parse() {
        for s in [
            builtin::ORDERS_V1,
            builtin::ORDERS_V2,
            builtin::ORDERS_INCOMPATIBLE,
            builtin::CLICKSTREAM,
            builtin::PAYMENTS,
        ] {
            let p = ParsedSchema::parse(s).unwrap();
            assert!(matches!(p.model.root, Kind::Named(0)));
        }
    }

    #[test]
    fn normalization_ignores_whitespace_and_key_order() {
        let a = ParsedSchema::parse(
            r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#,
        )
        .unwrap();
        let b = ParsedSchema::parse(
            r#"{ "fields" : [ {"type":"int", "name":"x"} ], "name":"A", "type":"record" }"#,
        )
        .unwrap();
        assert_eq!(a.normalized, b.normalized);
    }

    #[test]
    fn invalid_schema_names_the_path() {
        let e = ParsedSchema::parse(
            r#"{"type":"record","name":"A","fields":[{"name":"x","type":"nope"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("$.x"), "{e}");
        assert!(e.contains("\"nope\""), "{e}");
    }

    #[test]
    fn union_default_must_match_the_first_branch() {
        let e = ParsedSchema::parse(
            r#"{"type":"record","name":"A","fields":[{"name":"x","type":["null","string"],"default":"a"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("$.x") && e.contains("first branch (null)") && e.contains("\"a\""),
            "{e}"
        );
        ParsedSchema::parse(
            r#"{"type":"record","name":"A","fields":[{"name":"x","type":["string","null"],"default":"a"}]}"#,
        )
        .unwrap();
    }

    #[test]
    fn topics_from_file_names() {
        assert_eq!(topic_of_file("orders-v2").as_deref(), Some("orders"));
        assert_eq!(topic_of_file("clickstream").as_deref(), Some("clickstream"));
        assert_eq!(topic_of_file("orders-incompatible"), None);
    }
}
