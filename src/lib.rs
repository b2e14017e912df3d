//! flowctl: one binary for a medallion data pipeline that refuses to trust its own data.
pub mod engine {
    pub mod state;
}
pub mod cli {
    pub mod contracts;
}
pub mod contracts;
pub mod flow;
pub mod store;
pub mod tasks;
