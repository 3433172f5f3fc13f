//! stamp: a test-only plugin for hot reload. It echoes each event to output `out`
//! with headers `stamp` (its version, from `WEIR_STAMP` at build time, default `v0`),
//! `source-partition` and `source-offset`. A build with `WEIR_STAMP=broken-init`
//! refuses to start, for testing rejected reloads.

/// This build's version.
pub const STAMP: &str = match option_env!("WEIR_STAMP") {
    Some(stamp) => stamp,
    None => "v0",
};

/// Whether this build refuses `init`.
pub fn refuses_init() -> bool {
    STAMP == "broken-init"
}

#[cfg(target_arch = "wasm32")]
mod component {
    use weir_plugin_sdk::{Event, Failure, Guest, Header, Output};

    struct Stamp;

    impl Guest for Stamp {
        fn init(_config: Vec<(String, String)>) -> Result<(), String> {
            if super::refuses_init() {
                return Err("this build refuses to start (WEIR_STAMP=broken-init)".to_owned());
            }
            Ok(())
        }

        fn handle_event(event: Event) -> Result<Vec<Output>, Failure> {
            let mut headers = event.headers;
            headers.push(Header::text("stamp", super::STAMP));
            headers.push(Header::text(
                "source-partition",
                &event.partition.to_string(),
            ));
            headers.push(Header::text("source-offset", &event.offset.to_string()));
            Ok(vec![Output {
                to: "out".to_owned(),
                key: event.key,
                value: event.value,
                headers,
            }])
        }
    }

    weir_plugin_sdk::export!(Stamp);
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_build_starts() {
        assert!(!super::refuses_init());
    }
}
