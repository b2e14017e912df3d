//! flowctl: one binary for a medallion data pipeline that refuses to trust its own data.
//!
//! Module map (see DESIGN.md): `flow` parses and validates flow files, `engine` decides what runs
//! when, `store` records every decision in SQLite, `tasks` holds the task kinds, `cli` is the edge.

pub mod bench;
pub mod cli;
pub mod config;
pub mod contracts;
pub mod engine;
pub mod flow;
pub mod ingest;
pub mod kafka;
pub mod lake;
pub mod lineage;
pub mod metrics;
pub mod process;
pub mod quality;
pub mod store;
pub mod support;
pub mod tasks;
pub mod transform;
pub mod vocab;
pub mod wap;
pub mod web;
