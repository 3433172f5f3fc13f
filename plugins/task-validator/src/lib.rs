//! task-validator: lets valid task events through unchanged and rejects the rest as
//! `invalid`, naming the field and the problem.
//!
//! Config: `output` (default `valid`) is the logical output name of the passed event,
//! for pipelines where the validator is the last stage.

use todo_events::{Rejection, TaskEvent};

/// The output name used when the config does not set one.
pub const DEFAULT_OUTPUT: &str = "valid";

/// Checks one event value; `Ok` means it passes through unchanged.
pub fn validate(value: Option<&[u8]>) -> Result<(), Rejection> {
    let bytes = value.ok_or_else(|| Rejection {
        field: String::new(),
        problem: "a tombstone (null value) is not a task event".to_owned(),
    })?;
    TaskEvent::validate(bytes)
}

#[cfg(target_arch = "wasm32")]
mod component {
    use std::sync::OnceLock;
    use weir_plugin_sdk::{Event, Failure, Guest, Output, config_value};

    static OUTPUT: OnceLock<String> = OnceLock::new();

    struct Validator;

    impl Guest for Validator {
        fn init(config: Vec<(String, String)>) -> Result<(), String> {
            let output = config_value(&config, "output").unwrap_or(super::DEFAULT_OUTPUT);
            OUTPUT.get_or_init(|| output.to_owned());
            Ok(())
        }

        fn handle_event(event: Event) -> Result<Vec<Output>, Failure> {
            super::validate(event.value.as_deref()).map_err(|r| Failure::Invalid(r.to_string()))?;
            Ok(vec![Output {
                to: OUTPUT
                    .get()
                    .map_or(super::DEFAULT_OUTPUT, String::as_str)
                    .to_owned(),
                key: event.key,
                value: event.value,
                headers: event.headers,
            }])
        }
    }

    weir_plugin_sdk::export!(Validator);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_are_rejected() {
        assert!(
            validate(None)
                .unwrap_err()
                .to_string()
                .contains("tombstone")
        );
    }

    #[test]
    fn rejects_with_field_name() {
        let err = validate(Some(br#"{"event_id": 5}"#)).unwrap_err();
        assert_eq!(err.to_string(), "event_id: expected a string, got a number");
    }
}
