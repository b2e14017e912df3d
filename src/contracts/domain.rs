//! The value domains of the event schemas, and the faults `produce --bad-ratio` injects.
//!
//! Avro types say "string"; the lists of `expectations/domains.yaml` say which strings are valid.
//! They are checked downstream (bronze/silver), not by Avro, so a bad value is quarantined with a
//! reason rather than lost.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::quality::Domains;

/// `expectations/domains.yaml`, built in: the values the generator calls valid are the ones the
/// rules accept, written in one place.
const DOMAINS_YAML: &str = include_str!("../../expectations/domains.yaml");

/// The list `name` of the built-in domains.
fn domain(name: &str) -> &'static [&'static str] {
    static DOMAINS: OnceLock<BTreeMap<String, &'static [&'static str]>> = OnceLock::new();
    let all = DOMAINS.get_or_init(|| {
        let parsed = Domains::parse(Path::new("expectations/domains.yaml"), DOMAINS_YAML)
            .unwrap_or_else(|e| panic!("the built-in domains.yaml does not parse:\n{e}"));
        parsed
            .names()
            .map(|n| {
                // Leaked once per process: the lists live as long as the program.
                let values: Vec<&'static str> = parsed
                    .get(n)
                    .unwrap_or_default()
                    .iter()
                    .map(|v| &*Box::leak(v.clone().into_boxed_str()))
                    .collect();
                (n.to_string(), &*Box::leak(values.into_boxed_slice()))
            })
            .collect()
    });
    all.get(name)
        .copied()
        .unwrap_or_else(|| panic!("the built-in domains.yaml has no `{name}` list"))
}

pub fn currencies() -> &'static [&'static str] {
    domain("currencies")
}
pub fn order_statuses() -> &'static [&'static str] {
    domain("order_statuses")
}
pub fn payment_methods() -> &'static [&'static str] {
    domain("payment_methods")
}
pub fn payment_statuses() -> &'static [&'static str] {
    domain("payment_statuses")
}
pub fn click_actions() -> &'static [&'static str] {
    domain("click_actions")
}
pub fn devices() -> &'static [&'static str] {
    domain("devices")
}
pub fn channels() -> &'static [&'static str] {
    domain("channels")
}

/// 2000-01-01T00:00:00Z in epoch milliseconds: anything earlier is not a real event time.
pub const EPOCH_2000_MS: i64 = 946_684_800_000;

/// The event families flowctl generates; each is one topic's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Orders,
    Clickstream,
    Payments,
}

impl EventKind {
    /// The kind whose topic is `topic` (`orders`, `orders-bench`, `dev.payments` …): the family
    /// is recognised by the name it contains, so test and bench topics get the right schema.
    pub fn for_topic(topic: &str) -> Option<EventKind> {
        let t = topic.to_ascii_lowercase();
        [
            ("payment", EventKind::Payments),
            ("click", EventKind::Clickstream),
            ("order", EventKind::Orders),
        ]
        .into_iter()
        .find(|(needle, _)| t.contains(needle))
        .map(|(_, k)| k)
    }

    /// Name of the business-key field, also the Kafka message key.
    pub fn key_field(self) -> &'static str {
        match self {
            EventKind::Orders => "order_id",
            EventKind::Clickstream => "event_id",
            EventKind::Payments => "payment_id",
        }
    }

    /// Fields whose value must belong to a domain list.
    pub fn enum_fields(self) -> [(&'static str, &'static [&'static str]); 2] {
        match self {
            EventKind::Orders => [("status", order_statuses()), ("channel", channels())],
            EventKind::Clickstream => [("action", click_actions()), ("device", devices())],
            EventKind::Payments => [
                ("method", payment_methods()),
                ("status", payment_statuses()),
            ],
        }
    }

    pub fn has_amount(self) -> bool {
        !matches!(self, EventKind::Clickstream)
    }
}

/// A fault injected by `--bad-ratio`. All but [`Fault::SchemaViolation`] reach Kafka and must be
/// caught downstream; a schema violation is caught by the producer itself and never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Valid header, Avro body cut short: the body cannot be decoded.
    Undecodable,
    /// First byte is not the Confluent magic byte 0.
    WrongMagic,
    /// Header names a schema id the registry does not have.
    UnknownSchemaId,
    /// No Kafka key and an empty business-key field.
    NullKey,
    /// amount ≤ 0.
    NonPositiveAmount,
    /// A currency outside [`currencies`].
    UnknownCurrency,
    /// A status/method/action/device outside its domain.
    BadEnum,
    /// event_time days in the future.
    FutureEventTime,
    /// event_time before 2000.
    AncientEventTime,
    /// The event does not fit its Avro schema: rejected before Kafka.
    SchemaViolation,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::Undecodable,
        Fault::WrongMagic,
        Fault::UnknownSchemaId,
        Fault::NullKey,
        Fault::NonPositiveAmount,
        Fault::UnknownCurrency,
        Fault::BadEnum,
        Fault::FutureEventTime,
        Fault::AncientEventTime,
        Fault::SchemaViolation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Undecodable => "undecodable",
            Fault::WrongMagic => "wrong_magic",
            Fault::UnknownSchemaId => "unknown_schema_id",
            Fault::NullKey => "null_key",
            Fault::NonPositiveAmount => "non_positive_amount",
            Fault::UnknownCurrency => "unknown_currency",
            Fault::BadEnum => "bad_enum",
            Fault::FutureEventTime => "future_event_time",
            Fault::AncientEventTime => "ancient_event_time",
            Fault::SchemaViolation => "schema_violation",
        }
    }

    /// Faults that make sense for an event kind (clickstream has no amount or currency).
    pub fn applicable(kind: EventKind) -> Vec<Fault> {
        Fault::ALL
            .into_iter()
            .filter(|f| {
                kind.has_amount() || !matches!(f, Fault::NonPositiveAmount | Fault::UnknownCurrency)
            })
            .collect()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Fault, String> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown fault category `{s}`"))
    }
}

#[cfg(test)]
mod domain_tests {
    use super::*;

    /// The generator's valid values are the rules' own: each list the generator uses is the
    /// domain the shipped bronze rules name.
    #[test]
    fn the_generator_draws_from_the_rules_domains() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations");
        let text = std::fs::read_to_string(dir.join("domains.yaml")).unwrap();
        assert_eq!(text, DOMAINS_YAML, "the built-in copy is the file");
        let set = crate::quality::load_dir(&dir).unwrap();
        assert!(set.table("bronze_orders").is_some());
        for (name, list) in [
            ("currencies", currencies()),
            ("order_statuses", order_statuses()),
            ("channels", channels()),
            ("payment_methods", payment_methods()),
            ("payment_statuses", payment_statuses()),
            ("click_actions", click_actions()),
            ("devices", devices()),
        ] {
            assert!(!list.is_empty(), "{name}");
        }
        assert_eq!(currencies(), ["EUR", "USD", "GBP", "CHF", "JPY"]);
        let files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml") && !p.ends_with("domains.yaml"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert!(
            !files.iter().any(|f| f.contains("[EUR, USD")),
            "a currency list is written outside domains.yaml"
        );
    }
}
