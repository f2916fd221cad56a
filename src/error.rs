//! What a failure means for the caller: the one classification every adapter error maps to.
//!
//! The store and log ports ([`crate::store::StoreError`], [`crate::pipeline::log::LogError`])
//! keep their failures typed, with the driver's own error as the source, and each answers
//! `class()`. The worker decides from the class alone whether to back off and retry, set one
//! record aside as a dead letter, or stop; it never inspects message text.

/// How a failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Worth retrying with backoff: the store or broker is unreachable, timed out, overloaded,
    /// or out of disk space that an operator can free. Nothing about the record is wrong.
    Transient,
    /// This record or row cannot be processed, and retrying will not change that (a stored row
    /// that does not decode, a value too large to store or publish). Other records can go on.
    Permanent,
    /// Nothing will work until an operator acts (the store directory is locked by another
    /// process, the schema is missing, credentials are refused, a newer on-disk format):
    /// stop with a clear message.
    Fatal,
}

impl ErrorClass {
    /// A stable lower-case name, for log fields and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Fatal => "fatal",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
