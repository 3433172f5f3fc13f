//! The timers scenarios: a million pending timers (memory, and a restart that
//! restores them), and a burst of timers due at one instant (lateness).

use std::fmt::Write as _;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rdkafka::message::Message;

use super::instance::{RestoreLine, restore_lines};
use super::{Bench, Goal, Tail, dir_size, header, mib, ms, thousands, wait_metric, wall_ms};

/// What one variant of the timers scenario showed.
struct Timers {
    idle_rss: u64,
    /// From the first record produced to all timers pending.
    set_in: Duration,
    changelog_records: f64,
    /// With every timer pending.
    peak_rss: u64,
    rss: u64,
    exit: ExitStatus,
    stop: Duration,
    store_bytes: u64,
    /// The restart: its spawn (ms since the epoch), its restore, its memory once
    /// every timer is pending again.
    spawned: i64,
    restore: Option<RestoreLine>,
    restart_peak: u64,
    restart_rss: u64,
    restart_exit: ExitStatus,
    restart_stop: Duration,
}

impl Bench<'_> {
    /// Many pending timers, with a local store (the default) and without: memory
    /// once all are set, then a restart.
    pub(super) fn timers(&self) -> anyhow::Result<(String, Vec<Goal>)> {
        let (keys, per_key) = (self.args.timer_keys, self.args.timers_per_key);
        let total = keys * per_key;
        let with_store = self.timers_variant("timers", true)?;
        let without = self.timers_variant("timers-nostore", false)?;

        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n## {} pending timers\n\n{} records `timers {per_key} 3600000` on {} keys (1 input partition, `limits = {{ timeout = \"10s\" }}`): {} timers due an hour later. Then a restart, which restores them.\n",
            thousands(total as u64),
            thousands(keys as u64),
            thousands(keys as u64),
            thousands(total as u64),
        );
        let _ = writeln!(
            out,
            "| | local store (the default) | `local-store = false` |\n|---|---:|---:|"
        );
        let both = [&with_store, &without];
        let row = |out: &mut String, label: &str, cell: &dyn Fn(&Timers) -> String| {
            let cells: Vec<String> = both.iter().map(|t| cell(t)).collect();
            let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
        };
        row(&mut out, "RSS before the first record", &|t| {
            format!("{} MiB", mib(t.idle_rss))
        });
        row(
            &mut out,
            &format!(
                "first record produced → `weir_timers_pending` = {}",
                thousands(total as u64)
            ),
            &|t| format!("{:.1} s", t.set_in.as_secs_f64()),
        );
        row(&mut out, "`weir_changelog_records_total`", &|t| {
            thousands(t.changelog_records as u64)
        });
        row(&mut out, "**peak RSS (VmHWM)** with all pending", &|t| {
            format!("**{} MiB**", mib(t.peak_rss))
        });
        row(&mut out, "RSS (VmRSS) with all pending", &|t| {
            format!("{} MiB", mib(t.rss))
        });
        row(&mut out, "SIGTERM → exit", &|t| {
            format!("{} ({})", ms(t.stop.as_millis() as i64), t.exit)
        });
        row(&mut out, "local store on disk after", &|t| {
            format!("{:.1} MiB", t.store_bytes as f64 / (1 << 20) as f64)
        });
        row(
            &mut out,
            "restart: records from the local store / the changelog (log)",
            &|t| {
                t.restore.map_or("-".into(), |r| {
                    format!(
                        "{} / {}",
                        thousands(r.from_store),
                        thousands(r.from_changelog)
                    )
                })
            },
        );
        row(&mut out, "restart: restore seconds (log)", &|t| {
            t.restore
                .map_or("-".into(), |r| format!("{:.3} s", r.seconds))
        });
        row(&mut out, "restart: start → state restored (log)", &|t| {
            t.restore.map_or("-".into(), |r| ms(r.at_ms - t.spawned))
        });
        row(&mut out, "restart: peak RSS / RSS, restored", &|t| {
            format!("{} / {} MiB", mib(t.restart_peak), mib(t.restart_rss))
        });
        row(&mut out, "restart: SIGTERM → exit", &|t| {
            format!(
                "{} ({})",
                ms(t.restart_stop.as_millis() as i64),
                t.restart_exit
            )
        });
        let goals = vec![Goal {
            goal: format!(
                "{} pending timers: RSS well under 300 MiB",
                thousands(total as u64)
            ),
            measured: format!(
                "peak {} MiB with a local store, {} MiB without; restored: {} MiB",
                mib(with_store.peak_rss),
                mib(without.peak_rss),
                mib(with_store.restart_peak),
            ),
            met: both
                .iter()
                .all(|t| t.peak_rss.max(t.restart_peak) < 300 << 20),
        }];
        Ok((out, goals))
    }

    /// Sets the timers on a fresh pipeline (`store`: with a local store), stops,
    /// and restarts.
    fn timers_variant(&self, scenario: &'static str, store: bool) -> anyhow::Result<Timers> {
        let (keys, per_key) = (self.args.timer_keys, self.args.timers_per_key);
        let total = (keys * per_key) as f64;
        let names = self.names(scenario);
        self.create(&names, 1)?;
        let (store_dir, keys_text) = self.store_dir(&names);
        let state = if store {
            keys_text
        } else {
            "local-store = false".to_owned()
        };
        let config = self.config(&names, 1, &state, "c")?;

        let mut weir = self.start(&config, &names, "set")?;
        weir.wait_log("restored state", 1, Duration::from_secs(120))?;
        let (_, idle_rss) = weir.memory();
        let produced = Instant::now();
        self.produce(
            &names.input,
            (0..keys).map(|k| (format!("key-{k:04}"), format!("timers {per_key} 3600000"))),
        );
        self.flush()?;
        wait_metric(
            &mut weir,
            "weir_timers_pending",
            total,
            Duration::from_secs(1800),
        )?;
        let set_in = produced.elapsed();
        // Let the last deliveries settle before reading memory.
        std::thread::sleep(Duration::from_secs(2));
        let (peak_rss, rss) = weir.memory();
        let changelog_records = weir.metric("weir_changelog_records_total")?;
        eprintln!(
            "  {scenario}: {total} timers pending after {set_in:?}: peak RSS {} MiB, RSS {} MiB",
            mib(peak_rss),
            mib(rss)
        );
        let (exit, stop) = weir.stop()?;
        let store_bytes = dir_size(&store_dir);

        let mut weir = self.start(&config, &names, "restart")?;
        let spawned = weir.spawned_ms;
        wait_metric(
            &mut weir,
            "weir_timers_pending",
            total,
            Duration::from_secs(1800),
        )?;
        let (restart_peak, restart_rss) = weir.memory();
        let restore = restore_lines(&weir.log_text()).last().copied();
        let (restart_exit, restart_stop) = weir.stop()?;
        let _ = std::fs::remove_dir_all(&store_dir);
        Ok(Timers {
            idle_rss,
            set_in,
            changelog_records,
            peak_rss,
            rss,
            exit,
            stop,
            store_bytes,
            spawned,
            restore,
            restart_peak,
            restart_rss,
            restart_exit,
            restart_stop,
        })
    }

    /// Timers due at one instant: how late they fire.
    pub(super) fn burst(&self) -> anyhow::Result<(String, Vec<Goal>)> {
        let (keys, per_key) = (self.args.burst_keys, self.args.burst_per_key);
        let total = keys * per_key;
        let partitions = self.args.burst_partitions;
        let names = self.names("burst");
        self.create(&names, partitions)?;
        let (store_dir, state) = self.store_dir(&names);
        let config = self.config(&names, partitions, &state, "d")?;

        let mut weir = self.start(&config, &names, "d")?;
        weir.wait_log(
            "restored state",
            partitions as usize,
            Duration::from_secs(120),
        )?;
        let tail = Tail::at_end(&self.args.brokers, &names.output)?;
        let produced_ms = wall_ms();
        let due = produced_ms + self.args.burst_ahead as i64 * 1000;
        self.produce(
            &names.input,
            (0..keys).flat_map(|k| {
                (0..per_key).map(move |j| (format!("key-{k:03}"), format!("at {due} t{j}")))
            }),
        );
        self.flush()?;
        // All set before they are due? (Else lateness includes setting them.)
        let mut pending = 0.0;
        while wall_ms() < due {
            pending = weir.metric("weir_timers_pending")?;
            if pending >= total as f64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let set_ms = wall_ms() - produced_ms;
        eprintln!(
            "  {pending} of {total} timers pending {set_ms} ms after the first record; due at +{} s",
            self.args.burst_ahead
        );

        let mut lateness = Vec::with_capacity(total);
        let (mut first_fired, mut last_fired) = (i64::MAX, i64::MIN);
        let deadline = Duration::from_secs(self.args.burst_ahead + 600);
        while lateness.len() < total {
            let message = tail.next(&mut weir, deadline)?;
            if !message.payload().unwrap_or_default().starts_with(b"fired ") {
                continue;
            }
            let late: i64 = header(&message, "weir.timer.lateness-ms")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("a fired timer's output without its lateness header"))?;
            lateness.push(late);
            let at = message.timestamp().to_millis().unwrap_or_default();
            first_fired = first_fired.min(at);
            last_fired = last_fired.max(at);
        }
        let (peak_rss, _) = weir.memory();
        let (exit, _) = weir.stop()?;
        let _ = std::fs::remove_dir_all(&store_dir);
        lateness.sort_unstable();
        let at = |q: f64| lateness[((lateness.len() - 1) as f64 * q) as usize];
        let span = (last_fired - first_fired).max(1);

        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n## {} timers due at one instant\n\n{} records `at T tJ` ({} keys × {} timers, {} input partitions, a local store), all due at the same millisecond T, {} s after the first record was produced. Lateness is each fired output's `weir.timer.lateness-ms` header (weir's clock when it fired, minus T).\n",
            thousands(total as u64),
            thousands(total as u64),
            keys,
            per_key,
            partitions,
            self.args.burst_ahead,
        );
        let _ = writeln!(out, "| figure | value |\n|---|---:|");
        let _ = writeln!(
            out,
            "| timers pending before T | {} of {} ({} after the first record) |",
            thousands(pending as u64),
            thousands(total as u64),
            ms(set_ms)
        );
        let _ = writeln!(
            out,
            "| **lateness p50 / p99 / max** | **{} / {} / {} ms** |",
            at(0.5),
            at(0.99),
            at(1.0)
        );
        let _ = writeln!(
            out,
            "| T → last fired output (its timestamp) | {} |",
            ms(last_fired - due)
        );
        let _ = writeln!(
            out,
            "| firing rate, first to last fired output | {} timers/s |",
            thousands((total as i64 * 1000 / span) as u64)
        );
        let _ = writeln!(out, "| peak RSS | {} MiB |", mib(peak_rss));
        if !exit.success() {
            let _ = writeln!(out, "| exit | {exit} |");
        }
        let p99 = at(0.99);
        let goals = vec![Goal {
            goal: format!(
                "{} timers due at one instant: lateness p99 < 1 s",
                thousands(total as u64)
            ),
            measured: format!("p99 {p99} ms (max {} ms)", at(1.0)),
            met: p99 < 1000,
        }];
        Ok((out, goals))
    }
}
