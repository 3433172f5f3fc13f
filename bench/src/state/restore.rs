//! The restore scenario: a changelog of N entries written directly, restored (a)
//! with no local store, (b1) into a new local store, written at a clean stop, and
//! (b2) from that store and the changelog's (empty) tail.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use weir::state::Change;
use weir::state::changelog;

use super::instance::{first_line_ms, restore_lines};
use super::{Bench, Goal, Start, Tail, dir_size, mib, ms, thousands};
use crate::driver::{input_producer_config, send};

impl Bench<'_> {
    /// Restore: (a) from the changelog alone, (b1) the same building a local store,
    /// (b2) from the local store and the changelog's tail.
    pub(super) fn restore(&self) -> anyhow::Result<(String, Vec<Goal>)> {
        let entries = self.args.entries;
        let per_key = self.args.entries_per_key.max(1);
        let names = self.names("restore");
        self.create(&names, 1)?;
        self.create_topics(&[(&names.changelog, 1, true)])?;
        // Entry i is entry i % per_key of key i / per_key: `count` first, then
        // `e1`, `e2`, ...
        let key = |k: usize| format!("user-{k:07}");
        let count = |k: usize| (k % 1000 + 1) as u64;
        let entry = |i: usize| -> Change {
            let (k, n) = (i / per_key, i % per_key);
            let (name, value) = match n {
                0 => ("count".to_owned(), count(k)),
                n => (format!("e{n}"), n as u64),
            };
            Change::Entry {
                key: Some(key(k).into_bytes()),
                name,
                value: Some(value.to_string().into_bytes()),
            }
        };

        eprintln!("  writing {entries} entries to {}", names.changelog);
        let producer: ThreadedProducer<DefaultProducerContext> =
            input_producer_config(&self.args.brokers)
                // What weir's own producer writes the changelog with.
                .set("compression.type", "lz4")
                .set("linger.ms", "5")
                .create()?;
        let written = Instant::now();
        let mut bytes = 0;
        for i in 0..entries {
            let (k, v) = changelog::encode(&entry(i));
            let v = v.unwrap_or_default();
            bytes += k.len() + v.len();
            send(
                &producer,
                BaseRecord::to(&names.changelog)
                    .partition(0)
                    .key(k.as_slice())
                    .payload(v.as_slice()),
            );
        }
        producer
            .flush(Duration::from_secs(300))
            .context("writing the changelog")?;
        let written = written.elapsed();
        // The changelog read alone, as weir's restore reads it, then with a larger
        // per-partition fetch: how much of a restore is the fetching.
        let plain = read_to_end(&self.args.brokers, &names.changelog, &[])?;
        let large = read_to_end(
            &self.args.brokers,
            &names.changelog,
            &[("max.partition.fetch.bytes", "52428800")],
        )?;

        // Each start finds one `count` for the probe key waiting; its answer says
        // the restored count was right.
        let probe = entries / per_key / 2;
        let mut expected = count(probe);
        let mut start = |config: &Path, log: &str| -> anyhow::Result<(Start, i64)> {
            expected += 1;
            self.produce(&names.input, [(key(probe), "count".to_owned())]);
            self.flush()?;
            let tail = Tail::at_end(&self.args.brokers, &names.output)?;
            let mut weir = self.start(config, &names, log)?;
            let first = tail.next(&mut weir, Duration::from_secs(600))?;
            let answer = String::from_utf8_lossy(first.payload().unwrap_or_default()).into_owned();
            if answer != format!("count={expected}") {
                bail!(
                    "the probe answered {answer:?}, not count={expected}: the count was not restored"
                );
            }
            let spawned = weir.spawned_ms;
            let log_text = weir.log_text();
            let (peak_rss, rss) = weir.memory();
            let metric_seconds = weir.metric("weir_state_restore_seconds_sum")?;
            let metric_records = weir.metric("weir_state_restore_records_total")?;
            let (exit, stop) = weir.stop()?;
            let figures = Start {
                first_output_ms: first.timestamp().to_millis().unwrap_or_default() - spawned,
                assigned_ms: first_line_ms(&log_text, "partitions assigned").map(|t| t - spawned),
                restore: restore_lines(&log_text).last().copied(),
                metric_seconds,
                metric_records,
                peak_rss,
                rss,
                exit,
                stop,
            };
            eprintln!(
                "  {log}: first output {} ms after start, restore {:?}, exit {exit} after {stop:?}",
                figures.first_output_ms, figures.restore
            );
            Ok((figures, spawned))
        };

        let a = start(
            &self.config(&names, 1, "local-store = false", "a")?,
            "a-no-store",
        )?;
        let (store_dir, keys) = self.store_dir(&names);
        let with_store = self.config(&names, 1, &keys, "b")?;
        let b1 = start(&with_store, "b1-first")?;
        let store_bytes = dir_size(&store_dir);
        let b2 = start(&with_store, "b2-restart")?;
        let _ = std::fs::remove_dir_all(&store_dir);

        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n## Restore: {} entries, {} per key\n\nThe changelog `{}` (1 partition, compacted, lz4) got {} entry records written directly (`weir::state::changelog::encode`: {} keys `user-NNNNNNN`, entries `count`{}, values of 1 to 4 digits, {:.1} MiB of keys and values) in {:.1} s. Each start had one `count` record waiting on key `{}`, answered with the restored count + 1 (checked). Times are from weir's spawn; the log's times are its lines' timestamps.\n",
            thousands(entries as u64),
            per_key,
            names.changelog,
            thousands(entries as u64),
            thousands((entries / per_key) as u64),
            if per_key > 1 { ", `e1`, `e2`, ..." } else { "" },
            bytes as f64 / (1 << 20) as f64,
            written.as_secs_f64(),
            key(probe),
        );
        let _ = writeln!(
            out,
            "| | (a) `local-store = false` | (b1) local store, first start | (b2) local store, restart |\n|---|---:|---:|---:|"
        );
        let starts = [&a, &b1, &b2];
        let row = |out: &mut String, label: &str, cell: &dyn Fn(&Start, i64) -> String| {
            let cells: Vec<String> = starts.iter().map(|(s, at)| cell(s, *at)).collect();
            let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
        };
        row(
            &mut out,
            "records loaded from the local store (log)",
            &|s, _| s.restore.map_or("-".into(), |r| thousands(r.from_store)),
        );
        row(
            &mut out,
            "records read from the changelog (log)",
            &|s, _| {
                s.restore
                    .map_or("-".into(), |r| thousands(r.from_changelog))
            },
        );
        row(&mut out, "restore seconds (log)", &|s, _| {
            s.restore
                .map_or("-".into(), |r| format!("{:.3} s", r.seconds))
        });
        row(&mut out, "`weir_state_restore_records_total`", &|s, _| {
            thousands(s.metric_records as u64)
        });
        row(&mut out, "`weir_state_restore_seconds` (sum)", &|s, _| {
            format!("{:.3} s", s.metric_seconds)
        });
        row(
            &mut out,
            "changelog records/s (records / seconds)",
            &|s, _| match s.restore {
                Some(r) if r.from_changelog > 1000 && s.metric_seconds > 0.0 => {
                    thousands((r.from_changelog as f64 / s.metric_seconds) as u64)
                }
                _ => "-".into(),
            },
        );
        row(&mut out, "start → partitions assigned (log)", &|s, _| {
            s.assigned_ms.map_or("-".into(), ms)
        });
        row(&mut out, "start → state restored (log)", &|s, at| {
            s.restored_ms(at).map_or("-".into(), ms)
        });
        row(&mut out, "**start → first output**", &|s, _| {
            format!("**{}**", ms(s.first_output_ms))
        });
        row(
            &mut out,
            "peak RSS / RSS after the first output",
            &|s, _| format!("{} / {} MiB", mib(s.peak_rss), mib(s.rss)),
        );
        row(&mut out, "SIGTERM → exit", &|s, _| {
            format!("{} ({})", ms(s.stop.as_millis() as i64), s.exit)
        });
        let _ = writeln!(
            out,
            "\nThe local store after (b1)'s stop: {:.1} MiB on disk.",
            store_bytes as f64 / (1 << 20) as f64
        );
        let _ = writeln!(
            out,
            "\nThe changelog read to its end by a plain consumer with the settings of weir's restore consumer (`read_committed`, `queued.max.messages.kbytes` = 16384, a `poll` per record), before weir started: {} records in {:.2} s ({} records/s); the same with `max.partition.fetch.bytes` = 50 MB (the default is 1 MiB): {:.2} s ({} records/s).",
            thousands(plain.0),
            plain.1.as_secs_f64(),
            thousands((plain.0 as f64 / plain.1.as_secs_f64()) as u64),
            large.1.as_secs_f64(),
            thousands((large.0 as f64 / large.1.as_secs_f64()) as u64),
        );

        let rate =
            a.0.restore
                .filter(|_| a.0.metric_seconds > 0.0)
                .map_or(0.0, |r| r.from_changelog as f64 / a.0.metric_seconds);
        let goals = vec![
            Goal {
                goal: format!(
                    "restore of {} entries from the changelog alone ≥ 200,000 entries/s",
                    thousands(entries as u64)
                ),
                measured: format!("{} entries/s", thousands(rate as u64)),
                met: rate >= 200_000.0,
            },
            Goal {
                goal: "restart with the local store: < 1 s to the first record".into(),
                measured: ms(b2.0.first_output_ms),
                met: b2.0.first_output_ms < 1000,
            },
        ];
        for (label, s) in [("a", &a.0), ("b1", &b1.0), ("b2", &b2.0)] {
            if !s.exit.success() {
                let _ = writeln!(out, "\n(**{label}**: weir exited with {}.)", s.exit);
            }
        }
        Ok((out, goals))
    }
}

/// Reads partition 0 of `topic` from its start to its end as weir's restore does
/// (its consumer settings, plus `extra`, and a poll per record): the records read
/// and how long it took.
fn read_to_end(
    brokers: &str,
    topic: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<(u64, Duration)> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "weir-bench-state-read")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("queued.max.messages.kbytes", "16384");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let started = Instant::now();
    let consumer: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut records = 0;
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(error)) => bail!("reading {topic}: {error}"),
            Some(Ok(message)) if message.key().is_some() => records += 1,
            Some(Ok(_)) => {}
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("reading {topic} took over 10 minutes");
        }
    }
    Ok((records, started.elapsed()))
}
