//! Realistic, reproducible synthetic events.
//!
//! Reproducible: the same seed, kind, version, ratios and base time give the same events, byte for
//! byte, on any machine and any future flowctl build — the random source is a SplitMix64 defined
//! here, not a library generator whose stream may change between versions. Order `n` of a seed is
//! a pure function of `(seed, n)`, which is how the payments stream refers to real orders: it
//! replays the orders of the same seed and pays them, with the same amount and currency.
//!
//! Realistic: customers and campaigns are skewed (a few big spenders and one dominant campaign),
//! a share of events is late (event_time hours in the past), a share is re-sent (same business
//! key and payload), and `--bad-ratio` injects the faults listed in [`Fault`].

mod items;
mod mix;

pub use items::order;
pub use mix::Mix;

use apache_avro::types::Value;
use items::{click, field, payments_for, round2, s};

use super::domain::{EPOCH_2000_MS, EventKind, Fault};

/// Which orders schema the events follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaVersion {
    V1,
    V2,
}

/// Generator settings. Ratios are probabilities per event.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub kind: EventKind,
    pub version: SchemaVersion,
    pub seed: u64,
    pub bad_ratio: f64,
    pub late_ratio: f64,
    pub duplicate_ratio: f64,
    /// "Now" for event times, epoch ms. Fix it to make runs byte-identical.
    pub base_time_ms: i64,
    /// Simulated milliseconds between consecutive items (orders, clicks; payments follow their
    /// order): with `--rate R` this is 1000/R, so event times advance like the wall clock
    /// while staying a pure function of the seed. 0: every item is "now".
    pub spacing_ms: f64,
}

impl GenConfig {
    pub fn new(kind: EventKind, seed: u64, base_time_ms: i64) -> GenConfig {
        GenConfig {
            kind,
            version: SchemaVersion::V1,
            seed,
            bad_ratio: 0.0,
            late_ratio: 0.03,
            duplicate_ratio: 0.02,
            base_time_ms,
            spacing_ms: 0.0,
        }
    }
}

/// One generated event, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Kafka key: the business key (None only for the null-key fault).
    pub key: Option<String>,
    pub value: Value,
    pub fault: Option<Fault>,
    pub late: bool,
    pub duplicate: bool,
}

/// How to rebuild one clean event: item number, index within the item (payments of an order),
/// and how late it was made.
#[derive(Debug, Clone, Copy)]
struct Recipe {
    item: u64,
    sub: usize,
    late_by: i64,
}

/// A stream of events of one kind.
pub struct Generator {
    cfg: GenConfig,
    /// Decides faults, lateness and duplicates: separate from item content so that the content
    /// of order `n` does not depend on those decisions.
    flow: Mix,
    seq: u64,
    /// The last clean event, as a recipe: duplicates regenerate it instead of every event
    /// paying for a clone (content is a pure function of the item, so this is exact).
    last_clean: Option<Recipe>,
    /// Payments of the current order and the index of the next one to emit.
    pending: Vec<Value>,
    pending_idx: usize,
    faults: Vec<Fault>,
}

impl Generator {
    pub fn new(cfg: GenConfig) -> Generator {
        let faults = Fault::applicable(cfg.kind);
        Generator {
            flow: Mix::for_item(cfg.seed, 0, 0),
            cfg,
            seq: 0,
            last_clean: None,
            pending: Vec::new(),
            pending_idx: 0,
            faults,
        }
    }

    pub fn config(&self) -> &GenConfig {
        &self.cfg
    }

    /// The next clean event and the recipe that regenerates it.
    fn next_clean(&mut self) -> (Value, Recipe) {
        let seed = self.cfg.seed;
        match self.cfg.kind {
            EventKind::Orders | EventKind::Clickstream => {
                let n = self.seq;
                self.seq += 1;
                let recipe = Recipe {
                    item: n,
                    sub: 0,
                    late_by: 0,
                };
                (self.regenerate(&recipe), recipe)
            }
            EventKind::Payments => {
                while self.pending_idx >= self.pending.len() {
                    self.pending = payments_for(seed, self.seq, self.time_of(self.seq));
                    self.pending_idx = 0;
                    self.seq += 1;
                }
                let sub = self.pending_idx;
                self.pending_idx += 1;
                let v = std::mem::replace(&mut self.pending[sub], Value::Null);
                (
                    v,
                    Recipe {
                        item: self.seq - 1,
                        sub,
                        late_by: 0,
                    },
                )
            }
        }
    }

    /// Simulated "now" of item `n`.
    fn time_of(&self, n: u64) -> i64 {
        self.cfg.base_time_ms + (n as f64 * self.cfg.spacing_ms) as i64
    }

    fn regenerate(&self, r: &Recipe) -> Value {
        let (seed, now) = (self.cfg.seed, self.time_of(r.item));
        let mut v = match self.cfg.kind {
            EventKind::Orders => order(seed, r.item, self.cfg.version, now),
            EventKind::Clickstream => click(seed, r.item, now),
            EventKind::Payments => payments_for(seed, r.item, now).swap_remove(r.sub),
        };
        if r.late_by != 0
            && let Some(Value::Long(t)) = field(&mut v, "event_time")
        {
            *t -= r.late_by;
        }
        v
    }

    fn key_of(&self, v: &Value) -> Option<String> {
        match v {
            Value::Record(f) => f.iter().find_map(|(n, v)| match v {
                Value::String(s) if n == self.cfg.kind.key_field() => Some(s.clone()),
                _ => None,
            }),
            _ => None,
        }
    }

    /// Mutates a clean event into one carrying `fault`. Byte-level faults (undecodable, wrong
    /// magic, unknown schema id) leave the value alone: the producer applies them to the frame.
    fn inject(&mut self, fault: Fault, v: &mut Value, key: &mut Option<String>) {
        let kind = self.cfg.kind;
        let now = self.time_of(self.seq);
        let r = &mut self.flow;
        match fault {
            Fault::Undecodable | Fault::WrongMagic | Fault::UnknownSchemaId => {}
            Fault::NullKey => {
                *key = None;
                if let Some(k) = field(v, kind.key_field()) {
                    *k = s("");
                }
            }
            Fault::NonPositiveAmount => {
                if let Some(a) = field(v, "amount") {
                    *a = Value::Double(if r.chance(0.3) {
                        0.0
                    } else {
                        -round2(1.0 + r.unit() * 200.0)
                    });
                }
            }
            Fault::UnknownCurrency => {
                if let Some(c) = field(v, "currency") {
                    *c = s(["XXX", "BTC", "EURO", "usd"][r.below(4) as usize]);
                }
            }
            Fault::BadEnum => {
                let (name, bad) = match kind {
                    EventKind::Orders => ("status", ["LOST_IN_SPACE", "shipped", "PENDING?"]),
                    EventKind::Clickstream => ("action", ["teleport", "VIEW", "hover??"]),
                    EventKind::Payments => ("method", ["barter", "CARD", "iou"]),
                };
                if let Some(x) = field(v, name) {
                    *x = s(bad[r.below(3) as usize]);
                }
            }
            Fault::FutureEventTime => {
                let t = now + 86_400_000 * (1 + r.below(30) as i64);
                if let Some(x) = field(v, "event_time") {
                    *x = Value::Long(t);
                }
            }
            Fault::AncientEventTime => {
                // Somewhere in 1970–1999, including the classic epoch-zero bug.
                let t = if r.chance(0.3) {
                    0
                } else {
                    r.below(EPOCH_2000_MS as u64) as i64
                };
                if let Some(x) = field(v, "event_time") {
                    *x = Value::Long(t);
                }
            }
            Fault::SchemaViolation => {
                // A field of the wrong type: what a buggy upstream service sends.
                let name = match kind {
                    EventKind::Orders => "amount",
                    EventKind::Clickstream => "page",
                    EventKind::Payments => "amount",
                };
                if let Some(x) = field(v, name) {
                    *x = s("not-a-number");
                    if kind == EventKind::Clickstream {
                        *x = Value::Int(404);
                    }
                }
            }
        }
    }
}

impl Iterator for Generator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        let r = &mut self.flow;
        if self.cfg.duplicate_ratio > 0.0
            && r.chance(self.cfg.duplicate_ratio)
            && let Some(recipe) = &self.last_clean
        {
            let value = self.regenerate(recipe);
            return Some(Event {
                key: self.key_of(&value),
                value,
                fault: None,
                late: false,
                duplicate: true,
            });
        }
        let fault = if self.cfg.bad_ratio > 0.0 && r.chance(self.cfg.bad_ratio) {
            Some(self.faults[r.below(self.faults.len() as u64) as usize])
        } else {
            None
        };
        let late = fault.is_none() && self.cfg.late_ratio > 0.0 && r.chance(self.cfg.late_ratio);
        let late_by = 3_600_000 * (1 + r.below(47) as i64) + r.below(3_600_000) as i64;
        let (mut value, mut recipe) = self.next_clean();
        let mut key = self.key_of(&value);
        if late && let Some(Value::Long(t)) = field(&mut value, "event_time") {
            *t -= late_by;
            recipe.late_by = late_by;
        }
        match fault {
            Some(f) => self.inject(f, &mut value, &mut key),
            None => self.last_clean = Some(recipe),
        }
        Some(Event {
            key,
            value,
            fault,
            late,
            duplicate: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::encode::encode;
    use crate::contracts::schema::{ParsedSchema, builtin};

    const T0: i64 = 1_763_900_000_000;

    fn cfg(kind: EventKind, seed: u64) -> GenConfig {
        let mut c = GenConfig::new(kind, seed, T0);
        c.bad_ratio = 0.2;
        c
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let a: Vec<Event> = Generator::new(cfg(EventKind::Orders, 7))
            .take(500)
            .collect();
        let b: Vec<Event> = Generator::new(cfg(EventKind::Orders, 7))
            .take(500)
            .collect();
        let c: Vec<Event> = Generator::new(cfg(EventKind::Orders, 8))
            .take(500)
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn clean_events_fit_their_schemas() {
        for (kind, schema, version) in [
            (EventKind::Orders, builtin::ORDERS_V1, SchemaVersion::V1),
            (EventKind::Orders, builtin::ORDERS_V2, SchemaVersion::V2),
            (
                EventKind::Clickstream,
                builtin::CLICKSTREAM,
                SchemaVersion::V1,
            ),
            (EventKind::Payments, builtin::PAYMENTS, SchemaVersion::V1),
        ] {
            let s = ParsedSchema::parse(schema).unwrap();
            let mut c = cfg(kind, 1);
            c.version = version;
            for e in Generator::new(c).take(2_000) {
                let r = encode(&s.model, &e.value, &mut Vec::new());
                assert_eq!(
                    r.is_err(),
                    e.fault == Some(Fault::SchemaViolation),
                    "{kind:?} {e:?}"
                );
            }
        }
    }

    #[test]
    fn payments_refer_to_real_orders_with_matching_amounts() {
        let orders: Vec<Value> = (0..200)
            .map(|n| order(3, n, SchemaVersion::V1, T0))
            .collect();
        let mut c = GenConfig::new(EventKind::Payments, 3, T0);
        c.duplicate_ratio = 0.0;
        c.late_ratio = 0.0;
        for p in Generator::new(c).take(150) {
            let Value::Record(pf) = &p.value else {
                panic!()
            };
            let oid = &pf[1].1;
            let o = orders
                .iter()
                .find(|o| matches!(o, Value::Record(f) if &f[0].1 == oid))
                .expect("payment for an order of the same seed");
            let Value::Record(of) = o else { panic!() };
            assert_eq!(pf[2].1, of[4].1, "amount");
            assert_eq!(pf[3].1, of[5].1, "currency");
        }
    }

    #[test]
    fn ratios_and_skew_are_realistic() {
        let mut c = cfg(EventKind::Orders, 11);
        c.bad_ratio = 0.05;
        let events: Vec<Event> = Generator::new(c).take(20_000).collect();
        let bad = events.iter().filter(|e| e.fault.is_some()).count();
        let dup = events.iter().filter(|e| e.duplicate).count();
        let late = events.iter().filter(|e| e.late).count();
        assert!((800..1200).contains(&bad), "bad {bad}");
        assert!((250..550).contains(&dup), "dup {dup}");
        assert!((400..800).contains(&late), "late {late}");
        // Every category shows up.
        for f in Fault::applicable(EventKind::Orders) {
            assert!(events.iter().any(|e| e.fault == Some(f)), "{f}");
        }
        // Skew: the 1% most frequent customers place far more than 1% of orders.
        let mut counts = std::collections::HashMap::new();
        for e in &events {
            if let Value::Record(f) = &e.value {
                *counts.entry(format!("{:?}", f[1].1)).or_insert(0usize) += 1;
            }
        }
        let mut v: Vec<usize> = counts.into_values().collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        let top: usize = v.iter().take(500).sum();
        assert!(top > events.len() / 5, "top 1% of customers: {top} orders");
    }

    #[test]
    fn clickstream_never_gets_amount_faults() {
        assert!(!Fault::applicable(EventKind::Clickstream).contains(&Fault::UnknownCurrency));
        let mut c = cfg(EventKind::Clickstream, 5);
        c.bad_ratio = 1.0;
        assert!(
            Generator::new(c)
                .take(1000)
                .all(|e| e.fault != Some(Fault::NonPositiveAmount))
        );
    }

    #[test]
    fn event_times_advance_with_the_simulated_rate() {
        let mut c = GenConfig::new(EventKind::Orders, 4, T0);
        c.spacing_ms = 10.0; // 100 events/s
        c.late_ratio = 0.0;
        c.duplicate_ratio = 0.0;
        let times: Vec<i64> = Generator::new(c)
            .take(1_000)
            .map(|e| match &e.value {
                Value::Record(f) => match f[7].1 {
                    Value::Long(t) => t,
                    _ => panic!(),
                },
                _ => panic!(),
            })
            .collect();
        // Item 999 is ~10 s after item 0 (minus up to 5 s of per-event jitter).
        assert!(
            times[999] - times[0] > 5_000 && times[999] - times[0] <= 15_000,
            "{}",
            times[999] - times[0]
        );
        assert!(times.iter().all(|t| *t <= T0 + 10_000));
    }
}
