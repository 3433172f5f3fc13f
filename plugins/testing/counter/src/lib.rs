//! counter: a test-only stateful plugin, written against the `stateful-plugin`
//! world directly (no SDK), for the host's state and timer tests.
//!
//! Each event's value is a command; every command answers with one output to `out`
//! (key: the event's key) saying what it did:
//!
//! - `count` adds one to the key's `count` entry: `count=N`;
//! - `in MS NAME` sets the key's timer NAME due MS from the host's clock: `set NAME`;
//! - `at MS NAME` sets it due at MS since the epoch: `set NAME`;
//! - `cancel NAME` cancels it: `cancelled NAME`;
//! - `big N` writes an entry of N bytes and ignores the error: `big`;
//! - `timers N MS` sets N timers `t0`..`tN-1`, due MS from now: `set N`.
//!
//! A fired timer answers `fired NAME due=DUE count=N payload=PAYLOAD` with the key's
//! current count.

/// What a command does to a key's count.
pub fn next_count(current: Option<&[u8]>) -> u64 {
    current
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        + 1
}

#[cfg(target_arch = "wasm32")]
#[allow(clippy::too_many_arguments)]
mod component {
    wit_bindgen::generate!({
        world: "stateful-plugin",
        path: "../../../wit",
    });

    use weir::plugin::{state, timers};

    struct Counter;

    fn out(key: Option<Vec<u8>>, text: String) -> Output {
        Output {
            to: "out".into(),
            key,
            value: Some(text.into_bytes()),
            headers: vec![],
        }
    }

    fn count() -> String {
        state::get("count")
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|| "0".into())
    }

    impl Guest for Counter {
        fn init(_config: Vec<(String, String)>) -> Result<(), String> {
            Ok(())
        }

        fn handle_event(event: Event) -> Result<Vec<Output>, Failure> {
            let value = event.value.unwrap_or_default();
            let text = String::from_utf8_lossy(&value).into_owned();
            let words: Vec<&str> = text.split_whitespace().collect();
            let bad = |why: &str| Failure::Invalid(format!("{why}: {text:?}"));
            let number = |i: usize| -> Result<i64, Failure> {
                words
                    .get(i)
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| bad("expected a number"))
            };
            let answer = match words.first().copied() {
                Some("count") => {
                    let n = super::next_count(state::get("count").as_deref());
                    state::set("count", n.to_string().as_bytes()).map_err(Failure::Transient)?;
                    format!("count={n}")
                }
                Some(how @ ("in" | "at")) => {
                    let ms = number(1)?;
                    let name = words.get(2).ok_or_else(|| bad("expected a name"))?;
                    let at = if how == "in" {
                        timers::now_ms() + ms
                    } else {
                        ms
                    };
                    timers::set(name, at, name.as_bytes()).map_err(Failure::Transient)?;
                    format!("set {name}")
                }
                Some("cancel") => {
                    let name = words.get(1).ok_or_else(|| bad("expected a name"))?;
                    timers::cancel(name);
                    format!("cancelled {name}")
                }
                Some("big") => {
                    let n = number(1)? as usize;
                    let _ = state::set("big", &vec![b'x'; n]);
                    "big".to_owned()
                }
                Some("timers") => {
                    let n = number(1)?;
                    let at = timers::now_ms() + number(2)?;
                    for i in 0..n {
                        let name = format!("t{i}");
                        timers::set(&name, at, name.as_bytes()).map_err(Failure::Transient)?;
                    }
                    format!("set {n}")
                }
                _ => return Err(bad("unknown command")),
            };
            Ok(vec![out(event.key, answer)])
        }

        fn handle_timer(timer: FiredTimer) -> Result<Vec<Output>, Failure> {
            let text = format!(
                "fired {} due={} count={} payload={}",
                timer.name,
                timer.due_ms,
                count(),
                String::from_utf8_lossy(&timer.payload)
            );
            Ok(vec![out(timer.key, text)])
        }
    }

    export!(Counter);
}
