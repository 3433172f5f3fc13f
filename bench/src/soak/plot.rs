//! The plot (`rss-fds.svg`): RSS, open fds and consumer lag over time, one line per
//! weir process, the disturbances marked; plain SVG written by hand.

use std::fmt::Write as _;

use super::flatness::MIB;
use super::sampling::Sample;

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// Ticks at a round step (1, 2 or 5 times a power of ten) from 0 to the first at or
/// above `max`.
fn ticks(max: f64) -> Vec<f64> {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    let count = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

fn number(value: f64) -> String {
    if value >= 1000.0 && value.fract() == 0.0 {
        let text = format!("{value:.0}");
        let mut out = String::new();
        for (i, c) in text.chars().enumerate() {
            if i > 0 && (text.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

struct Panel<'a> {
    title: &'a str,
    /// (colour, points) of each line.
    lines: Vec<(&'a str, Vec<(f64, f64)>)>,
}

pub(super) fn plot(
    samples: &[Sample],
    lags: &[(f64, i64)],
    markers: &[(f64, String)],
    end: f64,
) -> String {
    let mut weirs: Vec<(String, u32)> = Vec::new();
    for s in samples.iter().filter(|s| s.label.starts_with("weir")) {
        if !weirs.contains(&(s.label.clone(), s.pid)) {
            weirs.push((s.label.clone(), s.pid));
        }
    }
    let line = |pick: &dyn Fn(&Sample) -> f64| -> Vec<(&str, Vec<(f64, f64)>)> {
        weirs
            .iter()
            .enumerate()
            .map(|(i, (label, pid))| {
                let points = samples
                    .iter()
                    .filter(|s| s.pid == *pid && &s.label == label)
                    .map(|s| (s.at / 60.0, pick(s)))
                    .collect();
                (COLORS[i % COLORS.len()], points)
            })
            .collect()
    };
    let panels = [
        Panel {
            title: "RSS (MiB)",
            lines: line(&|s| s.rss as f64 / MIB),
        },
        Panel {
            title: "open file descriptors",
            lines: line(&|s| s.fds as f64),
        },
        Panel {
            title: "consumer lag (records)",
            lines: vec![(
                "#555555",
                lags.iter().map(|&(t, l)| (t / 60.0, l as f64)).collect(),
            )],
        },
    ];
    let x_max = samples
        .iter()
        .map(|s| s.at)
        .chain(lags.iter().map(|l| l.0))
        .fold(end, f64::max)
        / 60.0;
    // The time axis ends with the samples.
    let x_end = x_max.max(1.0 / 60.0);
    let x_ticks: Vec<f64> = ticks(x_end).into_iter().filter(|t| *t <= x_end).collect();
    let (width, left, right) = (960.0, 80.0, 20.0);
    let (top, height, gap) = (60.0, 190.0, 70.0);
    let total = top + panels.len() as f64 * (height + gap);
    let plot_width = width - left - right;
    let x = |minutes: f64| left + minutes / x_end * plot_width;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" viewBox="0 0 {width} {total}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{left}" y="22" font-size="15" font-weight="bold">weir soak: RSS, open fds and consumer lag over time (minutes)</text>"#
    );
    // The legend: one colour per process.
    let mut legend_x = left;
    for (i, (label, pid)) in weirs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let text = format!("{label} (pid {pid})");
        let _ = writeln!(
            svg,
            r#"<rect x="{legend_x}" y="34" width="14" height="4" fill="{color}"/><text x="{}" y="40">{text}</text>"#,
            legend_x + 18.0
        );
        legend_x += 40.0 + 7.0 * text.len() as f64;
    }
    for (p, panel) in panels.iter().enumerate() {
        let y0 = top + p as f64 * (height + gap) + 20.0;
        let y_max = panel
            .lines
            .iter()
            .flat_map(|l| l.1.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        let y_ticks = ticks(y_max);
        let y_end = *y_ticks.last().unwrap_or(&1.0);
        let y = |v: f64| y0 + height - v / y_end * height;
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="{}" font-weight="bold">{}</text>"#,
            y0 - 8.0,
            panel.title
        );
        for &t in &y_ticks {
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                left + plot_width,
                left - 6.0,
                y(t) + 4.0,
                number(t),
                yy = y(t)
            );
        }
        for &t in &x_ticks {
            let _ = writeln!(
                svg,
                r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{}" y2="{}" stroke="#444"/><text x="{xx:.1}" y="{}" text-anchor="middle">{}</text>"##,
                y0 + height,
                y0 + height + 5.0,
                y0 + height + 18.0,
                number(t),
                xx = x(t)
            );
        }
        // Labels of markers close together go on lower rows.
        let mut row_ends: Vec<f64> = Vec::new();
        for (at, label) in markers {
            let xx = x(at / 60.0);
            let _ = writeln!(
                svg,
                r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{y0}" y2="{}" stroke="#999" stroke-dasharray="3,3"/>"##,
                y0 + height
            );
            if p == 0 {
                let half = 3.5 * label.len() as f64 + 3.0;
                let row = row_ends
                    .iter()
                    .position(|end| *end < xx - half)
                    .unwrap_or(row_ends.len());
                if row == row_ends.len() {
                    row_ends.push(0.0);
                }
                row_ends[row] = xx + half;
                let _ = writeln!(
                    svg,
                    r##"<text x="{:.1}" y="{}" font-size="10" fill="#666" text-anchor="middle">{label}</text>"##,
                    xx,
                    y0 + 10.0 + 11.0 * row as f64
                );
            }
        }
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{left}" y1="{y0}" y2="{}" stroke="#444"/><line x1="{left}" x2="{}" y1="{}" y2="{}" stroke="#444"/>"##,
            y0 + height,
            left + plot_width,
            y0 + height,
            y0 + height
        );
        for (color, points) in &panel.lines {
            let path: Vec<String> = points
                .iter()
                .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
                path.join(" ")
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_end_at_the_first_round_value_at_or_above_the_maximum() {
        assert_eq!(ticks(110.0), [0.0, 50.0, 100.0, 150.0]);
        assert_eq!(ticks(100.0), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(30.3), [0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(ticks(0.0).last(), Some(&1.0));
        assert_eq!(number(0.6000000000000001), "0.6");
        assert_eq!(number(100000.0), "100,000");
    }
}
