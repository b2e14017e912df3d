//! How a task attempt fails: the class of the fault (which alone decides whether the executor
//! retries), what went wrong, and the errors that caused it — kept as a chain, not flattened
//! into a string, so the stored message says every step and code can still inspect the cause.

use std::error::Error as StdError;
use std::fmt;

/// What kind of fault ended an attempt, after Arroyo's user / external / internal split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultClass {
    /// The task's configuration or input is wrong; retrying cannot help.
    User,
    /// Something outside flowctl failed (a broker, a command, the disk); a retry may succeed.
    External,
    /// A bug or an unexpected state inside flowctl; retried, since state may have moved on.
    Internal,
    /// The attempt stopped because it was cancelled or timed out.
    Cancelled,
}

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// Why an attempt failed. Built with [`TaskError::user`] & co. for a message of the task's own,
/// or [`TaskError::user_err`] & co. to wrap an error whole; [`TaskError::because`] adds a cause
/// under a message. `Display` prints the message and every cause, `a: b: c`.
#[derive(Debug)]
pub struct TaskError {
    class: FaultClass,
    message: Option<String>,
    source: Option<Source>,
}

impl TaskError {
    fn new(class: FaultClass, message: Option<String>, source: Option<Source>) -> TaskError {
        TaskError {
            class,
            message,
            source,
        }
    }

    pub fn user(message: impl Into<String>) -> TaskError {
        Self::new(FaultClass::User, Some(message.into()), None)
    }

    pub fn external(message: impl Into<String>) -> TaskError {
        Self::new(FaultClass::External, Some(message.into()), None)
    }

    pub fn internal(message: impl Into<String>) -> TaskError {
        Self::new(FaultClass::Internal, Some(message.into()), None)
    }

    pub fn cancelled() -> TaskError {
        Self::new(FaultClass::Cancelled, None, None)
    }

    /// A user error that is `e` itself.
    pub fn user_err(e: impl StdError + Send + Sync + 'static) -> TaskError {
        Self::new(FaultClass::User, None, Some(Box::new(e)))
    }

    /// An external fault that is `e` itself.
    pub fn external_err(e: impl StdError + Send + Sync + 'static) -> TaskError {
        Self::new(FaultClass::External, None, Some(Box::new(e)))
    }

    /// An internal error that is `e` itself.
    pub fn internal_err(e: impl StdError + Send + Sync + 'static) -> TaskError {
        Self::new(FaultClass::Internal, None, Some(Box::new(e)))
    }

    /// The same error, caused by `e`.
    pub fn because(mut self, e: impl StdError + Send + Sync + 'static) -> TaskError {
        self.source = Some(Box::new(e));
        self
    }

    pub fn class(&self) -> FaultClass {
        self.class
    }

    pub fn is_cancelled(&self) -> bool {
        self.class == FaultClass::Cancelled
    }

    /// External faults and internal errors are retried (by the task's policy); user errors and
    /// cancellations are not.
    pub fn is_retryable(&self) -> bool {
        matches!(self.class, FaultClass::External | FaultClass::Internal)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        match self.class {
            FaultClass::Cancelled if self.message.is_none() && self.source.is_none() => {
                return f.write_str("cancelled");
            }
            FaultClass::Internal => parts.push("internal error".into()),
            _ => {}
        }
        parts.extend(self.message.clone());
        let mut cause: Option<&(dyn StdError + 'static)> = self.source.as_deref().map(|s| s as _);
        while let Some(c) = cause {
            let text = c.to_string();
            // A wrapper whose message already holds its cause (`#[error("delta: {0}")]`,
            // `transparent`) would print it twice.
            if !parts.last().is_some_and(|l| l.contains(&text)) {
                parts.push(text);
            }
            cause = c.source();
        }
        if parts.is_empty() {
            parts.push("failed".into());
        }
        // "internal error: x", not "internal error; x".
        f.write_str(&parts.join(": "))
    }
}

impl StdError for TaskError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

/// A task kind's parameters were wrong; `line` points into the flow file when known.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    pub message: String,
    pub line: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("disk full")]
    struct Disk;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write part 3")]
    struct Write(#[source] Disk);

    #[derive(Debug, thiserror::Error)]
    #[error("delta: {0}")]
    struct Quoting(#[source] Disk);

    #[test]
    fn the_chain_is_kept_and_printed_and_the_class_decides_retries() {
        assert_eq!(
            TaskError::external_err(Quoting(Disk)).to_string(),
            "delta: disk full"
        );
        let e = TaskError::external("bronze commit").because(Write(Disk));
        assert_eq!(
            e.to_string(),
            "bronze commit: cannot write part 3: disk full"
        );
        assert!(e.is_retryable());
        assert!(e.source().unwrap().source().unwrap().is::<Disk>());
        let e = TaskError::internal_err(Write(Disk));
        assert_eq!(
            e.to_string(),
            "internal error: cannot write part 3: disk full"
        );
        assert!(e.is_retryable());
        let e = TaskError::user("params.tables is empty");
        assert_eq!(e.to_string(), "params.tables is empty");
        assert!(!e.is_retryable());
        let e = TaskError::cancelled();
        assert_eq!(e.to_string(), "cancelled");
        assert!(e.is_cancelled() && !e.is_retryable());
    }
}
