//! The value domains of the event schemas, and the faults `produce --bad-ratio` injects.
//!
//! Avro types say "string"; these lists say which strings are valid. They are checked downstream
//! (bronze/silver), not by Avro, so a bad value is quarantined with a reason rather than lost.

use std::fmt;
use std::str::FromStr;

pub const CURRENCIES: &[&str] = &["EUR", "USD", "GBP", "CHF", "JPY"];
pub const ORDER_STATUSES: &[&str] = &[
    "CREATED",
    "PAID",
    "SHIPPED",
    "DELIVERED",
    "CANCELLED",
    "REFUNDED",
];
pub const PAYMENT_METHODS: &[&str] = &["card", "paypal", "bank_transfer", "gift_card"];
pub const PAYMENT_STATUSES: &[&str] = &["AUTHORIZED", "CAPTURED", "FAILED", "REFUNDED"];
pub const CLICK_ACTIONS: &[&str] = &[
    "view",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
];
pub const DEVICES: &[&str] = &["desktop", "mobile", "tablet"];
pub const CHANNELS: &[&str] = &["web", "app", "store", "partner"];

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
    pub fn enum_fields(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            EventKind::Orders => &[("status", ORDER_STATUSES), ("channel", CHANNELS)],
            EventKind::Clickstream => &[("action", CLICK_ACTIONS), ("device", DEVICES)],
            EventKind::Payments => &[("method", PAYMENT_METHODS), ("status", PAYMENT_STATUSES)],
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
    /// A currency outside [`CURRENCIES`].
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
