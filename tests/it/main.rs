//! All integration tests in one binary, so they link once (the delta-rs convention).

mod browser;
mod common;
pub mod contracts;
mod core_cli;
mod dag_props;
mod docker_files;
mod executor;
pub mod ingest;
mod ingest_limits;
mod kafka_security;
pub mod lake;
mod lineage;
pub mod notifications;
mod operator_health;
mod parser_props;
mod pipeline;
mod quality;
mod recovery;
mod scheduler;
pub mod server;
mod tables;
mod transform;
mod validation;
mod web_api;
mod web_big_run;
mod web_hostile;
