//! The report (`report.md`): the verdict first (every input accounted for, lag back
//! to 0, RSS and fds flat, reloads applied), then the set-up, the timeline, the
//! accounting, the lag around each disruption, memory and fds, and the warnings and
//! errors of weir's logs.

use std::fmt::Write as _;
use std::process::Command;
use std::time::SystemTime;

use super::accounting::{Accounting, Tally};
use super::disturb::{Event, Soak};
use super::flatness::ProcessStats;
use super::logs::log_summary;
use super::{BATCH, FLAT_FDS, FLAT_SPREAD, FLAT_TREND, SoakArgs, TRACE, clock};
use crate::report::machine;

pub(super) struct Report<'a> {
    pub(super) args: &'a SoakArgs,
    pub(super) soak: &'a Soak<'a>,
    pub(super) accounting: &'a Accounting,
    pub(super) stats: &'a [ProcessStats],
    pub(super) lags: &'a [(f64, i64)],
    pub(super) traffic_end: f64,
    pub(super) sent: usize,
    pub(super) undelivered: usize,
}

impl Report<'_> {
    /// The Markdown, and whether every check passed.
    pub(super) fn markdown(&self) -> (String, bool) {
        let (args, soak, a) = (self.args, self.soak, self.accounting);
        let mut out = String::new();
        let mut failures: Vec<String> = Vec::new();
        let version = Command::new(&soak.weir)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# Soak: the Todo deployment for {} minutes at {} events/s\n",
            args.minutes, args.rate
        );
        let _ = writeln!(
            out,
            "Date: {}. Machine: {}. Broker: {}. weir: `{version}`. Command: `scripts/soak --minutes {} --rate {}`.\n",
            chrono::DateTime::<chrono::Utc>::from(SystemTime::now()).format("%Y-%m-%d %H:%M UTC"),
            machine(),
            args.broker_name.as_deref().unwrap_or(&args.brokers),
            args.minutes,
            args.rate
        );

        // Checks first.
        let mut verdict = Vec::new();
        let tally_ok = |t: &Tally| t.missing() == 0 && t.unexpected == 0 && t.differing == 0;
        let every = tally_ok(&a.updates)
            && tally_ok(&a.reminders_dlq)
            && tally_ok(&a.updates_dlq)
            && a.reminders.missing() == 0
            && a.reminders.unexpected == 0
            && self.undelivered == 0;
        verdict.push(format!(
            "- Every input accounted for: **{}** ({} inputs: {} task updates expected, {} missing, {} duplicates of which {} differ; {} invalid inputs, missing from the reminders DLQ {} and from the ui-sync DLQ {}; {} reminders expected, {} missing).",
            yes(every),
            self.sent,
            a.updates.expected,
            a.updates.missing(),
            a.updates.duplicates,
            a.updates.differing,
            a.updates_dlq.expected,
            a.reminders_dlq.missing(),
            a.updates_dlq.missing(),
            a.reminders.expected,
            a.reminders.missing(),
        ));
        if !every {
            failures.push("accounting".into());
        }
        let drained = soak.timeline.iter().find(|e| e.what == "consumer lag 0");
        let drained_ok = drained.is_some_and(|e| e.ok);
        verdict.push(format!(
            "- Consumer lag back to 0: **{}** ({}).",
            yes(drained_ok),
            drained.map_or("not measured", |e| e.outcome.as_str())
        ));
        if !drained_ok {
            failures.push("lag".into());
        }
        let judged: Vec<&ProcessStats> = self.stats.iter().filter(|s| s.judged).collect();
        if judged.is_empty() {
            verdict.push("- RSS and open fds flat after warm-up: **not judged**: no weir process lived through the second half of the run.".into());
            failures.push("no process to judge flatness on".into());
        }
        for s in judged {
            verdict.push(format!(
                "- RSS and open fds flat after warm-up, {} (pid {}): **{}**: RSS slope {:+.1} MiB/h (a trend of {:+.1} MiB over the window), max-min {:.1} MiB (mean {:.1} MiB) over minutes {:.1}-{:.1}; open fds {}-{} (growth {:+}).",
                s.label,
                s.pid,
                yes(s.flat),
                s.slope_mib_h,
                s.trend_mib,
                s.spread_mib,
                s.mean_mib,
                s.window.0 / 60.0,
                s.window.1 / 60.0,
                s.fds_window.0,
                s.fds_window.1,
                s.fds_growth
            ));
            if !s.flat {
                failures.push(format!("{} not flat", s.label));
            }
        }
        let reloads: Vec<&Event> = soak
            .timeline
            .iter()
            .filter(|e| e.what.starts_with("reload"))
            .collect();
        let applied = reloads.iter().filter(|e| e.ok).count();
        verdict.push(format!(
            "- Hot reloads applied by every running instance: **{applied} of {}**.",
            reloads.len()
        ));
        let failed_events: Vec<String> = soak
            .timeline
            .iter()
            .filter(|e| !e.ok)
            .map(|e| format!("{} at {}", e.what, clock(e.at)))
            .collect();
        if !failed_events.is_empty() {
            failures.push(format!("events: {}", failed_events.join("; ")));
        }
        let ok = failures.is_empty();
        let _ = writeln!(out, "## Verdict\n");
        let _ = writeln!(
            out,
            "**{}**{}\n",
            if ok { "PASS" } else { "FAIL" },
            if ok {
                String::new()
            } else {
                format!(": {}", failures.join(", "))
            }
        );
        for line in verdict {
            let _ = writeln!(out, "{line}");
        }

        let _ = writeln!(out, "\n## Set-up\n");
        let _ = writeln!(
            out,
            "- The Todo deployment of `pipelines.toml` (pipeline `todo`: task-validator, then the `reminders` branch with reminder-deriver and the `ui-sync` branch with ui-projector, its retry, limits and circuit), at-least-once, on fresh topics `{}` (6 partitions; `-reminders` and `-task-updates` 6, both DLQs 1). The task-updates topic has `cleanup = delete` here, not `compact`, so that no update is compacted away before it is counted. No `[kafka.properties]`: librdkafka's defaults, so a killed member holds its partitions for the 45 s session timeout.",
            soak.topics.input
        );
        let _ = writeln!(
            out,
            "- `weir run --watch` (a copy of the binary in `{}`), config `{}`, plugin copies in `{}`.",
            args.out.join("builds").display(),
            soak.config.display(),
            args.out.join("plugins").display()
        );
        let _ = writeln!(
            out,
            "- Input: `todo_events::sample` task events, {} users per batch of {BATCH}, about 5% invalid, offered at {} events/s by an idempotent producer; each input carries a unique `{TRACE}` header (its sequence number).",
            args.users, args.rate
        );
        let _ = writeln!(
            out,
            "- Disturbances: {} hot reloads evenly spread, alternately a live config change (reminder-deriver `lead-time` 15m <-> 16m) and the ui-projector file overwritten in place (`cp`) by the other build (dev profile, opt-level 3: debug assertions and overflow checks) and back; at 10% of the run a SIGKILL of weir and a restart; at 20% a second instance joins; at 30% the broker's JVM is stopped (SIGSTOP) for {} s; at 40% the second instance leaves (SIGTERM). The second half runs with reloads only.",
            args.reloads, args.pause
        );
        let _ = writeln!(
            out,
            "- Sampled every {} s: VmRSS, open fds (`/proc/PID/fd`), threads and CPU time of each process (`samples.csv`), and the group's lag (`lag.csv`).",
            args.sample_every
        );

        let _ = writeln!(out, "\n## Timeline\n");
        let _ = writeln!(out, "| at (mm:ss) | event | outcome |\n|---:|---|---|");
        for e in &soak.timeline {
            let _ = writeln!(
                out,
                "| {} | {}{} | {} |",
                clock(e.at),
                if e.ok { "" } else { "**FAILED** " },
                e.what,
                e.outcome
            );
        }

        let _ = writeln!(out, "\n## Accounting\n");
        let _ = writeln!(
            out,
            "{} inputs sent ({} undelivered by the driver's producer). The outputs were read back from the beginning to the high watermark of every partition.\n",
            self.sent, self.undelivered
        );
        let _ = writeln!(
            out,
            "| topic | records | inputs that call for one | found | missing | duplicates | of which differ | unexpected records |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (name, t) in [
            (
                "task-updates (valid inputs, by `event_id` header)",
                &a.updates,
            ),
            ("reminders (by the derived `event_id`)", &a.reminders),
            (
                "reminders.dlq (invalid inputs, by `trace`)",
                &a.reminders_dlq,
            ),
            ("ui-sync.dlq (invalid inputs, by `trace`)", &a.updates_dlq),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                t.records,
                t.expected,
                t.found,
                t.missing(),
                t.duplicates,
                t.differing,
                t.unexpected
            );
        }
        let _ = writeln!(
            out,
            "\nA task-update duplicate must be byte-identical (key and value) to the first. A dead letter must carry its input's key and value (\"differ\" counts those that do not). A reminder may legitimately differ when the input was processed again after a lead-time change, so its differing duplicates are not a failure."
        );
        for (name, t) in [
            ("reminders.dlq", &a.reminders_dlq),
            ("ui-sync.dlq", &a.updates_dlq),
        ] {
            let reasons: Vec<String> = t.reasons.iter().map(|(r, n)| format!("{r}: {n}")).collect();
            let _ = writeln!(out, "{name} by reason: {}.", reasons.join(", "));
        }

        let _ = writeln!(out, "\n## Consumer lag\n");
        let steady: Vec<i64> = {
            let mut v: Vec<i64> = self
                .lags
                .iter()
                .filter(|(t, _)| *t >= soak.traffic_start && *t <= self.traffic_end)
                .map(|l| l.1)
                .collect();
            v.sort_unstable();
            v
        };
        let median = steady.get(steady.len() / 2).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "Median lag while the traffic ran: {median} records ({:.1} s of input; weir commits every second). Around each disruption (the peak up to the next disruption or 3 minutes, and when it next came back under 2 s of input; a frozen broker or a group in a rebalance may leave gaps in the samples):\n",
            median as f64 / args.rate as f64
        );
        let _ = writeln!(
            out,
            "| at | disruption | peak lag | back under {} after |\n|---:|---|---:|---:|",
            2 * args.rate
        );
        let threshold = 2 * args.rate as i64;
        for (n, &(at, action)) in soak.disruptions.iter().enumerate() {
            let until = soak
                .disruptions
                .get(n + 1)
                .map_or(at + 180.0, |next| next.0.min(at + 180.0));
            let peak = self
                .lags
                .iter()
                .filter(|(t, _)| *t >= at && *t < until)
                .max_by_key(|l| l.1)
                .copied();
            let back = match peak {
                None => "no sample".to_owned(),
                Some((_, lag)) if lag <= threshold => "stayed under".to_owned(),
                Some((peak_at, _)) => self
                    .lags
                    .iter()
                    .find(|(t, l)| *t >= peak_at && *l <= threshold)
                    .map_or("never".into(), |(t, _)| format!("{:.0} s", t - at)),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {back} |",
                clock(at),
                action.short(),
                peak.map_or("-".into(), |p| p.1.to_string()),
            );
        }

        let _ = writeln!(out, "\n## Memory and file descriptors\n");
        let _ = writeln!(out, "![RSS, open fds and consumer lag](rss-fds.svg)\n");
        let _ = writeln!(
            out,
            "Flat means, for the process that lived through the second half of the run and over that half: the least-squares trend of RSS grows it by at most {:.0}% of its mean over the window, RSS max-min is at most {:.0}% of its mean, and open fds grew by at most {FLAT_FDS} (mean of the window's last quarter minus its first). Processes that did not live through it are described over the second half of their own life, not judged.\n",
            FLAT_TREND * 100.0,
            FLAT_SPREAD * 100.0
        );
        let _ = writeln!(
            out,
            "| process | pid | sampled (min) | samples | RSS first / peak / last MiB | window (min) | RSS slope MiB/h | RSS max-min MiB | fds in window | threads | mean CPU (cores) | flat |\n|---|---:|---|---:|---|---|---:|---:|---|---|---:|---|"
        );
        for s in self.stats {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1}-{:.1} | {} | {:.1} / {:.1} / {:.1} | {:.1}-{:.1} | {:+.1} | {:.1} | {}-{} | {}-{} | {:.2} | {} |",
                s.label,
                s.pid,
                s.from / 60.0,
                s.to / 60.0,
                s.samples,
                s.rss_first,
                s.rss_peak,
                s.rss_last,
                s.window.0 / 60.0,
                s.window.1 / 60.0,
                s.slope_mib_h,
                s.spread_mib,
                s.fds_window.0,
                s.fds_window.1,
                s.threads.0,
                s.threads.1,
                s.cores,
                if !s.label.starts_with("weir") {
                    "-"
                } else if s.judged {
                    yes(s.flat)
                } else {
                    "(not judged)"
                }
            );
        }
        let _ = writeln!(out, "\n## Warnings and errors in weir's logs\n");
        let _ = writeln!(
            out,
            "Lines at WARN and ERROR per process, grouped by their text with digits masked, most frequent first.\n"
        );
        for label in soak.logged.iter() {
            let path = soak.logs.join(format!("{label}.log"));
            let summary = log_summary(&path);
            let total: usize = summary.iter().map(|k| k.1).sum();
            let _ = writeln!(out, "- {label}: {total} line(s)");
            for (kind, count) in summary.iter().take(8) {
                let _ = writeln!(out, "  - {count} × `{kind}`");
            }
            if summary.len() > 8 {
                let _ = writeln!(out, "  - and {} more kind(s)", summary.len() - 8);
            }
        }
        let _ = writeln!(
            out,
            "\nFiles: `samples.csv` (per sample and process: elapsed s, RSS KiB, fds, threads, CPU s), `lag.csv`, `rss-fds.svg`, `config/todo.toml`, `logs/*.log` (one per weir process)."
        );
        (out, ok)
    }
}

fn yes(ok: bool) -> &'static str {
    if ok { "yes" } else { "no" }
}
