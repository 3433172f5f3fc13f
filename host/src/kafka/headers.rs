//! Headers at the boundary between plugin records and Kafka messages: consumed
//! headers as plugin headers, and plugin headers as rdkafka's. (The size a record
//! has for the Kafka client is [`crate::record::wire_size`].)

use rdkafka::message::{BorrowedMessage, Header as KafkaHeader, Headers, Message, OwnedHeaders};

use crate::record::Header;

/// A consumed record's headers as plugin headers: a null value becomes empty, and a
/// key that is not UTF-8 is converted lossily (U+FFFD for the bad bytes), since a
/// WIT `string` must be UTF-8. Read through librdkafka directly: rdkafka's own
/// header iterator panics on such a key, and a record must never take a runner
/// down.
pub fn consumed_headers(message: &BorrowedMessage<'_>) -> Vec<Header> {
    use rdkafka::bindings as rd;
    let mut headers = Vec::new();
    // SAFETY: the message pointer is valid while `message` is borrowed, and the
    // header list it returns lives as long as the message; every pointer read
    // below comes from librdkafka with the size it gives.
    unsafe {
        let mut list: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        if rd::rd_kafka_message_headers(message.ptr(), &mut list)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            || list.is_null()
        {
            return headers;
        }
        let count = rd::rd_kafka_header_cnt(list);
        headers.reserve(count);
        for idx in 0..count {
            let mut name: *const std::os::raw::c_char = std::ptr::null();
            let mut value: *const std::os::raw::c_void = std::ptr::null();
            let mut size: usize = 0;
            if rd::rd_kafka_header_get_all(list, idx, &mut name, &mut value, &mut size)
                != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                || name.is_null()
            {
                break;
            }
            let key = std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned();
            let value = if value.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec()
            };
            headers.push(Header { key, value });
        }
    }
    headers
}

/// A message's headers as plugin headers (a null value becomes empty). For
/// messages weir made itself; consumed records go through [`consumed_headers`].
pub fn headers_of(message: &impl Message) -> Vec<Header> {
    message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Headers in rdkafka's form.
pub fn to_kafka_headers(headers: &[Header]) -> OwnedHeaders {
    headers
        .iter()
        .fold(OwnedHeaders::new_with_capacity(headers.len()), |acc, h| {
            acc.insert(KafkaHeader {
                key: &h.key,
                value: Some(h.value.as_slice()),
            })
        })
}
