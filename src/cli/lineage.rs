//! `flowctl lineage TABLE [--version V]`: which runs and input versions made a table version,
//! walked back through silver and bronze to Kafka offsets (read from the Delta logs).

use clap::Args;

use crate::config::Config;
use crate::lake::lake_root;
use crate::lineage::{LineageError, trace};

#[derive(Debug, Args)]
pub struct LineageArgs {
    /// A table under the lake, e.g. gold_daily_revenue.
    table: String,
    /// The version to trace (default: the latest).
    #[arg(long)]
    version: Option<i64>,
    #[arg(long)]
    json: bool,
}

pub fn run(cfg: &Config, a: LineageArgs) -> anyhow::Result<u8> {
    match trace(&lake_root(&cfg.home), &a.table, a.version) {
        Ok(node) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&node)?);
            } else {
                print!("{}", node.render());
                let kafka = node.kafka_sources();
                if !kafka.is_empty() {
                    println!("reflects Kafka:");
                    for k in kafka {
                        println!("  {}[{}] offsets ..={}", k.topic, k.partition, k.to_offset);
                    }
                }
            }
            Ok(0)
        }
        Err(e @ (LineageError::NoTable { .. } | LineageError::NoVersion { .. })) => {
            Err(super::UsageError(e.to_string()).into())
        }
    }
}
