//! What benchmarks and tests use to make and judge data, kept out of the product's paths:
//! synthetic bronze tables written without Kafka ([`synth`]), and an independent reading of the
//! event contracts ([`inspect`]) that tests hold the ingest's decoder and rules to.

pub mod inspect;
pub mod synth;
