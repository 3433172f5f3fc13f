//! Bad input at the edges, against Apache Kafka: a 10 MiB value and key, a record
//! with 1,000 headers, a header key that is not UTF-8, topic names made of every
//! legal character, a pipeline whose output is its input, a plugin file that
//! cannot be read at reload. Each gets a clear error or a DLQ record, weir stays
//! up, and nothing else is lost.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::kafka::*;
use common::*;
use rdkafka::ClientConfig;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const SETTLE: Duration = Duration::from_secs(120);
const BIG: usize = 10 << 20;

/// A producer that may send records of up to 16 MiB.
fn big_producer(brokers: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", "16777216")
        .create()
        .expect("producer")
}

#[test]
fn a_10_mib_value_or_key_is_dead_lettered_whole_and_the_rest_flows() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, output, dlq, group) = chaos_config(brokers, 1, "", "");
    let limit = [("max.message.bytes", "16777216")];
    create_topic_with(brokers, &input, 1, &limit);
    create_topic_with(brokers, &dlq, 1, &limit);
    let text = text.replace(
        "[kafka.properties]\n",
        "[kafka.properties]\n\"message.max.bytes\" = \"16777216\"\n",
    );
    let config = write_config(dir.path(), &text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    let producer = big_producer(brokers);
    let big_value = "v".repeat(BIG);
    let big_key = "k".repeat(BIG);
    for i in 0..40 {
        let value = format!("ok-{i}");
        let record = match i {
            10 => BaseRecord::to(&input)
                .key("big-value")
                .payload(big_value.as_str()),
            20 => BaseRecord::to(&input)
                .key(big_key.as_str())
                .payload("big-key"),
            _ => BaseRecord::to(&input).key("small").payload(value.as_str()),
        };
        producer.send(record).map_err(|(e, _)| e).expect("enqueue");
    }
    producer.flush(Duration::from_secs(60)).expect("delivered");
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);

    let outputs = read_topic(brokers, &output, 38, Duration::from_secs(20));
    assert_eq!(outputs.len(), 38, "every small record echoed once");
    let dead = read_topic(brokers, &dlq, 2, Duration::from_secs(30));
    assert_eq!(dead.len(), 2);
    for m in &dead {
        assert_eq!(header(m, "weir.error.reason"), Some("bad-output"));
        let size = m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len);
        assert!(
            size >= BIG,
            "the whole source record is kept ({size} bytes)"
        );
    }
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn a_record_with_1000_headers_passes_through_in_order() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, output, _dlq, group) = chaos_config(brokers, 1, "", "");
    let config = write_config(dir.path(), &text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    let headers: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("h-{i:04}"), format!("value {i}")))
        .collect();
    produce(
        brokers,
        &input,
        &[
            (Some("k".into()), Some(b"many".to_vec()), headers.clone()),
            (Some("k".into()), Some(b"after".to_vec()), vec![]),
        ],
    );
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);
    let outputs = read_topic(brokers, &output, 2, Duration::from_secs(20));
    let many = outputs
        .iter()
        .find(|m| m.payload() == Some(&b"many"[..]))
        .expect("the record with 1000 headers came out");
    let got: Vec<(String, String)> = many
        .headers()
        .expect("headers")
        .iter()
        .map(|h| {
            (
                h.key.to_owned(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    assert_eq!(got, headers);
    assert!(outputs.iter().any(|m| m.payload() == Some(&b"after"[..])));
    assert_eq!(weir.terminate(), Some(0));
}

/// Produces one record whose header key is the bytes `key` (not UTF-8), through
/// librdkafka's C API: rdkafka's Rust API only takes `&str` keys.
fn produce_raw_header_key(brokers: &str, topic: &str, key: &[u8], value: &[u8]) {
    use rdkafka::bindings as rd;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    let topic = std::ffi::CString::new(topic).unwrap();
    let name = std::ffi::CString::new(key).unwrap();
    let header_value = b"bytes";
    let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
    // SAFETY: every pointer outlives the call, which copies what it needs
    // (RD_KAFKA_MSG_F_COPY), and the array's length is passed with it.
    unsafe {
        let mut u: rd::rd_kafka_vu_s__bindgen_ty_1 = std::mem::zeroed();
        u.cstr = topic.as_ptr();
        let topic_vu = vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC, u);
        let mut u: rd::rd_kafka_vu_s__bindgen_ty_1 = std::mem::zeroed();
        u.mem = rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
            ptr: value.as_ptr() as *mut _,
            size: value.len(),
        };
        let value_vu = vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE, u);
        let mut u: rd::rd_kafka_vu_s__bindgen_ty_1 = std::mem::zeroed();
        u.header = rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
            name: name.as_ptr(),
            val: header_value.as_ptr().cast(),
            size: header_value.len() as isize,
        };
        let header_vu = vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER, u);
        let mut u: rd::rd_kafka_vu_s__bindgen_ty_1 = std::mem::zeroed();
        u.i = rd::RD_KAFKA_MSG_F_COPY;
        let flags_vu = vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_MSGFLAGS, u);
        let vus = [topic_vu, value_vu, header_vu, flags_vu];
        let error = rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len());
        assert!(error.is_null(), "produceva failed");
    }
    producer.flush(Duration::from_secs(30)).expect("delivered");
}

#[test]
fn a_header_key_that_is_not_utf8_does_not_take_weir_down() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let (text, input, output, _dlq, group) = chaos_config(brokers, 1, "", "");
    let config = write_config(dir.path(), &text);
    let mut weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    produce_raw_header_key(brokers, &input, b"bad\xff\xfekey", b"odd");
    produce(brokers, &input, &commands(&["after-1", "after-2"]));
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);
    assert!(weir.is_running(), "weir is still up");
    let outputs = read_topic(brokers, &output, 3, Duration::from_secs(20));
    let values: HashMap<&[u8], &rdkafka::message::OwnedMessage> =
        outputs.iter().map(|m| (m.payload().unwrap(), m)).collect();
    let odd = values.get(&b"odd"[..]).expect("the odd record was handled");
    let key = odd.headers().unwrap().get(0).key.to_owned();
    assert_eq!(key, "bad\u{fffd}\u{fffd}key", "the key, converted");
    assert!(
        values.contains_key(&b"after-2"[..]),
        "and the next records flow"
    );
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn topic_names_made_of_every_legal_character_work() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let stamp = unique("t").replace('-', "_");
    let input = format!("In.put-{stamp}_AZaz09.-_");
    let output = format!("Out.put-{stamp}_AZaz09.-_");
    let dlq = format!("Dead.letters-{stamp}_AZaz09.-_");
    let group = format!("{input}-group");
    let text = format!(
        r#"{kafka}
[topics."{input}"]
[topics."{output}"]

[[pipeline]]
name = "odd.names_all-kinds"
input = "{input}"
group = "{group}"
plugins = [{{ path = "{chaos}" }}]
outputs = {{ out = "{output}" }}
dlq = "{dlq}"
"#,
        kafka = kafka_section(brokers),
        chaos = wasm("chaos_plugin"),
    );
    let config = write_config(dir.path(), &text);
    let weir = Weir::start(&config, dir.path(), "weir");
    weir.wait_ready(1);
    produce(brokers, &input, &commands(&["hello", "invalid", "world"]));
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);
    assert_eq!(
        read_topic(brokers, &output, 2, Duration::from_secs(20)).len(),
        2
    );
    assert_eq!(
        read_topic(brokers, &dlq, 1, Duration::from_secs(20)).len(),
        1
    );
    assert_eq!(weir.terminate(), Some(0));
}

#[test]
fn a_pipeline_whose_output_is_its_input_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"[topics.loop]

[[pipeline]]
name = "looping"
input = "loop"
plugins = [{{ path = "{chaos}" }}]
outputs = {{ out = "loop" }}
"#,
        chaos = wasm("chaos_plugin"),
    );
    let path = dir.path().join("loop.toml");
    std::fs::write(&path, text).unwrap();
    let output = run(weir().arg("check").arg("--config").arg(&path));
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains(
            "loop.toml:7: pipeline[0].outputs.out: an output must not be the pipeline's own input"
        ),
        "{err}"
    );
}

#[test]
fn a_plugin_file_that_cannot_be_read_at_reload_is_refused_and_the_old_one_serves() {
    let brokers = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("echo.wasm");
    std::fs::copy(wasm("chaos_plugin"), &plugin).unwrap();
    let (text, input, output, _dlq, group) =
        one_plugin_config(brokers, "echo", &plugin.display().to_string(), "", 1, "");
    let config = write_config(dir.path(), &text);
    let weir = Weir::start_with(&config, dir.path(), "weir", &["--watch"]);
    weir.wait_ready(1);
    // Replaced by something no one can read as a file (permissions would not stop
    // root): the watcher sees the change and cannot read it.
    std::fs::remove_file(&plugin).unwrap();
    std::fs::create_dir(&plugin).unwrap();
    wait_until(SETTLE, "the reload to be refused", || {
        weir.log_text().contains("plugin reload rejected")
    });
    let log = weir.log_text();
    assert!(
        log.contains("cannot read plugin") && log.contains("echo.wasm"),
        "the reason and the file are named: {log}"
    );
    produce(brokers, &input, &commands(&["still", "serving"]));
    wait_until(SETTLE, "lag 0", || lag(brokers, &group, &input) == 0);
    assert_eq!(
        read_topic(brokers, &output, 2, Duration::from_secs(20)).len(),
        2
    );
    assert_eq!(weir.terminate(), Some(0));
}
