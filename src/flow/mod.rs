//! Flow files: the YAML model, its validation and the task DAG.

mod dag;
mod load;
mod model;
mod schedule;

pub use dag::Dag;
pub use load::{load_dir, load_file, parse_flow, valid_param_name};
pub use model::{Flow, NotifyEvent, NotifyRule, NotifyTarget, RetryPolicy, TaskSpec, TriggerRule};
pub use schedule::Schedule;
