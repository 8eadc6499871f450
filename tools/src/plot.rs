//! Recall against throughput as an SVG plot (`eval --plot`, `tune --plot`),
//! in the style of ann-benchmarks: recall@k on x, queries per second on a
//! logarithmic y axis, one curve per series, the Pareto frontier over all
//! points drawn thick beneath them, and target recalls as vertical lines.
//!
//! Only plotters's SVG backend is used: without its `ttf` and `ab_glyph`
//! features it measures text with a fixed estimate and writes `<text>`
//! elements, which the viewer renders with its own fonts, so no font file,
//! fontconfig or freetype is needed to draw.

use plotters::prelude::*;
use std::path::Path;

/// One curve: a name for the legend and its points in drawing order.
pub struct Series {
    /// Legend entry, e.g. `int8, oversample 2`.
    pub name: String,
    /// `(recall, qps, label)`: recall in `[0, 1]`, queries per second
    /// (positive: the axis is logarithmic), and a short label drawn beside
    /// the point (e.g. `ef 32`; empty for none).
    pub points: Vec<(f64, f64, String)>,
}

/// Checks, before a long sweep rather than after it, that a plot can be
/// written to `path`: an `.svg` name in an existing directory.
pub fn check_path(path: &Path) -> Result<(), String> {
    if path.extension().and_then(|e| e.to_str()) != Some("svg") {
        return Err(format!(
            "--plot {}: the plot is SVG, give a file name ending in .svg",
            path.display()
        ));
    }
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = parent.filter(|d| !d.is_dir()) {
        return Err(format!(
            "cannot write plot {}: {} is not a directory",
            path.display(),
            d.display()
        ));
    }
    Ok(())
}

/// Indices of the points no other point dominates (another is at least as
/// good in both recall and QPS and better in one; higher is better in
/// both), sorted by recall, then by index. Of identical points the first is
/// kept; points with a non-finite coordinate are never on the frontier.
pub fn pareto_frontier(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    // Best recall first; of equal recall, best QPS first, then lowest index.
    order.sort_by(|&a, &b| {
        points[b]
            .0
            .total_cmp(&points[a].0)
            .then(points[b].1.total_cmp(&points[a].1))
            .then(a.cmp(&b))
    });
    let mut best_qps = f64::NEG_INFINITY;
    let mut front = Vec::new();
    for i in order {
        // Every point before this one has at least its recall: it is
        // dominated unless its QPS beats all of theirs.
        if points[i].1 > best_qps {
            best_qps = points[i].1;
            front.push(i);
        }
    }
    front.reverse();
    front
}

/// Colours of the curves, in order (Tableau 10: distinct, legible on
/// white); repeats past ten series.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Series with more points than this get no point labels (they would
/// overlap).
const MAX_LABELLED_POINTS: usize = 16;

/// Writes an SVG plot of `series` to `path`: x = recall@`k` ("Recall@10"),
/// y = queries per second, one thread, on a log scale; `title` on top.
/// `frontier`: `None` draws the Pareto frontier of all the series' points
/// ([`pareto_frontier`]), `Some(points)` draws those `(recall, qps)` points
/// as the frontier (`Some(&[])`: none). `targets`: recalls marked by
/// vertical dashed lines. Errors (nothing written): no point at all, a
/// recall or target outside `[0, 1]`, a QPS that is not positive and
/// finite, or the file cannot be written.
pub fn recall_qps_svg(
    path: &Path,
    title: &str,
    k: usize,
    series: &[Series],
    frontier: Option<&[(f64, f64)]>,
    targets: &[f64],
) -> Result<(), String> {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| (p.0, p.1)))
        .collect();
    if all.is_empty() {
        return Err("nothing to plot: no series has a point".into());
    }
    for s in series {
        for (r, q, label) in &s.points {
            if !(r.is_finite() && (0.0..=1.0).contains(r)) {
                return Err(format!(
                    "cannot plot recall {r} of {:?} ({label}): recall must be in [0, 1]",
                    s.name
                ));
            }
            if !(q.is_finite() && *q > 0.0) {
                return Err(format!(
                    "cannot plot {q} queries per second of {:?} ({label}) on a log axis: QPS must be positive and finite",
                    s.name
                ));
            }
        }
    }
    if let Some(t) = targets
        .iter()
        .find(|t| !(t.is_finite() && (0.0..=1.0).contains(*t)))
    {
        return Err(format!("target recall {t} is not in [0, 1]"));
    }
    let front: Vec<(f64, f64)> = match frontier {
        Some(f) => f.to_vec(),
        None => pareto_frontier(&all).into_iter().map(|i| all[i]).collect(),
    };
    for &(r, q) in &front {
        if !(r.is_finite() && (0.0..=1.0).contains(&r) && q.is_finite() && q > 0.0) {
            return Err(format!(
                "frontier point ({r}, {q}) is not a recall in [0, 1] and a positive QPS"
            ));
        }
    }
    draw(path, title, k, series, &all, &front, targets)
        .map_err(|e| format!("cannot write plot {}: {e}", path.display()))
}

/// The drawing itself (inputs validated).
fn draw(
    path: &Path,
    title: &str,
    k: usize,
    series: &[Series],
    all: &[(f64, f64)],
    front: &[(f64, f64)],
    targets: &[f64],
) -> Result<(), Box<dyn std::error::Error>> {
    // x: from a little below the lowest recall (or target) to 1.
    let lowest = all
        .iter()
        .map(|p| p.0)
        .chain(targets.iter().copied())
        .fold(1.0f64, f64::min);
    let x_lo = ((lowest - 0.02).max(0.0) * 50.0).floor() / 50.0;
    let x_hi = 1.0f64;
    let x_lo = if x_hi - x_lo < 0.02 {
        x_hi - 0.02
    } else {
        x_lo
    };
    // y: a decade-friendly margin around the QPS range.
    let (q_min, q_max) = all.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let (y_lo, y_hi) = (q_min / 1.5, q_max * 1.5);
    // Labels at 1, 2 and 5 times each power of ten, grid lines at every
    // multiple (plotters's own log axis labels only whole decades).
    let (keys, light) = log_ticks(y_lo, y_hi);
    let y_axis: LogCoord<f64> = (y_lo..y_hi).log_scale().into();
    let y_axis = y_axis.with_key_points(keys).with_light_points(light);

    let root = SVGBackend::new(path, (1000, 680)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x_lo..x_hi, y_axis)?;
    chart
        .configure_mesh()
        .x_desc(format!("Recall@{k}"))
        .y_desc("Queries per second (1 thread, log)")
        .x_labels(12)
        .x_label_formatter(&|x| format!("{x:.2}"))
        .y_label_formatter(&|y| format_qps(*y))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()?;

    // Targets: dashed vertical lines, labelled at the top.
    let grey = RGBColor(90, 90, 90);
    for (n, &t) in targets.iter().enumerate() {
        let steps = 60;
        let ratio = (y_hi / y_lo).powf(1.0 / steps as f64);
        let dashes = (0..steps).step_by(2).map(move |i| {
            let a = y_lo * ratio.powi(i);
            PathElement::new(vec![(t, a), (t, a * ratio)], grey.stroke_width(2))
        });
        let drawn = chart.draw_series(dashes)?;
        if n == 0 {
            drawn.label("target recall").legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 8, y), (x + 12, y), (x + 20, y)],
                    grey.stroke_width(2),
                )
            });
        }
        chart.draw_series(std::iter::once(Text::new(
            format!("{t}"),
            (t, y_hi / 1.08),
            ("sans-serif", 13).into_font().color(&grey),
        )))?;
    }

    // The frontier beneath the curves: thick, pale, with rings on its points.
    if !front.is_empty() {
        let shade = RGBColor(40, 40, 40).mix(0.25);
        chart
            .draw_series(LineSeries::new(
                front.iter().copied(),
                shade.stroke_width(9),
            ))?
            .label("Pareto frontier")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], shade.stroke_width(9))
            });
        chart.draw_series(
            front
                .iter()
                .map(|&p| Circle::new(p, 8, RGBColor(20, 20, 20).stroke_width(2))),
        )?;
    }

    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))?
            .label(s.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart.draw_series(
            s.points
                .iter()
                .map(|p| Circle::new((p.0, p.1), 4, color.filled())),
        )?;
        if s.points.len() <= MAX_LABELLED_POINTS {
            chart.draw_series(s.points.iter().filter(|p| !p.2.is_empty()).map(|p| {
                EmptyElement::at((p.0, p.1))
                    + Text::new(
                        p.2.clone(),
                        (6, -16),
                        ("sans-serif", 11).into_font().color(&color),
                    )
            }))?;
        }
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Ticks of a log axis over `[lo, hi]`: labelled ones at 1, 2 and 5 times
/// each power of ten, and a grid line at every other multiple 3, 4, 6-9.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let (mut keys, mut light) = (Vec::new(), Vec::new());
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in 1..10 {
            let v = decade * m as f64;
            if v >= lo && v <= hi {
                if matches!(m, 1 | 2 | 5) {
                    keys.push(v);
                } else {
                    light.push(v);
                }
            }
        }
        decade *= 10.0;
    }
    (keys, light)
}

/// An axis label for a QPS value: `800`, `12k`, `1.5M`.
fn format_qps(q: f64) -> String {
    if q >= 1e6 {
        trim(q / 1e6, "M")
    } else if q >= 1e3 {
        trim(q / 1e3, "k")
    } else {
        trim(q, "")
    }
}

/// `v` with at most one decimal, none when it is whole, then `unit`.
fn trim(v: f64, unit: &str) -> String {
    let s = format!("{v:.1}");
    let s = s.strip_suffix(".0").unwrap_or(&s);
    format!("{s}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_keeps_only_non_dominated_points_sorted_by_recall() {
        let pts = [
            (0.90, 1000.0), // 0: on (fastest)
            (0.95, 800.0),  // 1: on
            (0.93, 700.0),  // 2: dominated by 1
            (0.99, 200.0),  // 3: on (best recall)
            (0.95, 500.0),  // 4: same recall as 1, slower
            (0.80, 900.0),  // 5: dominated by 0
            (0.97, 800.0),  // 6: dominates 1 (same QPS, more recall)
        ];
        assert_eq!(pareto_frontier(&pts), vec![0, 6, 3]);
    }

    #[test]
    fn frontier_edge_cases() {
        assert!(pareto_frontier(&[]).is_empty());
        assert_eq!(pareto_frontier(&[(0.5, 10.0)]), vec![0]);
        // Identical points: the first is kept.
        assert_eq!(pareto_frontier(&[(0.5, 10.0), (0.5, 10.0)]), vec![0]);
        // Non-finite points are skipped, not allowed to dominate.
        assert_eq!(
            pareto_frontier(&[(f64::NAN, 1e9), (0.5, 10.0), (0.6, f64::INFINITY)]),
            vec![1]
        );
        // A chain where each point trades recall for speed: all on it.
        let chain: Vec<(f64, f64)> = (0..5)
            .map(|i| (0.5 + 0.1 * i as f64, 100.0 - i as f64))
            .collect();
        assert_eq!(pareto_frontier(&chain), vec![0, 1, 2, 3, 4]);
    }

    fn sample() -> Vec<Series> {
        vec![
            Series {
                name: "int8, rescore all".into(),
                points: vec![
                    (0.82, 30000.0, "ef 16".into()),
                    (0.91, 21000.0, "ef 32".into()),
                    (0.97, 12000.0, "ef 64".into()),
                ],
            },
            Series {
                name: "int8, oversample 2".into(),
                points: vec![
                    (0.80, 33000.0, "ef 16".into()),
                    (0.95, 15000.0, "ef 64".into()),
                ],
            },
        ]
    }

    #[test]
    fn svg_has_axes_legend_targets_and_a_polyline_per_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        let series = sample();
        recall_qps_svg(&path, "idx: int8", 10, &series, None, &[0.95]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "Recall@10",
            "Queries per second (1 thread, log)",
            "idx: int8",
            "int8, rescore all",
            "int8, oversample 2",
            "Pareto frontier",
            "target recall",
            "ef 32",
        ] {
            assert!(svg.contains(text), "no {text:?} in the SVG");
        }
        // Each series is one polyline in its colour, and its legend
        // swatch another; the frontier has its own grey one.
        let polylines_in = |color: &str| {
            svg.split("<polyline")
                .skip(1)
                .filter(|rest| rest.split('>').next().unwrap_or("").contains(color))
                .count()
        };
        assert_eq!(polylines_in("stroke=\"#1F77B4\""), 2, "{svg}");
        assert_eq!(polylines_in("stroke=\"#FF7F0E\""), 2, "{svg}");
        assert_eq!(polylines_in("stroke=\"#282828\""), 2, "{svg}");
    }

    #[test]
    fn bad_input_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        let empty = [Series {
            name: "none".into(),
            points: vec![],
        }];
        assert!(recall_qps_svg(&path, "t", 10, &empty, None, &[]).is_err());
        let zero_qps = [Series {
            name: "zero".into(),
            points: vec![(0.9, 0.0, String::new())],
        }];
        let e = recall_qps_svg(&path, "t", 10, &zero_qps, None, &[]).unwrap_err();
        assert!(e.contains("positive"), "{e}");
        let e = recall_qps_svg(&path, "t", 10, &sample(), None, &[1.5]).unwrap_err();
        assert!(e.contains("target"), "{e}");
        assert!(!path.exists());
        let e = recall_qps_svg(
            &dir.path().join("no/such/dir.svg"),
            "t",
            10,
            &sample(),
            None,
            &[],
        )
        .unwrap_err();
        assert!(e.contains("cannot write plot"), "{e}");
    }

    #[test]
    fn log_ticks_label_1_2_5() {
        let (keys, light) = log_ticks(700.0, 25000.0);
        assert_eq!(keys, vec![1000.0, 2000.0, 5000.0, 10000.0, 20000.0]);
        assert_eq!(light.first(), Some(&700.0));
        assert!(light.contains(&3000.0) && !light.contains(&2000.0));
    }

    #[test]
    fn qps_labels_are_short() {
        assert_eq!(format_qps(800.0), "800");
        assert_eq!(format_qps(12000.0), "12k");
        assert_eq!(format_qps(1500.0), "1.5k");
        assert_eq!(format_qps(2_000_000.0), "2M");
    }
}
