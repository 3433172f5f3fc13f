//! The records plugins see and return, as the WIT's `weir:plugin/types` defines
//! them: [`Event`], [`Header`], [`Output`] and the plugin's [`Failure`], and the
//! size a record has for the Kafka client ([`wire_size`]). A leaf module, so that
//! the Kafka and policy layers can speak of records without depending on the
//! plugin runtime, and the plugin runtime can size outputs without Kafka.

/// The host's bindings of the `weir:plugin` package. The `stateful-plugin` world
/// (host, state and timers imports; `init`, `handle-event`, `handle-timer`
/// exports) is generated here, and the plain `plugin` world in [`bindings::plain`]
/// shares its types: every component links against the same host functions, and
/// one without `handle-timer` (a plugin built before 0.1.1) is called through the
/// plain world.
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "stateful-plugin",
        path: "../wit",
    });

    /// The plain `plugin` world, with the types and host of the stateful one.
    pub mod plain {
        wasmtime::component::bindgen!({
            world: "plugin",
            path: "../wit",
            with: {
                "weir:plugin/types": super::weir::plugin::types,
                "weir:plugin/host": super::weir::plugin::host,
                "weir:plugin/span": super::weir::plugin::span,
            },
        });
    }
}

pub use bindings::weir::plugin::types::{Event, Failure, FiredTimer, Header, Output};

/// The most librdkafka adds to a record's key, value and headers when it checks a
/// record against `message.max.bytes` (v2 record framing: length, attributes,
/// timestamp and offset deltas, key and value lengths, header count).
const RECORD_FRAMING: usize = 36;

/// The size of a record as weir's Kafka client counts it against
/// `message.max.bytes`: key, value, and headers with their framing. A record over
/// that limit is refused by the client itself, before the broker sees it.
pub fn wire_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    RECORD_FRAMING
        + key.map_or(0, <[u8]>::len)
        + value.map_or(0, <[u8]>::len)
        + headers
            .iter()
            .map(|h| {
                varint_len(h.key.len()) + h.key.len() + varint_len(h.value.len()) + h.value.len()
            })
            .sum::<usize>()
}

/// The length of a zigzag varint of `n` (how record headers encode lengths).
fn varint_len(n: usize) -> usize {
    let mut zigzag = (n as u64) << 1;
    let mut bytes = 1;
    while zigzag >= 0x80 {
        zigzag >>= 7;
        bytes += 1;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_grow_every_seven_bits_of_the_zigzag_value() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(63), 1);
        assert_eq!(varint_len(64), 2);
        assert_eq!(varint_len(8191), 2);
        assert_eq!(varint_len(8192), 3);
    }

    #[test]
    fn the_wire_size_counts_framing_and_header_lengths() {
        let headers = [Header {
            key: "k".into(),
            value: vec![0; 100],
        }];
        assert_eq!(wire_size(None, None, &[]), 36);
        assert_eq!(
            wire_size(Some(b"key"), Some(&[0; 1000]), &headers),
            36 + 3 + 1000 + (1 + 1 + 2 + 100)
        );
    }
}
