//! Named value lists (`expectations/domains.yaml`): a list of valid values written once and
//! referred to by every rule and check that needs it (`valid_values: {domain: currencies}`), so
//! adding a currency is one edit, not eleven.

use std::collections::BTreeMap;
use std::path::Path;

use crate::vocab::source::{Reader, SourceErrors, sline};

/// The file of an expectations directory that holds the domains (not a table's file).
pub const DOMAINS_FILE: &str = "domains.yaml";

/// Domain name → its values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Domains(BTreeMap<String, Vec<String>>);

impl Domains {
    /// Parses a domains file: a mapping of names to non-empty lists of single values.
    pub fn parse(path: &Path, text: &str) -> Result<Domains, SourceErrors> {
        let (domains, errors) = Domains::read(path, text);
        errors.map(|()| domains)
    }

    /// Like [`Domains::parse`], keeping the lists that did parse beside the problems, so files
    /// that refer to a good list are not blamed for a bad one.
    pub fn read(path: &Path, text: &str) -> (Domains, Result<(), SourceErrors>) {
        let mut r = Reader::new(path);
        let mut out = BTreeMap::new();
        if let Some(root) = r.parse(text, "domains.yaml", "name: [value, ...]")
            && let Some(m) = r.mapping(&root, "the top level (name: [value, ...])")
        {
            for (k, v) in m.iter() {
                let name = k.as_str().trim();
                if name.is_empty() {
                    r.err(sline(k), "a domain needs a name");
                    continue;
                }
                if let Some(values) = r.string_list(v, &format!("domain `{name}`")) {
                    if values.is_empty() {
                        r.err(sline(k), format!("domain `{name}` is empty"));
                    }
                    out.insert(name.to_string(), values);
                }
            }
        }
        (Domains(out), r.finish())
    }

    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.0.get(name).map(Vec::as_slice)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}
