//! {{name}}: a weir plugin that upper-cases the text of each record's value.
//!
//! Config: `output` (default `out`) is the logical output name of the result.

/// The plugin's logic, in a plain function: `cargo test` runs it natively.
pub fn shout(text: &str) -> String {
    text.to_uppercase()
}

#[cfg(target_arch = "wasm32")]
mod component {
    use std::sync::OnceLock;
    use weir_plugin_sdk::{Event, Failure, Guest, Output, config_value};

    static OUTPUT: OnceLock<String> = OnceLock::new();

    struct Plugin;

    impl Guest for Plugin {
        fn init(config: Vec<(String, String)>) -> Result<(), String> {
            let output = config_value(&config, "output").unwrap_or("out");
            OUTPUT.get_or_init(|| output.to_owned());
            Ok(())
        }

        fn handle_event(event: Event) -> Result<Vec<Output>, Failure> {
            let value = event
                .value
                .ok_or_else(|| Failure::Invalid("value: a tombstone has no text".into()))?;
            let text = String::from_utf8(value)
                .map_err(|_| Failure::Invalid("value: not UTF-8 text".into()))?;
            Ok(vec![Output {
                to: OUTPUT.get().map_or("out", String::as_str).to_owned(),
                key: event.key,
                value: Some(super::shout(&text).into_bytes()),
                headers: vec![],
            }])
        }
    }

    weir_plugin_sdk::export!(Plugin);
}

#[cfg(test)]
mod tests {
    #[test]
    fn shouts() {
        assert_eq!(super::shout("hello, weir"), "HELLO, WEIR");
    }
}
