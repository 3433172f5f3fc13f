//! Sampling, each on its own thread until told to stop: RSS, open fds, threads and
//! CPU time of every watched process from /proc (`samples.csv`), and the group's
//! consumer lag from the broker (`lag.csv`).

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;

use super::clock;
use crate::driver::committed;
use crate::proc::{cpu_time, open_fds, rss, threads};

/// One sample of one process.
pub(super) struct Sample {
    pub(super) at: f64,
    pub(super) label: String,
    pub(super) pid: u32,
    pub(super) rss: u64,
    pub(super) fds: usize,
    pub(super) threads: u64,
    pub(super) cpu: f64,
}

/// The processes to sample: (label, pid). The broker and the driver are sampled too,
/// for their CPU.
pub(super) type Watched = Arc<Mutex<Vec<(String, u32)>>>;

pub(super) fn sample_processes(
    origin: Instant,
    watched: &Watched,
    every: Duration,
    csv: &Path,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<Sample>> {
    let mut file = std::fs::File::create(csv)?;
    writeln!(file, "elapsed_s,process,pid,rss_kib,fds,threads,cpu_s")?;
    let mut samples = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let at = origin.elapsed().as_secs_f64();
        let processes = watched.lock().unwrap().clone();
        for (label, pid) in processes {
            let (Some(rss), Some(fds), Some(threads), Some(cpu)) =
                (rss(pid), open_fds(pid), threads(pid), cpu_time(pid))
            else {
                continue;
            };
            let cpu = cpu.as_secs_f64();
            writeln!(
                file,
                "{at:.1},{label},{pid},{},{fds},{threads},{cpu:.2}",
                rss / 1024
            )?;
            samples.push(Sample {
                at,
                label,
                pid,
                rss,
                fds,
                threads,
                cpu,
            });
        }
        file.flush()?;
        next += every;
        while Instant::now() < next && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(samples)
}

/// The group's lag on `topic`: high watermarks minus committed offsets.
pub(super) fn group_lag(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> KafkaResult<i64> {
    let committed = committed(consumer, topic, timeout)?;
    let mut lag = 0;
    for (partition, committed) in committed.iter().enumerate() {
        let (_, high) = consumer.fetch_watermarks(topic, partition as i32, timeout)?;
        lag += high - committed;
    }
    Ok(lag)
}

pub(super) fn sample_lag(
    origin: Instant,
    consumer: &BaseConsumer,
    topic: &str,
    every: Duration,
    csv: &Path,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<(f64, i64)>> {
    let mut file = std::fs::File::create(csv)?;
    writeln!(file, "elapsed_s,lag")?;
    let mut samples = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let at = origin.elapsed().as_secs_f64();
        // A frozen broker answers nothing: that sample is left out.
        match group_lag(consumer, topic, every.min(Duration::from_secs(4))) {
            Ok(lag) => {
                writeln!(file, "{at:.1},{lag}")?;
                file.flush()?;
                samples.push((at, lag));
            }
            Err(error) => eprintln!("soak {}: no lag sample: {error}", clock(at)),
        }
        next += every;
        while Instant::now() < next && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(samples)
}
