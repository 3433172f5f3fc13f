//! The run's state (`Soak`): its topics, the weir instances it starts, watches and
//! stops, the timeline of what happened, and the disturbances themselves (hot
//! reloads, a SIGKILL and restart, a second instance joining and leaving, a broker
//! pause) on their schedule.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::logs::{count_in_log, last_assignment, log_text, wait_in_log};
use super::sampling::Watched;
use super::{ASSIGN_WAIT, LEAD_TIMES, RELOAD_WAIT, SoakArgs, clock};
use crate::driver::{TodoTopics, todo_pipeline, weir_config_head};

/// A weir process started by the run, and its log.
pub(super) struct Instance {
    pub(super) label: String,
    pub(super) child: Child,
    pub(super) log: PathBuf,
}

/// One line of the timeline.
pub(super) struct Event {
    pub(super) at: f64,
    pub(super) what: String,
    pub(super) outcome: String,
    pub(super) ok: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Action {
    /// Reload number n (even: config change, odd: plugin file).
    Reload(usize),
    Kill,
    Join,
    PauseBroker,
    Leave,
}

impl Action {
    /// Disruptions whose lag the report looks at.
    pub(super) fn short(self) -> &'static str {
        match self {
            Action::Reload(_) => "reload",
            Action::Kill => "SIGKILL + restart",
            Action::Join => "second instance joins",
            Action::PauseBroker => "broker paused",
            Action::Leave => "second instance leaves",
        }
    }
}

/// When each disturbance happens, in seconds after the traffic starts: the
/// disruptions in the first half (so that the second half shows the steady state
/// with reloads only), the reloads evenly spread between them.
pub(super) fn schedule(seconds: f64, reloads: usize) -> Vec<(f64, Action)> {
    let mut plan = vec![
        (0.10 * seconds, Action::Kill),
        (0.20 * seconds, Action::Join),
        (0.30 * seconds, Action::PauseBroker),
        (0.40 * seconds, Action::Leave),
    ];
    for n in 0..reloads {
        plan.push((
            (n as f64 + 0.5) / reloads as f64 * seconds,
            Action::Reload(n),
        ));
    }
    plan.sort_by(|a, b| a.0.total_cmp(&b.0));
    plan
}

pub(super) struct Topics {
    pub(super) input: String,
    pub(super) reminders: String,
    pub(super) reminders_dlq: String,
    pub(super) updates: String,
    pub(super) updates_dlq: String,
    pub(super) group: String,
}

impl Topics {
    pub(super) fn todo(&self) -> TodoTopics<'_> {
        TodoTopics {
            input: &self.input,
            group: &self.group,
            reminders: &self.reminders,
            reminders_dlq: &self.reminders_dlq,
            updates: &self.updates,
            updates_dlq: &self.updates_dlq,
        }
    }

    pub(super) fn all(&self) -> [&str; 5] {
        [
            &self.input,
            &self.reminders,
            &self.updates,
            &self.reminders_dlq,
            &self.updates_dlq,
        ]
    }
}

pub(super) struct Soak<'a> {
    pub(super) args: &'a SoakArgs,
    pub(super) origin: Instant,
    /// Seconds after `origin` when the traffic started.
    pub(super) traffic_start: f64,
    pub(super) topics: Topics,
    pub(super) config: PathBuf,
    pub(super) plugins: PathBuf,
    pub(super) logs: PathBuf,
    pub(super) lead_time: usize,
    pub(super) other_build: bool,
    pub(super) instances: Vec<Instance>,
    pub(super) watched: Watched,
    pub(super) timeline: Vec<Event>,
    /// (seconds after origin, action) of each disruption, for the lag table.
    pub(super) disruptions: Vec<(f64, Action)>,
    pub(super) replacements: usize,
    /// The weir binary (a copy).
    pub(super) weir: PathBuf,
    /// Copies of the release and the other build of the ui-projector.
    pub(super) projector_builds: [PathBuf; 2],
    /// Every instance started, in order.
    pub(super) logged: Vec<String>,
}

impl Soak<'_> {
    pub(super) fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    pub(super) fn note(&mut self, what: impl Into<String>, outcome: impl Into<String>, ok: bool) {
        let event = Event {
            at: self.now(),
            what: what.into(),
            outcome: outcome.into(),
            ok,
        };
        eprintln!(
            "soak {} {}{}: {}",
            clock(event.at),
            if ok { "" } else { "FAILED " },
            event.what,
            event.outcome
        );
        self.timeline.push(event);
    }

    pub(super) fn write_config(&self) -> anyhow::Result<()> {
        let text = weir_config_head(&self.args.brokers, &self.topics.all())
            + &todo_pipeline(
                &self.topics.todo(),
                &self.plugins,
                LEAD_TIMES[self.lead_time],
            );
        // Written aside and renamed over, so weir never reads half a file.
        let aside = self.config.with_extension("toml.new");
        std::fs::write(&aside, text)?;
        std::fs::rename(&aside, &self.config)?;
        Ok(())
    }

    pub(super) fn start(&mut self, label: &str) -> anyhow::Result<()> {
        let log = self.logs.join(format!("{label}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(&self.weir);
        command
            .args(["run", "--watch", "--config"])
            .arg(&self.config)
            .env("WEIR_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        // SAFETY: prctl is async-signal-safe. weir dies with this driver, so a
        // failed soak leaves no instance behind in the group.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.weir.display()))?;
        let pid = child.id();
        self.watched.lock().unwrap().push((label.to_owned(), pid));
        self.logged.push(label.to_owned());
        self.instances.push(Instance {
            label: label.to_owned(),
            child,
            log,
        });
        self.note(format!("{label} started"), format!("pid {pid}"), true);
        Ok(())
    }

    fn forget(&mut self, pid: u32) {
        self.watched.lock().unwrap().retain(|(_, p)| *p != pid);
    }

    fn instance(&self, label: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.label == label)
    }

    /// Waits for the first assignment of the newest instance.
    pub(super) fn await_assignment(&mut self, label: &str) {
        let Some(i) = self.instance(label) else {
            return;
        };
        let log = self.instances[i].log.clone();
        match wait_in_log(&log, "partitions assigned", 0, ASSIGN_WAIT) {
            Some(took) => self.note(
                format!("{label} assigned"),
                format!(
                    "partitions {} after {:.1} s",
                    last_assignment(&log),
                    took.as_secs_f64()
                ),
                true,
            ),
            None => self.note(
                format!("{label} assigned"),
                format!("no assignment within {} s", ASSIGN_WAIT.as_secs()),
                false,
            ),
        }
    }

    fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        let Some(i) = self.instance("weir-a") else {
            self.note("SIGKILL weir-a", "weir-a is not running", false);
            return Ok(());
        };
        let mut victim = self.instances.remove(i);
        let pid = victim.child.id();
        victim.child.kill()?;
        let status = victim.child.wait()?;
        self.forget(pid);
        self.note(
            format!("SIGKILL weir-a (pid {pid})"),
            format!("{status}"),
            true,
        );
        self.start("weir-a2")?;
        self.await_assignment("weir-a2");
        Ok(())
    }

    fn join(&mut self) -> anyhow::Result<()> {
        self.start("weir-b")?;
        self.await_assignment("weir-b");
        std::thread::sleep(Duration::from_secs(2));
        let shares: Vec<String> = self
            .instances
            .iter()
            .map(|i| format!("{} {}", i.label, last_assignment(&i.log)))
            .collect();
        self.note("group after the join", shares.join(", "), true);
        Ok(())
    }

    fn pause_broker(&mut self) {
        let pid = self.args.broker_pid;
        // SAFETY: kill has no memory-safety preconditions.
        let frozen = unsafe { libc::kill(pid, libc::SIGSTOP) } == 0;
        if !frozen {
            self.note(
                format!("SIGSTOP broker (pid {pid})"),
                std::io::Error::last_os_error().to_string(),
                false,
            );
            return;
        }
        self.note(
            format!("SIGSTOP broker (pid {pid})"),
            format!("frozen for {} s", self.args.pause),
            true,
        );
        let resume = BrokerResume(pid);
        std::thread::sleep(Duration::from_secs(self.args.pause));
        drop(resume);
        let alive = self.instances.len();
        self.note(
            "SIGCONT broker",
            format!("resumed; {alive} weir instance(s) running"),
            true,
        );
    }

    fn leave(&mut self) -> anyhow::Result<()> {
        let Some(i) = self.instance("weir-b") else {
            self.note("SIGTERM weir-b", "weir-b is not running", false);
            return Ok(());
        };
        let mut leaver = self.instances.remove(i);
        let pid = leaver.child.id();
        let others: Vec<(String, PathBuf, usize)> = self
            .instances
            .iter()
            .map(|i| {
                (
                    i.label.clone(),
                    i.log.clone(),
                    count_in_log(&i.log, "partitions assigned"),
                )
            })
            .collect();
        let started = Instant::now();
        let status = terminate(&mut leaver.child)?;
        self.forget(pid);
        match status {
            Some(status) => self.note(
                format!("SIGTERM weir-b (pid {pid})"),
                format!("{status} after {:.1} s", started.elapsed().as_secs_f64()),
                status.success(),
            ),
            None => self.note(
                format!("SIGTERM weir-b (pid {pid})"),
                "still running 60 s later; killed",
                false,
            ),
        }
        for (label, log, before) in others {
            match wait_in_log(&log, "partitions assigned", before, ASSIGN_WAIT) {
                Some(took) => self.note(
                    format!("{label} takes over"),
                    format!(
                        "partitions {} after {:.1} s",
                        last_assignment(&log),
                        took.as_secs_f64()
                    ),
                    true,
                ),
                None => self.note(format!("{label} takes over"), "no new assignment", false),
            }
        }
        Ok(())
    }

    fn reload(&mut self, n: usize) -> anyhow::Result<()> {
        // Only instances already watching can see the change.
        let watching: Vec<(String, PathBuf, usize, usize)> = self
            .instances
            .iter()
            .filter(|i| log_text(&i.log).contains("for changes"))
            .map(|i| {
                (
                    i.label.clone(),
                    i.log.clone(),
                    count_in_log(&i.log, "config change applied"),
                    count_in_log(&i.log, "plugin reloaded"),
                )
            })
            .collect();
        let changed = Instant::now();
        let (what, needle) = if n.is_multiple_of(2) {
            let old = LEAD_TIMES[self.lead_time];
            self.lead_time = 1 - self.lead_time;
            self.write_config()?;
            (
                format!(
                    "reload {}: config, reminder-deriver lead-time {old} -> {}",
                    n + 1,
                    LEAD_TIMES[self.lead_time]
                ),
                "config change applied",
            )
        } else {
            self.other_build = !self.other_build;
            let (source, name) = if self.other_build {
                (&self.projector_builds[1], "the other build")
            } else {
                (&self.projector_builds[0], "the release build")
            };
            // Copied over the running file in place, as `cp` does.
            std::fs::copy(source, self.plugins.join("ui_projector.wasm"))
                .with_context(|| format!("copying {}", source.display()))?;
            (
                format!("reload {}: ui_projector.wasm <- {name}", n + 1),
                "plugin reloaded",
            )
        };
        let mut outcomes = Vec::new();
        let mut ok = !watching.is_empty();
        for (label, log, config_before, plugin_before) in watching {
            let before = if needle == "plugin reloaded" {
                plugin_before
            } else {
                config_before
            };
            let remaining = RELOAD_WAIT.saturating_sub(changed.elapsed());
            match wait_in_log(&log, needle, before, remaining) {
                Some(_) => outcomes.push(format!(
                    "applied by {label} ({:.1} s)",
                    changed.elapsed().as_secs_f64()
                )),
                None => {
                    ok = false;
                    outcomes.push(format!(
                        "NOT applied by {label} within {} s",
                        RELOAD_WAIT.as_secs()
                    ));
                }
            }
        }
        if outcomes.is_empty() {
            outcomes.push("no instance was watching".into());
        }
        self.note(what, outcomes.join("; "), ok);
        Ok(())
    }

    /// Notes instances that exited on their own; starts a replacement when none is
    /// left, so that the run can still be accounted for.
    pub(super) fn check_alive(&mut self) -> anyhow::Result<()> {
        let mut exited = Vec::new();
        for (i, instance) in self.instances.iter_mut().enumerate() {
            if let Some(status) = instance.child.try_wait()? {
                exited.push((i, status));
            }
        }
        for (i, status) in exited.into_iter().rev() {
            let instance = self.instances.remove(i);
            self.forget(instance.child.id());
            self.note(
                format!("{} exited on its own", instance.label),
                format!("{status}; see {}", instance.log.display()),
                false,
            );
        }
        if self.instances.is_empty() {
            self.replacements += 1;
            let label = format!("weir-r{}", self.replacements);
            self.start(&label)?;
            self.await_assignment(&label);
        }
        Ok(())
    }

    pub(super) fn perform(&mut self, action: Action) -> anyhow::Result<()> {
        if !matches!(action, Action::Reload(_)) {
            self.disruptions.push((self.now(), action));
        }
        match action {
            Action::Reload(n) => self.reload(n),
            Action::Kill => self.kill_and_restart(),
            Action::Join => self.join(),
            Action::PauseBroker => {
                self.pause_broker();
                Ok(())
            }
            Action::Leave => self.leave(),
        }
    }
}

/// SIGTERM, then the exit status; `None` when the process was still running 60 s
/// later (it is then killed).
pub(super) fn terminate(child: &mut Child) -> anyhow::Result<Option<std::process::ExitStatus>> {
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGCONT to the broker when dropped, even when the soak fails mid-pause.
struct BrokerResume(i32);

impl Drop for BrokerResume {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disruptions_fall_in_the_first_half_between_reloads() {
        let plan = schedule(1800.0, 10);
        assert_eq!(plan.len(), 14);
        assert!(plan.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            plan.iter()
                .filter(|(_, a)| !matches!(a, Action::Reload(_)))
                .all(|(at, _)| *at < 900.0)
        );
    }
}
