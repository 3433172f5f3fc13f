//! One `weir run` process of the state benchmark, and what it says: its log (when
//! a line appeared, the restore lines), its metrics endpoint, its memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

use super::wall_ms;
use crate::http::metric_sum;
use crate::proc::{peak_rss, rss};

pub struct Instance {
    child: Option<Child>,
    pub log: PathBuf,
    /// Wall clock at spawn, ms since the epoch: log lines and output timestamps are
    /// measured from it.
    pub spawned_ms: i64,
    /// The metrics endpoint, once the log has named it.
    address: Option<String>,
}

impl Instance {
    /// Starts `weir run --config config`, its output going to `log`.
    pub fn start(weir: &Path, config: &Path, log: &Path) -> anyhow::Result<Instance> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let spawned_ms = wall_ms();
        let child = Command::new(weir)
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", weir.display()))?;
        Ok(Instance {
            child: Some(child),
            log: log.to_owned(),
            spawned_ms,
            address: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Fails, naming the log, if weir has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "weir exited early with {status}; see {}",
                self.log.display()
            );
        }
        Ok(())
    }

    /// Waits until `needle` occurs in the log at least `times` times.
    pub fn wait_log(&mut self, needle: &str, times: usize, within: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while self.log_text().matches(needle).count() < times {
            self.check_alive()?;
            if start.elapsed() > within {
                bail!(
                    "{needle:?} not logged {times} time(s) within {within:?}; see {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The text of `/metrics`.
    pub fn metrics(&mut self) -> anyhow::Result<String> {
        if self.address.is_none() {
            self.wait_log("on http://", 1, Duration::from_secs(60))?;
            self.address = self.log_text().lines().find_map(|l| {
                l.split("on http://")
                    .nth(1)?
                    .split_whitespace()
                    .next()
                    .map(str::to_owned)
            });
        }
        let address = self
            .address
            .as_deref()
            .ok_or_else(|| anyhow!("no metrics address in {}", self.log.display()))?;
        crate::http::get(address, "/metrics").map(|(_, body)| body)
    }

    /// The sum of metric `name` over its label sets (0 when absent).
    pub fn metric(&mut self, name: &str) -> anyhow::Result<f64> {
        Ok(metric_sum(&self.metrics()?, name))
    }

    /// Peak RSS (VmHWM) and RSS now (VmRSS), in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let pid = self.pid();
        (
            peak_rss(pid).unwrap_or_default(),
            rss(pid).unwrap_or_default(),
        )
    }

    /// SIGTERM, then waits up to 5 minutes: the exit status and how long it took.
    pub fn stop(mut self) -> anyhow::Result<(ExitStatus, Duration)> {
        let mut child = self.child.take().ok_or_else(|| anyhow!("not running"))?;
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let asked = Instant::now();
        let deadline = asked + Duration::from_secs(300);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((status, asked.elapsed()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "weir did not stop within 5 minutes of SIGTERM; see {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The time of a log line (tracing's RFC 3339 prefix), ms since the epoch.
pub fn line_ms(line: &str) -> Option<i64> {
    let stamp = line.split_whitespace().next()?;
    chrono::DateTime::parse_from_rfc3339(stamp)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The time of the first log line holding `needle`.
pub fn first_line_ms(log: &str, needle: &str) -> Option<i64> {
    log.lines().find(|l| l.contains(needle)).and_then(line_ms)
}

/// One "restored state in Xs (A from the local store, B from the changelog…)" line.
#[derive(Debug, Clone, Copy)]
pub struct RestoreLine {
    pub at_ms: i64,
    /// The changelog read alone (the local store's load is not in it).
    pub seconds: f64,
    pub from_store: u64,
    pub from_changelog: u64,
}

/// Every restore line of a log, in order.
pub fn restore_lines(log: &str) -> Vec<RestoreLine> {
    log.lines()
        .filter_map(|line| {
            let rest = line.split("restored state in ").nth(1)?;
            let (seconds, rest) = rest.split_once("s (")?;
            let (from_store, rest) = rest.split_once(" from the local store, ")?;
            let (from_changelog, _) = rest.split_once(" from the changelog")?;
            Some(RestoreLine {
                at_ms: line_ms(line)?,
                seconds: seconds.parse().ok()?,
                from_store: from_store.parse().ok()?,
                from_changelog: from_changelog.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_sum_over_labels_and_match_whole_names() {
        let text = "# HELP weir_timers_pending x\n\
                    weir_timers_pending{pipeline=\"c\",slot=\"0\"} 600\n\
                    weir_timers_pending{pipeline=\"c\",slot=\"1\"} 400\n\
                    weir_timers_pending_other 5\n\
                    weir_ready 1\n";
        assert_eq!(metric_sum(text, "weir_timers_pending"), 1000.0);
        assert_eq!(metric_sum(text, "weir_ready"), 1.0);
        assert_eq!(metric_sum(text, "weir_absent"), 0.0);
    }

    #[test]
    fn restore_lines_are_read_with_their_time() {
        let log = "2026-12-06T10:00:01.500000Z  INFO weir::pipeline::keyed: slot=0 partition=0 \
                   restored state in 2.250s (0 from the local store, 1000001 from the changelog)\n\
                   2026-12-06T10:00:02.000000Z  INFO weir::pipeline::keyed: restored state in \
                   0.004s (1000002 from the local store, 0 from the changelog's tail)\n";
        let lines = restore_lines(log);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].seconds, 2.25);
        assert_eq!(lines[0].from_changelog, 1_000_001);
        assert_eq!(lines[1].from_store, 1_000_002);
        assert_eq!(lines[1].at_ms - lines[0].at_ms, 500);
    }
}
