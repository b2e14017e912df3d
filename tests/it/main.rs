//! All integration tests in one binary, so they link once (the delta-rs convention).

mod browser;
mod common;
mod contracts;
mod core_cli;
mod dag_props;
mod docker_files;
mod executor;
mod ingest;
mod lake;
mod pipeline;
mod recovery;
mod scheduler;
mod server;
mod tables;
mod transform;
mod validation;
mod web_api;
