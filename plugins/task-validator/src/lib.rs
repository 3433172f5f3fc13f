//! task-validator: lets valid task events through unchanged and rejects the rest as
//! `invalid`, naming the field and the problem.
//!
//! Config: `output` (default `valid`) is the logical output name of the passed event,
//! for pipelines where the validator is the last stage.
//!
//! Span: when the call's span is sampled, a valid event's type and task id are set
//! on it as `todo.event_type` and `todo.task_id`, so a trace shows which task a
//! record was about.

use todo_events::{Rejection, TaskEvent};
use weir_plugin_sdk::span;

/// The output name used when the config does not set one.
pub const DEFAULT_OUTPUT: &str = "valid";

/// Checks one event value; `Ok` means it passes through unchanged.
pub fn validate(value: Option<&[u8]>) -> Result<(), Rejection> {
    TaskEvent::validate(present(value)?)
}

/// Checks one event value as [`validate`] does and, when the call's span is
/// recording, sets a valid event's `todo.event_type` and `todo.task_id` on it. What
/// the component calls for each event.
pub fn check(value: Option<&[u8]>) -> Result<(), Rejection> {
    if !span::recording() {
        return validate(value);
    }
    // Parsing keeps what validating drops; both apply the same rules.
    let event = TaskEvent::parse(present(value)?)?;
    span::set_attribute("todo.event_type", event.event_type.as_str());
    span::set_attribute("todo.task_id", &event.task.task_id.to_string());
    Ok(())
}

/// The value's bytes, or the rejection of a tombstone.
fn present(value: Option<&[u8]>) -> Result<&[u8], Rejection> {
    value.ok_or_else(|| Rejection {
        field: String::new(),
        problem: "a tombstone (null value) is not a task event".to_owned(),
    })
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
            super::check(event.value.as_deref()).map_err(|r| Failure::Invalid(r.to_string()))?;
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
    use weir_plugin_sdk::testing;

    const TASK_ID: &str = "7e57c0de-0000-4000-8000-000000000001";

    fn valid() -> String {
        format!(
            r#"{{"event_id":"0b8f8d4e-3c1a-4f4e-9a53-6d2c1b7e9f10","event_type":"task.updated","timestamp":"2026-11-26T09:00:00Z","version":"1.0","correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","payload":{{"task_id":"{TASK_ID}","user_id":"a11ce000-0000-4000-8000-000000000001","title":"Buy milk","status":"pending","priority":"high","due_date":null}}}}"#
        )
    }

    #[test]
    fn a_valid_event_is_named_on_the_span() {
        testing::reset();
        check(Some(valid().as_bytes())).unwrap();
        assert_eq!(
            testing::span_attributes(),
            [
                ("todo.event_type".to_owned(), "task.updated".to_owned()),
                ("todo.task_id".to_owned(), TASK_ID.to_owned()),
            ]
        );
        assert!(testing::span_events().is_empty());
    }

    #[test]
    fn check_rejects_as_validate_does_and_names_nothing() {
        testing::reset();
        let bad = valid().replace("\"high\"", "\"urgent\"");
        for value in [None, Some(bad.as_bytes()), Some(&b"{"[..])] {
            assert_eq!(check(value), validate(value));
            assert!(check(value).is_err());
        }
        assert!(testing::span_attributes().is_empty());
    }

    #[test]
    fn an_unsampled_span_gets_nothing() {
        testing::reset();
        testing::set_recording(false);
        check(Some(valid().as_bytes())).unwrap();
        assert!(testing::span_attributes().is_empty());
    }

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
