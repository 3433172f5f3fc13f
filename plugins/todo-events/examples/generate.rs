//! Prints generated task events as `weir test` input lines, for trying plugins on
//! realistic traffic:
//!
//!     cargo run -q -p todo-events --example generate -- 2000 [SEED] > events.jsonl
//!
//! About 5% of the events are invalid in every way the validator rejects. A value
//! that is JSON is written as JSON, anything else as a string.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

fn main() {
    let mut args = std::env::args().skip(1);
    let count = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(2026);
    let start: DateTime<Utc> = "2026-11-26T09:00:00Z".parse().expect("a fixed instant");
    for (i, sample) in todo_events::sample::generate(count, seed, start)
        .into_iter()
        .enumerate()
    {
        let value = serde_json::from_slice::<Value>(&sample.value)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&sample.value).into_owned()));
        let line = json!({
            "key": sample.key,
            "value": value,
            "headers": { "trace": format!("t-{i}") },
            "timestamp-ms": start.timestamp_millis() + i as i64 * 1000,
        });
        println!("{line}");
    }
}
