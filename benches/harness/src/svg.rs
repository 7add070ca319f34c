//! docs/benchmarks.svg: a horizontal bar chart of median events/s per workload and system, on a
//! log scale (the systems span four orders of magnitude). Hand-written SVG, no dependencies.

use std::fmt::Write as _;

use crate::report::fmt_num;
use crate::results::{Kind, Results};

const LABEL_WIDTH: f64 = 190.0;
const CHART_WIDTH: f64 = 560.0;
const VALUE_WIDTH: f64 = 90.0;
const BAR_HEIGHT: f64 = 11.0;
const BAR_GAP: f64 = 2.0;
const GROUP_GAP: f64 = 12.0;
const TOP: f64 = 58.0;
const BOTTOM: f64 = 30.0;

/// Bar colour per system; anything else is grey.
fn colour(system: &str) -> &'static str {
    match system {
        "cairn" => "#e8590c",
        "postgres" => "#336791",
        "sqlite" => "#4dabf7",
        "fjall" => "#7950f2",
        "redis" => "#c92a2a",
        crate::report::BLAKE3 => "#495057",
        _ => "#adb5bd",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub fn render(results: &Results) -> String {
    let groups: Vec<(&str, Vec<(&str, f64)>)> = results
        .tables
        .iter()
        .filter(|t| t.kind != Kind::Reopen)
        .map(|t| {
            let bars = t
                .cells
                .iter()
                .filter_map(|c| Some((c.system.as_str(), c.median()?.events_per_second)))
                .filter(|(_, v)| *v > 0.0)
                .collect::<Vec<_>>();
            (t.id.as_str(), bars)
        })
        .filter(|(_, bars)| !bars.is_empty())
        .collect();
    let values = groups.iter().flat_map(|(_, b)| b.iter().map(|(_, v)| *v));
    let lo = values.clone().fold(f64::INFINITY, f64::min).max(1.0).log10().floor();
    let hi = values.fold(1.0, f64::max).log10().ceil().max(lo + 1.0);
    let x = |v: f64| LABEL_WIDTH + (v.max(1.0).log10() - lo) / (hi - lo) * CHART_WIDTH;
    let bars: usize = groups.iter().map(|(_, b)| b.len()).sum();
    let height = TOP + BOTTOM + bars as f64 * (BAR_HEIGHT + BAR_GAP) + groups.len() as f64 * GROUP_GAP;
    let width = LABEL_WIDTH + CHART_WIDTH + VALUE_WIDTH;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="{LABEL_WIDTH}" y="18" font-size="14" font-weight="bold">Events per second: durable appends, reads (log scale, median; higher is better)</text>"#
    );
    // Legend.
    let mut lx = LABEL_WIDTH;
    let mut seen = Vec::new();
    for (_, b) in &groups {
        for (sys, _) in b {
            if !seen.contains(sys) {
                seen.push(*sys);
            }
        }
    }
    for sys in &seen {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="28" width="10" height="10" fill="{}"/><text x="{}" y="37">{}</text>"#,
            colour(sys),
            lx + 14.0,
            escape(sys)
        );
        lx += 24.0 + 6.5 * sys.len() as f64;
    }
    // Decade grid lines.
    let bottom = height - BOTTOM;
    let mut decade = lo;
    while decade <= hi {
        let gx = x(10f64.powf(decade));
        let _ = writeln!(s, r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{bottom}" stroke="#dee2e6"/>"##);
        let _ = writeln!(
            s,
            r##"<text x="{gx:.1}" y="{}" text-anchor="middle" fill="#495057">{}</text>"##,
            bottom + 14.0,
            decade_label(decade)
        );
        decade += 1.0;
    }
    let mut y = TOP;
    for (id, b) in &groups {
        let group_h = b.len() as f64 * (BAR_HEIGHT + BAR_GAP);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end" font-weight="bold">{}</text>"#,
            LABEL_WIDTH - 8.0,
            y + group_h / 2.0 + 4.0,
            escape(id)
        );
        for (sys, v) in b {
            let w = (x(*v) - LABEL_WIDTH).max(1.0);
            let _ = writeln!(
                s,
                r#"<rect x="{LABEL_WIDTH}" y="{y:.1}" width="{w:.1}" height="{BAR_HEIGHT}" fill="{}"><title>{}: {} events/s</title></rect>"#,
                colour(sys),
                escape(sys),
                fmt_num(*v)
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="9">{}</text>"#,
                LABEL_WIDTH + w + 3.0,
                y + BAR_HEIGHT - 2.0,
                fmt_num(*v)
            );
            y += BAR_HEIGHT + BAR_GAP;
        }
        y += GROUP_GAP;
    }
    let _ = writeln!(s, "</svg>");
    s
}

fn decade_label(d: f64) -> String {
    match d as i32 {
        0 => "1".into(),
        1 => "10".into(),
        2 => "100".into(),
        3 => "1k".into(),
        4 => "10k".into(),
        5 => "100k".into(),
        6 => "1M".into(),
        7 => "10M".into(),
        8 => "100M".into(),
        9 => "1G".into(),
        n => format!("1e{n}"),
    }
}
