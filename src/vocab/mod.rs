//! The shared vocabulary: the words every other module speaks, depending on nothing of flowctl's
//! own. Durations as users write them, and errors in the files users write (`file:line: reason`).

pub mod duration;
pub mod source;

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
