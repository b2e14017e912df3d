//! The consumer side of the contract: decide whether one Kafka record honours it, and if not,
//! which fault it carries. Ingest uses this to route records to the DLQ with an `error_type`;
//! tests use it to prove that every injected fault is caught.

use std::collections::HashMap;

use apache_avro::types::Value;

use crate::contracts::domain::{EPOCH_2000_MS, EventKind, Fault, currencies};
use crate::contracts::schema::ParsedSchema;
use crate::contracts::wire::{self, SchemaId, WireError};

/// How far in the future an event_time may be before it is a fault (clock skew allowance).
pub const FUTURE_TOLERANCE_MS: i64 = 3_600_000;

/// A record that honours the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub schema_id: SchemaId,
    pub value: Value,
}

/// A record that does not, with a detail for humans (DLQ `error_detail`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub fault: Fault,
    pub detail: String,
}

fn reject(fault: Fault, detail: impl Into<String>) -> Rejected {
    Rejected {
        fault,
        detail: detail.into(),
    }
}

fn get<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Record(f) => f.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        _ => None,
    }
}

fn unwrap_union(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

/// Checks one record of `kind`. `schemas` holds the writer schemas known by id; `now_ms` is the
/// reference for "in the future".
pub fn inspect(
    kind: EventKind,
    key: Option<&[u8]>,
    payload: &[u8],
    schemas: &HashMap<SchemaId, ParsedSchema>,
    now_ms: i64,
) -> Result<Decoded, Rejected> {
    let (id, mut body) = wire::split(payload).map_err(|e| match e {
        WireError::BadMagic(_) => reject(Fault::WrongMagic, e.to_string()),
        WireError::TooShort(_) => reject(Fault::Undecodable, e.to_string()),
    })?;
    let schema = schemas.get(&id).ok_or_else(|| {
        reject(
            Fault::UnknownSchemaId,
            format!("schema id {id} is not registered"),
        )
    })?;
    // The one-call datum reader: deprecated in favour of a builder that does the same.
    #[allow(deprecated)]
    let value = apache_avro::from_avro_datum(&schema.avro, &mut body, None).map_err(|e| {
        reject(
            Fault::Undecodable,
            format!("Avro body does not decode with schema {id}: {e}"),
        )
    })?;
    if !body.is_empty() {
        return Err(reject(
            Fault::Undecodable,
            format!(
                "{} bytes left over after decoding with schema {id}",
                body.len()
            ),
        ));
    }
    let business_key = match get(&value, kind.key_field()) {
        Some(Value::String(s)) => s.as_str(),
        _ => "",
    };
    if key.is_none_or(|k| k.is_empty()) || business_key.is_empty() {
        return Err(reject(
            Fault::NullKey,
            format!(
                "expected a non-empty key and {}, found key {key:?} and {business_key:?}",
                kind.key_field()
            ),
        ));
    }
    if kind.has_amount() {
        if let Some(Value::Double(a)) = get(&value, "amount")
            && *a <= 0.0
        {
            return Err(reject(
                Fault::NonPositiveAmount,
                format!("amount must be > 0, found {a}"),
            ));
        }
        if let Some(Value::String(c)) = get(&value, "currency")
            && !currencies().contains(&c.as_str())
        {
            return Err(reject(
                Fault::UnknownCurrency,
                format!(
                    "currency must be one of {}, found {c:?}",
                    currencies().join(", ")
                ),
            ));
        }
    }
    for (name, domain) in kind.enum_fields() {
        if let Some(Value::String(x)) = get(&value, name).map(unwrap_union)
            && !domain.contains(&x.as_str())
        {
            return Err(reject(
                Fault::BadEnum,
                format!("{name} must be one of {}, found {x:?}", domain.join(", ")),
            ));
        }
    }
    if let Some(Value::TimestampMillis(t) | Value::Long(t)) = get(&value, "event_time") {
        if *t > now_ms + FUTURE_TOLERANCE_MS {
            return Err(reject(
                Fault::FutureEventTime,
                format!("event_time {t} is after now ({now_ms}) + 1h"),
            ));
        }
        if *t < EPOCH_2000_MS {
            return Err(reject(
                Fault::AncientEventTime,
                format!("event_time {t} is before 2000-01-01"),
            ));
        }
    }
    Ok(Decoded {
        schema_id: id,
        value,
    })
}
