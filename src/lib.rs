//! flowctl: one binary for a medallion data pipeline that refuses to trust its own data.
//!
//! Module map (the README's "Architecture" section has one line per module): `cli` and `config`
//! are the edge; `engine` decides what runs when, `store` records every decision, `flow`
//! validates flow files, `tasks` holds the task kinds, `wap` decides what becomes visible,
//! `ingest`, `transform`, `quality`, `lake`, `contracts`, `kafka` and `lineage` do the data
//! work, and `vocab` is the shared vocabulary everything depends down on.

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
pub mod notify;
pub mod process;
pub mod quality;
pub mod store;
pub mod support;
pub mod tasks;
pub mod transform;
pub mod vocab;
pub mod wap;
pub mod web;
