//! Flatness: per process, its RSS, fds, threads and CPU over the run, and whether
//! RSS and fds stayed flat over the second half (the least-squares trend and the
//! spread of RSS, the growth of fds), judged for the weir processes that lived
//! through it.

use super::sampling::Sample;
use super::{FLAT_FDS, FLAT_SPREAD, FLAT_TREND};

pub(super) struct ProcessStats {
    pub(super) label: String,
    pub(super) pid: u32,
    pub(super) from: f64,
    pub(super) to: f64,
    pub(super) samples: usize,
    pub(super) rss_first: f64,
    pub(super) rss_peak: f64,
    pub(super) rss_last: f64,
    /// The second half of the process's life under traffic.
    pub(super) window: (f64, f64),
    pub(super) slope_mib_h: f64,
    pub(super) spread_mib: f64,
    pub(super) mean_mib: f64,
    pub(super) fds_window: (usize, usize),
    pub(super) fds_growth: i64,
    pub(super) threads: (u64, u64),
    pub(super) cores: f64,
    /// Whether it lived through the second half of the run, and is judged.
    pub(super) judged: bool,
    /// RSS change the trend makes over the window, MiB.
    pub(super) trend_mib: f64,
    pub(super) flat: bool,
}

pub(super) const MIB: f64 = 1024.0 * 1024.0;

/// Least-squares slope of `points`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// Per process (only weir processes are judged): its samples while
/// the traffic ran, and the slope and spread over the second half of that life.
pub(super) fn process_stats(
    samples: &[Sample],
    traffic_start: f64,
    traffic_end: f64,
    every: f64,
) -> Vec<ProcessStats> {
    let run_middle = (traffic_start + traffic_end) / 2.0;
    let mut labels: Vec<(&str, u32)> = Vec::new();
    for s in samples {
        if !labels.contains(&(s.label.as_str(), s.pid)) {
            labels.push((&s.label, s.pid));
        }
    }
    labels
        .into_iter()
        .filter_map(|(label, pid)| {
            let all: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.pid == pid && s.label == label)
                .collect();
            let life: Vec<&Sample> = all
                .iter()
                .copied()
                .filter(|s| s.at >= traffic_start && s.at <= traffic_end)
                .collect();
            let (first, last) = (life.first()?, life.last()?);
            // The processes that lived through the second half of the run are judged
            // on it; the others are described on the second half of their life.
            let judged = label.starts_with("weir")
                && first.at <= run_middle + every
                && last.at >= traffic_end - 2.0 * every;
            let middle = if judged {
                run_middle
            } else {
                (first.at + last.at) / 2.0
            };
            let window: Vec<&Sample> = life.iter().copied().filter(|s| s.at >= middle).collect();
            let points: Vec<(f64, f64)> = window
                .iter()
                .map(|s| (s.at / 3600.0, s.rss as f64 / MIB))
                .collect();
            let rss: Vec<f64> = window.iter().map(|s| s.rss as f64 / MIB).collect();
            let max = rss.iter().copied().fold(f64::MIN, f64::max);
            let min = rss.iter().copied().fold(f64::MAX, f64::min);
            let mean = rss.iter().sum::<f64>() / rss.len().max(1) as f64;
            let fds: Vec<usize> = window.iter().map(|s| s.fds).collect();
            let fds_window = (
                fds.iter().copied().min().unwrap_or(0),
                fds.iter().copied().max().unwrap_or(0),
            );
            // Growth of fds: the mean of the window's last quarter minus its first's.
            let quarter = (fds.len() / 4).max(1);
            let head = fds[..quarter].iter().sum::<usize>() as f64 / quarter as f64;
            let tail = fds[fds.len() - quarter..].iter().sum::<usize>() as f64 / quarter as f64;
            let fds_growth = (tail - head).round() as i64;
            let slope_mib_h = slope(&points);
            let window_hours = points.last()?.0 - points.first()?.0;
            let spread_mib = max - min;
            let all_first = all.first()?;
            let all_last = all.last()?;
            Some(ProcessStats {
                label: label.to_owned(),
                pid,
                from: all_first.at,
                to: all_last.at,
                samples: all.len(),
                rss_first: all_first.rss as f64 / MIB,
                rss_peak: all.iter().map(|s| s.rss).max().unwrap_or(0) as f64 / MIB,
                rss_last: all_last.rss as f64 / MIB,
                window: (window.first()?.at, window.last()?.at),
                slope_mib_h,
                spread_mib,
                mean_mib: mean,
                fds_window,
                fds_growth,
                threads: (
                    life.iter().map(|s| s.threads).min().unwrap_or(0),
                    life.iter().map(|s| s.threads).max().unwrap_or(0),
                ),
                cores: (last.cpu - first.cpu) / (last.at - first.at).max(1.0),
                judged,
                trend_mib: slope_mib_h * (window_hours),
                flat: slope_mib_h * window_hours <= FLAT_TREND * mean
                    && spread_mib <= FLAT_SPREAD * mean
                    && fds_growth <= FLAT_FDS,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_the_least_squares_fit() {
        assert!((slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) - 2.0).abs() < 1e-12);
        assert_eq!(slope(&[(1.0, 7.0)]), 0.0);
        assert_eq!(slope(&[(1.0, 7.0), (1.0, 9.0)]), 0.0);
    }
}
