//! The shared vocabulary: the words every other module speaks, depending on nothing of flowctl's
//! own: task and run states, how an attempt fails (its fault class and cause chain), the log
//! lines and quality records an attempt leaves, durations as users write them, and errors in
//! the files users write (`file:line: reason`). `store`, `flow`, `engine`, `tasks` and `web`
//! all depend down on it.

pub mod duration;
pub mod log;
pub mod quality;
pub mod source;
pub mod state;
pub mod task;

pub use duration::{MAX_DURATION, format_duration, parse_duration};
pub use source::{SourceError, SourceErrors};

/// The text of a caught panic's payload (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// An error and its causes on one line, `a: b: c`: a top-level message alone ("error sending
/// request") often hides the useful part ("Connection refused"). A cause whose text the
/// previous part already holds (`#[error("x: {0}")]`) is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}
