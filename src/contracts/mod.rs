//! Data contracts: the edge of the pipeline. Avro schemas, the rules for evolving them, the
//! Confluent wire format, the schema registry (server and client), the synthetic event
//! generators and the Kafka producer (whose client settings come from `kafka`).
//!
//! Nothing that breaks a contract may enter Kafka unmarked, and every event in Kafka must be
//! decodable by any Confluent client.

pub mod compat;
pub mod domain;
pub mod encode;
pub mod generate;
pub mod produce;
pub mod registry;
pub mod schema;
pub mod wire;
