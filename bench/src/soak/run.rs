//! The run from start to end: checks and copies its inputs, creates the topics,
//! starts the samplers, weir and the traffic, performs the disturbances on their
//! schedule, stops the traffic, waits for the lag to reach 0, reads the outputs back
//! and writes the plot and the report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{Producer, ThreadedProducer};

use super::accounting::account;
use super::disturb::{Soak, Topics, schedule, terminate};
use super::flatness::process_stats;
use super::input::{Deliveries, NOT_SENT, offer};
use super::plot::plot;
use super::report::Report;
use super::sampling::{group_lag, sample_lag, sample_processes};
use super::{DRAIN_WAIT, SoakArgs};
use crate::driver::{create_topics, group_reader, input_producer_config};

pub fn soak(args: &SoakArgs) -> anyhow::Result<()> {
    let seconds = args.minutes * 60.0;
    if seconds <= 0.0 || args.rate == 0 {
        bail!("--minutes and --rate must be positive");
    }
    for (path, fix) in [
        (&args.weir, "build it with `cargo build --release -p weir`"),
        (
            &args.other_projector,
            "build it with `cargo build --target wasm32-wasip2 -p ui-projector` (scripts/soak does)",
        ),
    ] {
        if !path.exists() {
            bail!("{} is missing; {fix}", path.display());
        }
    }
    for plugin in ["task_validator", "reminder_deriver", "ui_projector"] {
        let path = args.plugins.join(format!("{plugin}.wasm"));
        if !path.exists() {
            bail!(
                "{} is missing; build the plugins with scripts/build-plugins",
                path.display()
            );
        }
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    if unsafe { libc::kill(args.broker_pid, 0) } != 0 {
        bail!("no broker process {} to pause", args.broker_pid);
    }

    let out = &args.out;
    let config_dir = out.join("config");
    let plugins = out.join("plugins");
    let logs = out.join("logs");
    let builds = out.join("builds");
    for dir in [&config_dir, &plugins, &logs, &builds] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // weir runs copies of the plugins, so that replacing one never touches the build
    // output; the binary and both projector builds are copied too, so that a rebuild
    // during the run changes nothing (a restarted instance is the same weir).
    for plugin in ["task_validator", "reminder_deriver", "ui_projector"] {
        let name = format!("{plugin}.wasm");
        std::fs::copy(args.plugins.join(&name), plugins.join(&name))?;
    }
    let plugins = std::fs::canonicalize(&plugins)?;
    let weir = builds.join("weir");
    std::fs::copy(&args.weir, &weir)?;
    let projector_builds = [
        builds.join("ui_projector.release.wasm"),
        builds.join("ui_projector.other.wasm"),
    ];
    std::fs::copy(args.plugins.join("ui_projector.wasm"), &projector_builds[0])?;
    std::fs::copy(&args.other_projector, &projector_builds[1])?;

    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let base = format!("soak-{stamp}");
    let topics = Topics {
        input: format!("{base}-task-events"),
        reminders: format!("{base}-reminders"),
        updates: format!("{base}-task-updates"),
        reminders_dlq: format!("{base}-reminders.dlq"),
        updates_dlq: format!("{base}-ui-sync.dlq"),
        group: format!("{base}-weir-todo"),
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .create()?;
    create_topics(&admin, &topics.all())?;
    let producer = Arc::new(
        input_producer_config(&args.brokers)
            // Never give an input up, whatever the broker does.
            .set("message.timeout.ms", "0")
            .create_with_context::<_, ThreadedProducer<Deliveries>>(Deliveries::default())?,
    );

    let mut soak = Soak {
        args,
        origin: Instant::now(),
        traffic_start: 0.0,
        config: config_dir.join("todo.toml"),
        plugins,
        logs,
        lead_time: 0,
        other_build: false,
        instances: Vec::new(),
        // The broker and this driver are sampled for their CPU: the machine is shared.
        watched: Arc::new(Mutex::new(vec![
            ("broker".into(), args.broker_pid as u32),
            ("driver".into(), std::process::id()),
        ])),
        timeline: Vec::new(),
        disruptions: Vec::new(),
        replacements: 0,
        weir,
        projector_builds,
        logged: Vec::new(),
        topics,
    };
    soak.write_config()?;
    let every = Duration::from_secs(args.sample_every.max(1));
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let process_sampler = {
        let (origin, watched, stop) = (soak.origin, soak.watched.clone(), stop_sampling.clone());
        let csv = out.join("samples.csv");
        std::thread::spawn(move || sample_processes(origin, &watched, every, &csv, &stop))
    };
    let lag_sampler = {
        let (origin, stop) = (soak.origin, stop_sampling.clone());
        let consumer = group_reader(&args.brokers, &soak.topics.group)?;
        let input = soak.topics.input.clone();
        let csv = out.join("lag.csv");
        std::thread::spawn(move || sample_lag(origin, &consumer, &input, every, &csv, &stop))
    };

    soak.start("weir-a")?;
    soak.await_assignment("weir-a");

    // The traffic, and the disturbances on their schedule.
    let stop_traffic = Arc::new(AtomicBool::new(false));
    soak.traffic_start = soak.now();
    soak.note(
        "traffic starts",
        format!(
            "{} events/s for {} min to {}",
            args.rate, args.minutes, soak.topics.input
        ),
        true,
    );
    let sender = {
        let (producer, stop) = (producer.clone(), stop_traffic.clone());
        let (input, rate, users) = (soak.topics.input.clone(), args.rate, args.users);
        let expected = (seconds * rate as f64 * 1.05) as usize;
        std::thread::spawn(move || offer(&producer, &input, rate, users, expected, &stop))
    };
    let plan = schedule(seconds, args.reloads);
    let mut next = 0;
    loop {
        let elapsed = soak.now() - soak.traffic_start;
        if elapsed >= seconds {
            break;
        }
        if next < plan.len() && elapsed >= plan[next].0 {
            soak.perform(plan[next].1)?;
            next += 1;
            continue;
        }
        soak.check_alive()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    for &(_, action) in &plan[next..] {
        soak.note(
            format!("{action:?}"),
            "not done: the run ended first (earlier steps took longer than planned)",
            false,
        );
    }
    stop_traffic.store(true, Ordering::Relaxed);
    let mut ledger = sender
        .join()
        .map_err(|_| anyhow!("the traffic thread panicked"))?;
    producer
        .flush(Duration::from_secs(120))
        .context("flushing the input")?;
    let traffic_end = soak.now();
    let failed = producer.context().failed.lock().unwrap().clone();
    for &index in &failed {
        ledger.kind[index] |= NOT_SENT;
    }
    let sent = ledger.kind.len();
    soak.note(
        "traffic stops",
        format!(
            "{sent} inputs in {:.0} s ({:.0}/s), {} undelivered",
            traffic_end - soak.traffic_start,
            sent as f64 / (traffic_end - soak.traffic_start),
            failed.len()
        ),
        failed.is_empty(),
    );

    // Lag back to 0.
    let reader = group_reader(&args.brokers, &soak.topics.group)?;
    let drain_start = Instant::now();
    let mut drained = None;
    while drain_start.elapsed() < DRAIN_WAIT {
        soak.check_alive()?;
        if group_lag(&reader, &soak.topics.input, Duration::from_secs(5)) == Ok(0) {
            drained = Some(drain_start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    match drained {
        Some(took) => soak.note(
            "consumer lag 0",
            format!("{:.1} s after the traffic stopped", took.as_secs_f64()),
            true,
        ),
        None => soak.note(
            "consumer lag 0",
            format!(
                "still {} after {} s",
                group_lag(&reader, &soak.topics.input, Duration::from_secs(5))
                    .map_or("unknown".into(), |l| l.to_string()),
                DRAIN_WAIT.as_secs()
            ),
            false,
        ),
    }
    // A few more samples of the idle processes.
    std::thread::sleep(every * 3);
    stop_sampling.store(true, Ordering::Relaxed);
    let samples = process_sampler
        .join()
        .map_err(|_| anyhow!("the /proc sampler panicked"))??;
    let lags = lag_sampler
        .join()
        .map_err(|_| anyhow!("the lag sampler panicked"))??;

    for mut instance in std::mem::take(&mut soak.instances) {
        let pid = instance.child.id();
        let started = Instant::now();
        let status = terminate(&mut instance.child)?;
        let ok = status.is_some_and(|s| s.success());
        soak.note(
            format!("SIGTERM {} (pid {pid})", instance.label),
            status.map_or("did not exit within 60 s; killed".into(), |s| {
                format!("{s} after {:.1} s", started.elapsed().as_secs_f64())
            }),
            ok,
        );
    }

    eprintln!("soak: reading the outputs back...");
    let accounting = account(args, &soak.topics, &ledger)?;
    let stats = process_stats(
        &samples,
        soak.traffic_start,
        traffic_end,
        every.as_secs_f64(),
    );
    let markers: Vec<(f64, String)> = soak
        .timeline
        .iter()
        .filter_map(|e| marker(&e.what).map(|m| (e.at, m.to_owned())))
        .collect();
    std::fs::write(
        out.join("rss-fds.svg"),
        plot(&samples, &lags, &markers, traffic_end),
    )?;
    let report = Report {
        args,
        soak: &soak,
        accounting: &accounting,
        stats: &stats,
        lags: &lags,
        traffic_end,
        sent,
        undelivered: failed.len(),
    };
    let (text, ok) = report.markdown();
    let path = out.join("report.md");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    println!("{text}");
    eprintln!("report written to {}", path.display());
    if !ok {
        bail!("the soak run failed; see {}", path.display());
    }
    Ok(())
}

/// The short label of a timeline event on the plot, for the events worth marking.
fn marker(what: &str) -> Option<&'static str> {
    if what.starts_with("reload") {
        Some("r")
    } else if what.starts_with("SIGKILL") {
        Some("kill")
    } else if what == "weir-b started" {
        Some("join")
    } else if what.starts_with("SIGSTOP") {
        Some("pause")
    } else if what == "SIGCONT broker" {
        Some("cont")
    } else if what.starts_with("SIGTERM weir-b") {
        Some("leave")
    } else if what == "traffic stops" {
        Some("stop")
    } else {
        None
    }
}
