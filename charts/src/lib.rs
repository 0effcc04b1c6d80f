//! Charts as inline SVG strings, drawn in Rust with every text escaped: line charts,
//! histograms, grouped bars, heatmaps and grayscale images. Shared by the HTML report plugin
//! and the host's comparison page, so both draw alike and neither fetches anything.

use std::fmt::Write;

/// Series colours, in order.
pub const COLORS: [&str; 6] = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2"];

/// Escapes text for HTML and SVG.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A line chart of named series of (x, y) points, with an optional marked x.
pub fn line_chart(series: &[(String, Vec<(f64, f64)>)], x_label: &str, y_label: &str, marker: Option<f64>) -> String {
    let (width, height, left, bottom, top, right) = (640.0, 260.0, 56.0, 36.0, 14.0, 130.0);
    let points: Vec<(f64, f64)> =
        series.iter().flat_map(|(_, p)| p.iter().copied()).filter(|(_, y)| y.is_finite()).collect();
    if points.is_empty() {
        return "<p class=\"muted\">no data</p>".into();
    }
    let (x_min, x_max) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(*x), b.max(*x)));
    let (y_min, y_max) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
    // A flat series (a constant learning rate) gets a band around its value, at its scale.
    let pad = if y_min.abs() > 0.0 { y_min.abs() * 0.5 } else { 0.5 };
    let (y_min, y_max) = if y_max > y_min { (y_min, y_max) } else { (y_min - pad, y_max + pad) };
    let x_span = if x_max > x_min { x_max - x_min } else { 1.0 };
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let sx = |x: f64| left + (x - x_min) / x_span * plot_w;
    let sy = |y: f64| top + (1.0 - (y - y_min) / (y_max - y_min)) * plot_h;
    let mut svg = format!(
        r#"<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        escape(y_label)
    );
    y_grid(&mut svg, left, plot_w, (y_min, y_max), &sy);
    axis_label(&mut svg, left + plot_w / 2.0, height - 4.0, x_label);
    // Whole-number ticks for epochs; quarters for fractions (rates).
    let whole = x_span > 2.0;
    let ticks = if whole { ((x_max - x_min).round() as usize).clamp(1, 20) } else { 4 };
    for step in 0..=ticks {
        let x = x_min + (step as f64) * x_span / ticks as f64;
        let label = if whole { format!("{}", x.round()) } else { format!("{x:.2}") };
        let _ =
            write!(svg, r#"<text x="{:.1}" y="{}" text-anchor="middle">{label}</text>"#, sx(x), top + plot_h + 16.0);
    }
    if let Some(marker) = marker {
        let (x, y_end, y_text) = (sx(marker), top + plot_h, top + 10.0);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{y_end}" stroke="#9ca3af" stroke-dasharray="4 3"/><text x="{x:.1}" y="{y_text}" text-anchor="middle">best</text>"##
        );
    }
    for (index, (name, points)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let path: Vec<String> =
            points.iter().filter(|(_, y)| y.is_finite()).map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect();
        let _ = write!(svg, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, path.join(" "));
        // Dots mark epochs; dense curves (ROC) are clearer without them.
        for point in path.iter().filter(|_| path.len() <= 30) {
            let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(svg, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
        }
        let legend_y = top + 14.0 + index as f64 * 18.0;
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{}" width="12" height="3" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            width - right + 12.0,
            legend_y - 4.0,
            width - right + 30.0,
            legend_y,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A histogram over `edges` (one more than each series' counts), the series side by side in
/// each bin.
pub fn histogram(edges: &[f64], series: &[(String, Vec<f64>)], x_label: &str) -> String {
    let bins = edges.len().saturating_sub(1);
    let max = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max);
    if bins == 0 || max <= 0.0 {
        return "<p class=\"muted\">no data</p>".into();
    }
    let (width, height, left, bottom, top, right) = (640.0, 240.0, 56.0, 36.0, 14.0, 110.0);
    let (plot_w, plot_h) = (width - left - right, height - top - bottom);
    let bin_w = plot_w / bins as f64;
    let bar_w = (bin_w - 2.0) / series.len().max(1) as f64;
    let mut svg = format!(
        r#"<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        escape(x_label)
    );
    for i in 0..=4 {
        let value = max * i as f64 / 4.0;
        let y = top + plot_h * (1.0 - i as f64 / 4.0);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end">{value:.0}</text>"##,
            left + plot_w,
            left - 6.0,
            y + 4.0
        );
    }
    for (s, (name, counts)) in series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        for (bin, &count) in counts.iter().enumerate().take(bins) {
            let bar_h = count.max(0.0) / max * plot_h;
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bar_h:.1}" fill="{color}"><title>{}: {count} in [{:.2}, {:.2})</title></rect>"#,
                left + bin as f64 * bin_w + 1.0 + s as f64 * bar_w,
                top + plot_h - bar_h,
                bar_w,
                escape(name),
                edges[bin],
                edges[bin + 1]
            );
        }
        let y = top + 12.0 + s as f64 * 18.0;
        let x = width - right + 14.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{y}">{}</text>"#,
            y - 10.0,
            x + 18.0,
            escape(name)
        );
    }
    for i in 0..=4 {
        let position = i as f64 / 4.0;
        let value = edges[0] + (edges[bins] - edges[0]) * position;
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{value:.2}</text>"#,
            left + plot_w * position,
            top + plot_h + 16.0
        );
    }
    axis_label(&mut svg, left + plot_w / 2.0, height - 4.0, x_label);
    svg.push_str("</svg>");
    svg
}

/// A scatter plot of (x, y) points. With `categories`, x is an index into them and each is a
/// labelled tick; otherwise x is numeric (`log_x` for a log scale, e.g. learning rates).
pub fn scatter(
    points: &[(f64, f64)],
    categories: Option<&[String]>,
    log_x: bool,
    x_label: &str,
    y_label: &str,
) -> String {
    let (width, height, left, bottom, top, right) = (420.0, 240.0, 56.0, 40.0, 14.0, 16.0);
    let points: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_x || *x > 0.0))
        .map(|&(x, y)| (if log_x { x.log10() } else { x }, y))
        .collect();
    if points.is_empty() {
        return "<p class=\"muted\">no data</p>".into();
    }
    let (plot_w, plot_h) = (width - left - right, height - top - bottom);
    let (mut x_min, mut x_max) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(*x), b.max(*x)));
    if let Some(categories) = categories {
        (x_min, x_max) = (-0.5, categories.len() as f64 - 0.5);
    } else if x_max <= x_min {
        (x_min, x_max) = (x_min - 0.5, x_max + 0.5);
    }
    let (y_min, y_max) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
    let pad = if y_max > y_min { (y_max - y_min) * 0.1 } else { y_min.abs().max(1e-6) * 0.1 };
    let (y_min, y_max) = (y_min - pad, y_max + pad);
    let sx = |x: f64| left + (x - x_min) / (x_max - x_min) * plot_w;
    let sy = |y: f64| top + (1.0 - (y - y_min) / (y_max - y_min)) * plot_h;
    let mut svg = format!(
        r#"<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        escape(y_label)
    );
    y_grid(&mut svg, left, plot_w, (y_min, y_max), &sy);
    let ticks: Vec<(f64, String)> = match categories {
        Some(categories) => categories.iter().enumerate().map(|(i, c)| (i as f64, c.clone())).collect(),
        None => (0..=4)
            .map(|i| {
                let x = x_min + (x_max - x_min) * i as f64 / 4.0;
                let decimals = (3.0 - (x_max - x_min).log10().floor()).clamp(1.0, 8.0) as usize;
                (x, if log_x { format!("{:.1e}", 10f64.powf(x)) } else { format!("{x:.decimals$}") })
            })
            .collect(),
    };
    for (x, label) in ticks {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            sx(x),
            top + plot_h + 16.0,
            escape(&label)
        );
    }
    dots(&mut svg, &points, (&sx, &sy), 5.0, 0.8);
    axis_label(&mut svg, left + plot_w / 2.0, height - 4.0, x_label);
    svg.push_str("</svg>");
    svg
}

/// Predicted against actual values on equal axes, with the y = x line a perfect model would
/// follow.
pub fn parity(points: &[(f64, f64)], x_label: &str, y_label: &str) -> String {
    let (size, left, bottom, top, right) = (400.0, 56.0, 40.0, 14.0, 16.0);
    let points: Vec<(f64, f64)> = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    if points.is_empty() {
        return "<p class=\"muted\">no data</p>".into();
    }
    let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, y)| (a.min(x.min(*y)), b.max(x.max(*y))));
    let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1e-6) * 0.1 };
    let (lo, hi) = (lo - pad, hi + pad);
    let plot = size - left - bottom;
    let sx = |x: f64| left + (x - lo) / (hi - lo) * plot;
    let sy = |y: f64| top + (1.0 - (y - lo) / (hi - lo)) * plot;
    let (width, height) = (left + plot + right, top + plot + bottom);
    let mut svg = format!(
        r#"<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        escape(y_label)
    );
    y_grid(&mut svg, left, plot, (lo, hi), &sy);
    for i in 0..=4 {
        let x = lo + (hi - lo) * i as f64 / 4.0;
        let _ = write!(svg, r#"<text x="{:.1}" y="{}" text-anchor="middle">{x:.3}</text>"#, sx(x), top + plot + 16.0);
    }
    let _ = write!(
        svg,
        r##"<line class="identity" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#6b7280" stroke-dasharray="5 4"/>"##,
        sx(lo),
        sy(lo),
        sx(hi),
        sy(hi)
    );
    dots(&mut svg, &points, (&sx, &sy), 3.0, 0.6);
    axis_label(&mut svg, left + plot / 2.0, height - 4.0, x_label);
    svg.push_str("</svg>");
    svg
}

/// One circle per point, placed by the plot's scales.
fn dots(
    svg: &mut String,
    points: &[(f64, f64)],
    (sx, sy): (&dyn Fn(f64) -> f64, &dyn Fn(f64) -> f64),
    r: f64,
    opacity: f64,
) {
    for (x, y) in points {
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{r}" fill="{}" fill-opacity="{opacity}"/>"#,
            sx(*x),
            sy(*y),
            COLORS[0]
        );
    }
}

/// Five horizontal grid lines from `y_min` to `y_max`, labelled at the left.
fn y_grid(svg: &mut String, left: f64, plot_w: f64, (y_min, y_max): (f64, f64), sy: &dyn Fn(f64) -> f64) {
    for i in 0..=4 {
        let y = y_min + (y_max - y_min) * i as f64 / 4.0;
        let (x_end, y_line, x_text, y_text) = (left + plot_w, sy(y), left - 6.0, sy(y) + 4.0);
        let label = if y.abs() >= 0.01 || y == 0.0 { format!("{y:.3}") } else { format!("{y:.1e}") };
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{x_end}" y1="{y_line:.1}" y2="{y_line:.1}" stroke="#e5e7eb"/><text x="{x_text}" y="{y_text:.1}" text-anchor="end">{label}</text>"##
        );
    }
}

/// A centred, escaped axis caption.
fn axis_label(svg: &mut String, x: f64, y: f64, text: &str) {
    let _ = write!(svg, r#"<text x="{x}" y="{y}" text-anchor="middle">{}</text>"#, escape(text));
}

/// Grouped vertical bars: one group per category, one bar per series.
pub fn grouped_bars(categories: &[String], series: &[(String, Vec<f64>)], fraction: bool) -> String {
    let (left, bottom, top, group_w) = (48.0, 70.0, 14.0, 22.0 * series.len().max(1) as f64 + 14.0);
    let width = left + group_w * categories.len() as f64 + 150.0;
    let height = 260.0;
    let plot_h = height - top - bottom;
    let max = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max);
    let max = if fraction {
        1.0
    } else if max > 0.0 {
        max
    } else {
        1.0
    };
    let mut svg =
        format!(r#"<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">"#);
    for i in 0..=4 {
        let value = max * i as f64 / 4.0;
        let y = top + plot_h * (1.0 - i as f64 / 4.0);
        let label = if fraction { format!("{value:.2}") } else { format!("{value:.0}") };
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            left + group_w * categories.len() as f64,
            left - 6.0,
            y + 4.0
        );
    }
    for (c, category) in categories.iter().enumerate() {
        let x0 = left + c as f64 * group_w + 7.0;
        for (s, (_, values)) in series.iter().enumerate() {
            let value = values.get(c).copied().unwrap_or(0.0).max(0.0);
            let bar_h = value / max * plot_h;
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="20" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                x0 + s as f64 * 22.0,
                top + plot_h - bar_h,
                bar_h,
                COLORS[s % COLORS.len()],
                escape(category),
                value
            );
        }
        let label_x = x0 + series.len() as f64 * 11.0;
        let _ = write!(
            svg,
            r#"<text x="{label_x:.1}" y="{}" text-anchor="end" transform="rotate(-35 {label_x:.1} {})">{}</text>"#,
            top + plot_h + 14.0,
            top + plot_h + 14.0,
            escape(category)
        );
    }
    for (s, (name, _)) in series.iter().enumerate() {
        let x = left + group_w * categories.len() as f64 + 16.0;
        let y = top + 12.0 + s as f64 * 18.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{y}">{}</text>"#,
            y - 10.0,
            COLORS[s % COLORS.len()],
            x + 18.0,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The confusion matrix as a heatmap shaded by row-normalised share, labelled with counts or,
/// `normalised`, with each row's percentages.
pub fn heatmap(matrix: &[Vec<u64>], labels: &[String], normalised: bool) -> String {
    let n = matrix.len();
    let (cell, left, top) = (40.0, 110.0, 100.0);
    let size = left + cell * n as f64 + 10.0;
    let mut svg = format!(
        r#"<svg class="chart" width="{size}" height="{}" viewBox="0 0 {size} {}" role="img">"#,
        top + cell * n as f64 + 10.0,
        top + cell * n as f64 + 10.0
    );
    for (i, label) in labels.iter().enumerate().take(n) {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            top + cell * i as f64 + cell / 2.0 + 4.0,
            escape(label)
        );
        let x = left + cell * i as f64 + cell / 2.0;
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{}" transform="rotate(-45 {x:.1} {})">{}</text>"#,
            top - 8.0,
            top - 8.0,
            escape(label)
        );
    }
    for (i, row) in matrix.iter().enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        for (j, &count) in row.iter().enumerate() {
            let share = count as f64 / total as f64;
            let shade = (255.0 * (1.0 - share)).round() as u8;
            let fill = format!("rgb({shade},{},{})", (255.0 - share * 120.0) as u8, 255);
            let text = if share > 0.5 { "#fff" } else { "#1d2733" };
            let (x, y) = (left + cell * j as f64, top + cell * i as f64);
            let shown = if normalised { format!("{:.0}", share * 100.0) } else { count.to_string() };
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#fff"><title>true {} predicted {}: {count} ({:.1}%)</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" style="fill:{text}">{shown}</text>"##,
                escape(&labels[i.min(labels.len() - 1)]),
                escape(&labels[j.min(labels.len() - 1)]),
                share * 100.0,
                x + cell / 2.0,
                y + cell / 2.0 + 4.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A grayscale image as SVG rectangles (one per non-background pixel), scaled to its range.
pub fn image_svg(values: &[f64], side: usize) -> String {
    let (min, max) = values.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let span = if max > min { max - min } else { 1.0 };
    let scale = 2.0;
    let size = side as f64 * scale;
    let mut svg = format!(
        r##"<svg width="{size}" height="{size}" viewBox="0 0 {side} {side}" shape-rendering="crispEdges"><rect width="{side}" height="{side}" fill="#000"/>"##
    );
    for (index, value) in values.iter().enumerate() {
        let level = ((value - min) / span * 255.0).round() as u8;
        if level > 8 {
            let _ = write!(
                svg,
                r#"<rect x="{}" y="{}" width="1" height="1" fill="rgb({level},{level},{level})"/>"#,
                index % side,
                index / side
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_is_escaped_and_charts_without_data_say_so() {
        let series = vec![("<b>a&b</b>".to_owned(), vec![(1.0, 0.5), (2.0, 0.25)])];
        let chart = line_chart(&series, "<x>", "y\"", Some(1.0));
        assert!(!chart.contains("<b>") && !chart.contains("<x>"), "{chart}");
        assert!(
            chart.contains("&lt;b&gt;a&amp;b&lt;/b&gt;") && chart.contains("&lt;x&gt;") && chart.contains("y&quot;")
        );
        assert!(line_chart(&[], "x", "y", None).contains("no data"));
        assert!(histogram(&[0.0, 1.0], &[("s".into(), vec![0.0])], "x").contains("no data"));
        let bars = histogram(&[0.0, 0.5, 1.0], &[("<s>".into(), vec![1.0, 3.0])], "confidence");
        assert_eq!(bars.matches("<rect").count(), 3, "two bars and a legend swatch: {bars}");
        assert!(bars.contains("&lt;s&gt;: 3 in [0.50, 1.00)"));
    }
}
