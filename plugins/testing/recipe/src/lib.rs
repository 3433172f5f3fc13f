//! recipe: a test-only plugin that replies to each event as the event's value says,
//! byte by byte ([`recipe`] has the format): any number of outputs with any `to`,
//! key, value and headers, an `invalid` or `transient` failure, or a trap. The host's
//! `plugin_outputs` fuzz target drives the record path with it (fuzz/).

pub mod recipe;

#[cfg(target_arch = "wasm32")]
mod component {
    use weir_plugin_sdk::{Event, Failure, Guest, Header, Level, Output, log};

    use crate::recipe::{self, Reply};

    struct Recipe;

    impl Guest for Recipe {
        fn init(_config: Vec<(String, String)>) -> Result<(), String> {
            Ok(())
        }

        fn handle_event(event: Event) -> Result<Vec<Output>, Failure> {
            let recipe = recipe::decode(event.value.as_deref().unwrap_or_default());
            if let Some(line) = &recipe.log {
                log(Level::Info, line);
            }
            if let Some(line) = &recipe.print {
                println!("{line}");
            }
            match recipe.reply {
                Reply::Outputs(outputs) => Ok(outputs
                    .into_iter()
                    .map(|o| Output {
                        to: o.to,
                        key: o.key,
                        value: o.value,
                        headers: o
                            .headers
                            .into_iter()
                            .map(|(key, value)| Header { key, value })
                            .collect(),
                    })
                    .collect()),
                Reply::Invalid(message) => Err(Failure::Invalid(message)),
                Reply::Transient(message) => Err(Failure::Transient(message)),
                Reply::Trap(message) => panic!("recipe trap: {message}"),
            }
        }
    }

    weir_plugin_sdk::export!(Recipe);
}

#[cfg(test)]
mod tests {
    use super::recipe::{NAMES, Out, Reply, decode};

    #[test]
    fn the_empty_recipe_replies_with_nothing() {
        let recipe = decode(b"");
        assert_eq!(recipe.reply, Reply::Outputs(vec![]));
        assert_eq!((recipe.log, recipe.print), (None, None));
    }

    #[test]
    fn outputs_with_names_blobs_and_headers() {
        // Two outputs: `alt` with key [7, 8] and no value; then `to` "hé" (raw),
        // no key, a 128-byte value, and one header "k" = [1].
        let recipe = decode(&[
            2, 1, 3, 7, 0, 0, //
            0xC3, b'h', 0xC3, 0xA9, 0, 0x82, 0, 1, 1, b'k', 2, 1,
        ]);
        let Reply::Outputs(outputs) = recipe.reply else {
            panic!("{recipe:?}")
        };
        assert_eq!(
            outputs[0],
            Out {
                to: NAMES[1].into(),
                key: Some(vec![7, 8]),
                value: None,
                headers: vec![],
            }
        );
        assert_eq!(outputs[1].to, "hé");
        assert_eq!(outputs[1].value.as_ref().map(Vec::len), Some(128));
        assert_eq!(outputs[1].headers, [("k".to_owned(), vec![1])]);
        assert_eq!(outputs[1].size(), 36 + 128 + (1 + 1 + 1 + 1));
    }

    #[test]
    fn failures_carry_the_rest_as_message_and_texts_come_first() {
        assert_eq!(decode(b"\x0dbad").reply, Reply::Invalid("bad".into()));
        assert_eq!(decode(b"\x0e").reply, Reply::Transient(String::new()));
        let recipe = decode(b"\x3f\x01\x02\xc3\xa9\x00\x01zboom");
        assert_eq!(recipe.log.as_deref(), Some("é".repeat(16).as_str()));
        assert_eq!(recipe.print.as_deref(), Some("z"));
        assert_eq!(recipe.reply, Reply::Trap("boom".into()));
    }
}
