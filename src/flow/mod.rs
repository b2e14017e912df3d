//! Flow files: the YAML model, its validation and the task DAG.

mod dag;
mod duration;
mod load;
mod model;
mod schedule;

pub use dag::Dag;
pub use duration::{format_duration, parse_duration};
pub use load::{FlowError, FlowErrors, load_dir, load_file, parse_flow};
pub use model::{Flow, RetryPolicy, TaskSpec, TriggerRule};
pub use schedule::Schedule;
