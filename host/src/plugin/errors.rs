//! The plugin runtime's error types: why a plugin could not be loaded or started
//! ([`LoadError`]) and why a call produced no outputs ([`CallError`]), keeping the
//! guest's own failure apart from a sandbox fault and a bad output.
//!
//! Also the helpers their messages use: telling a component's source language for
//! advice, and printing sizes. Nothing here runs a plugin.

use std::path::PathBuf;
use std::time::Duration;

use super::Output;
use super::instance::START_DEADLINE_MIN;
use crate::outcome::FailureKind;

/// Errors that stop a plugin from being loaded: a permanent condition at start-up or
/// reload, never a record failure.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin {path}: {reason}")]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("{path} is not a valid WebAssembly component: {message}")]
    Compile { path: PathBuf, message: String },
    #[error("{path} does not implement the weir:plugin world: {message}")]
    Link { path: PathBuf, message: String },
    #[error("plugin {name} failed to start: {message}")]
    Instantiate { name: String, message: String },
    /// Instantiation or `init` tried to grow memory past the cap.
    #[error(
        "plugin {name} could not start within limits.memory = {}: it tried to grow its memory past that while starting (instantiate + init){}",
        size_text(*limit as u64),
        language_hint(language, *limit)
    )]
    StartMemory {
        name: String,
        limit: usize,
        /// The language the component was written in, when it can be told.
        language: Option<GuestLanguage>,
    },
    /// Instantiation or `init` ran past [`start_deadline`](super::start_deadline).
    #[error(
        "plugin {name} did not start within {deadline:?} (instantiate + init get max(limits.timeout, {START_DEADLINE_MIN:?})): its init may loop or wait"
    )]
    StartTimeout { name: String, deadline: Duration },
    #[error("plugin {name} refused its config: {message}")]
    Init { name: String, message: String },
}

/// The language a component was written in, told from the marks its toolchain
/// leaves (for advice in error messages only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestLanguage {
    Python,
    JavaScript,
    Go,
}

impl GuestLanguage {
    /// Tells the language from the component's bytes: componentize-py and
    /// StarlingMonkey (componentize-js) name themselves, Go's producers section says
    /// `Go cmd/compile`. Rust and others: `None`.
    pub fn of_component(bytes: &[u8]) -> Option<GuestLanguage> {
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        if has(b"componentize-py") {
            Some(GuestLanguage::Python)
        } else if has(b"StarlingMonkey") {
            Some(GuestLanguage::JavaScript)
        } else if has(b"Go cmd/compile") {
            Some(GuestLanguage::Go)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GuestLanguage::Python => "Python",
            GuestLanguage::JavaScript => "JavaScript",
            GuestLanguage::Go => "Go",
        }
    }

    /// The memory cap a plugin of this language needs, with margin (the measured
    /// linear memory after init is 4.5MiB for Go, 12.3MiB for Python, 9.1MiB for
    /// JavaScript: BENCHMARKS.md, "Plugins in other languages").
    pub fn min_memory(self) -> usize {
        match self {
            GuestLanguage::Python => 32 << 20,
            GuestLanguage::JavaScript => 32 << 20,
            GuestLanguage::Go => 16 << 20,
        }
    }
}

fn language_hint(language: &Option<GuestLanguage>, limit: usize) -> String {
    match language {
        Some(GuestLanguage::JavaScript) if limit < GuestLanguage::JavaScript.min_memory() => {
            ". JavaScript plugins need at least 32MiB (see docs/languages.md)".to_owned()
        }
        Some(language) if limit < language.min_memory() => format!(
            ". {} plugins need at least {} (see docs/languages.md)",
            language.name(),
            size_text(language.min_memory() as u64)
        ),
        Some(language) => format!(" ({} plugin)", language.name()),
        None => String::new(),
    }
}

/// A size as `16MiB` when it is a whole number of MiB (or KiB), else in bytes.
pub fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{}MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{}KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// What one call came to.
pub type CallOutcome = Result<Vec<Output>, CallError>;

/// Why a call produced no outputs. A guest failure (the plugin's own verdict) and a
/// sandbox fault (the host stopped the guest) are different things.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Guest(GuestFailure),
    #[error("{0}")]
    Fault(Fault),
    /// An output broke a host rule (size, undeclared `to`).
    #[error("bad output: {0}")]
    BadOutput(String),
    /// No instance of the plugin could be made to call.
    #[error("cannot restart the plugin: {0}")]
    Unavailable(String),
    /// A write past the slot's state or timer limits.
    #[error("state limit: {0}")]
    StateLimit(String),
}

/// The plugin's own `failure` value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GuestFailure {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Transient(String),
}

/// The sandbox stopped the call; the instance must be replaced.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Fault {
    #[error("{0}")]
    Trap(String),
    #[error("the call ran past its {0:?} deadline")]
    Timeout(Duration),
    #[error("the plugin tried to grow its memory past the {0}-byte cap")]
    MemoryLimit(usize),
}

impl CallError {
    pub fn kind(&self) -> FailureKind {
        match self {
            CallError::Guest(GuestFailure::Invalid(_)) => FailureKind::Invalid,
            CallError::Guest(GuestFailure::Transient(_)) => FailureKind::Transient,
            CallError::Fault(Fault::Trap(_)) => FailureKind::Trap,
            CallError::Fault(Fault::Timeout(_)) => FailureKind::Timeout,
            CallError::Fault(Fault::MemoryLimit(_)) => FailureKind::MemoryLimit,
            CallError::BadOutput(_) => FailureKind::BadOutput,
            CallError::Unavailable(_) => FailureKind::Unavailable,
            CallError::StateLimit(_) => FailureKind::StateLimit,
        }
    }

    /// The message for `weir.error.message` and `weir test` output.
    pub fn message(&self) -> String {
        match self {
            CallError::BadOutput(m) | CallError::StateLimit(m) => m.clone(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures_say_what_to_change() {
        let error = LoadError::StartMemory {
            name: "app".into(),
            limit: 16 << 20,
            language: Some(GuestLanguage::Python),
        };
        let text = error.to_string();
        assert!(
            text.contains("plugin app could not start within limits.memory = 16MiB: it tried"),
            "{text}"
        );
        assert!(
            text.contains("Python plugins need at least 32MiB (see docs/languages.md)"),
            "{text}"
        );
        assert_eq!(size_text(1536), "1536 bytes");
        assert_eq!(size_text(3 << 10), "3KiB");
        assert_eq!(
            GuestLanguage::of_component(b"..componentize-py.."),
            Some(GuestLanguage::Python)
        );
        assert_eq!(GuestLanguage::of_component(b"rustc"), None);
    }
}
