//! One `handle-event` of the validator + reminder-deriver chain on a ~400-byte task
//! event, in the sandbox and natively. Needs the wasm plugins built
//! (`scripts/build-plugins`). Results are recorded in BENCHMARKS.md.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use weir::pipeline::Chain;
use weir::plugin::{CallSite, Event, Header, Limits, PluginEngine};
use weir::state::{Clock, SlotHandle, SlotState};

const EVENT: &str = r#"{"event_id":"0b8f8d4e-3c1a-4f4e-9a53-6d2c1b7e9f10","event_type":"task.created","timestamp":"2026-11-26T09:00:00Z","version":"1.0","correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","payload":{"task_id":"7e57c0de-0000-4000-8000-000000000001","user_id":"a11ce000-0000-4000-8000-000000000001","title":"Prepare slides for Monday","description":"Use the Q3 numbers","status":"pending","priority":"high","due_date":"2026-11-27T18:00:00+01:00"}}"#;

fn event() -> Event {
    Event {
        topic: "task-events".into(),
        partition: 3,
        offset: 1234,
        timestamp_ms: Some(1_795_683_600_000),
        key: Some(b"a11ce000-0000-4000-8000-000000000001".to_vec()),
        value: Some(EVENT.as_bytes().to_vec()),
        headers: vec![Header {
            key: "source".into(),
            value: b"todo-chat".to_vec(),
        }],
    }
}

fn bench(c: &mut Criterion) {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release");
    let engine = PluginEngine::new().expect("engine");
    let load = |name: &str, config: Vec<(String, String)>| {
        engine
            .load(
                &wasm.join(format!("{name}.wasm")),
                config,
                Limits::default(),
            )
            .unwrap_or_else(|e| panic!("{e} (build the plugins first: scripts/build-plugins)"))
    };
    let versions = [
        load("task_validator", vec![]),
        load("reminder_deriver", vec![("lead-time".into(), "15m".into())]),
    ];
    // The deriver keeps an entry and a timer per task: its slot, with no record's
    // changes kept (each call sees the task as new: the path of a task.created).
    let clock = Clock::fixed(1_795_683_600_000);
    let mut chain = Chain::with_slots(&versions, |i| {
        versions[i].stateful.then(|| {
            SlotHandle::new(SlotState::new(
                i.to_string().into(),
                versions[i].limits,
                clock.clone(),
            ))
        })
    })
    .expect("instantiate");
    let site = CallSite {
        pipeline: Arc::from("bench"),
        partition: 3,
        offset: 1234,
        ..CallSite::default()
    };
    assert_eq!(chain.process(&event(), &site).expect("chain").len(), 1);
    chain.discard_changes();
    println!("event value: {} bytes", EVENT.len());

    // The boundary alone: a plugin that hands the event straight back.
    let mut echo = Chain::new(&[load("chaos_plugin", vec![])]).expect("instantiate");

    let mut group = c.benchmark_group("handle_event");
    group.bench_function("sandboxed echo (boundary only)", |b| {
        b.iter_batched(
            event,
            |e| black_box(echo.process(&e, &site)),
            criterion::BatchSize::SmallInput,
        )
    });
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("sandboxed validator+deriver", |b| {
        b.iter_batched(
            event,
            |e| {
                let outputs = black_box(chain.process(&e, &site));
                chain.discard_changes();
                outputs
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("native validator+deriver", |b| {
        b.iter_batched(
            event,
            |e| {
                let value = e.value.as_deref();
                task_validator::validate(value).expect("valid");
                let reminder = reminder_deriver::derive(
                    value.unwrap_or_default(),
                    reminder_deriver::DEFAULT_LEAD_TIME,
                )
                .expect("derive")
                .expect("a reminder");
                black_box(reminder.to_json())
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
