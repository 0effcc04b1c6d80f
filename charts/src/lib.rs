//! Charts as inline SVG strings, drawn in Rust with every text escaped: line charts,
//! histograms, grouped bars, heatmaps, scatter and parity plots, and grayscale images. Shared by
//! the HTML report plugins and the host's comparison and sweep pages, so all draw alike and none
//! fetches anything.
//!
//! Layout follows the text: margins leave room for every tick label and legend entry, measured
//! at [`CHAR_WIDTH`] per character of the 11px text each chart asks for, so no label leaves its
//! chart. Ticks are round numbers labelled with the fewest digits that tell them apart; an axis
//! whose values are all whole numbers (epochs, counts) has whole-number ticks only. Charts that
//! read best wide (line charts, histograms, bars) fill their container's width (`width: 100%`
//! over a viewBox); the others keep their size and only shrink to fit a narrower container.
//!
//! Markup the browser tests read: an axis is `<g class="axis x">` (or `y`), with `data-integer`
//! when it is a whole-number axis, its tick labels `class="tick"` and its caption
//! `class="axis-label"`; legend entries are `class="legend-label"` inside `<g class="legend">`.

use std::fmt::Write;

/// Series colours, in order.
pub const COLORS: [&str; 6] = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2"];

/// The width a layout assumes for one character of the charts' 11px text: generous (a digit
/// of DejaVu Sans, the widest common case, is 7px), so labels placed by it stay inside.
pub const CHAR_WIDTH: f64 = 7.0;

/// The estimated width of `text` in a chart.
pub fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH
}

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

fn no_data() -> String {
    "<p class=\"muted\">no data</p>".into()
}

/// How a chart's SVG takes its place on the page.
#[derive(Clone, Copy)]
enum Fit {
    /// As wide as its container, scaled from the width it was drawn at.
    Fill,
    /// At its drawn size, shrunk only to fit a narrower container.
    Shrink,
}

/// The opening tag of a chart `width` by `height` (drawing units: pixels at scale 1).
fn open(width: f64, height: f64, label: &str, fit: Fit) -> String {
    let style = match fit {
        Fit::Fill => "width:100%;height:auto",
        Fit::Shrink => "max-width:100%;height:auto",
    };
    let aria = if label.is_empty() { String::new() } else { format!(r#" aria-label="{}""#, escape(label)) };
    let (width, height) = (width.ceil(), height.ceil());
    format!(
        r#"<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" style="{style}" font-family="system-ui, sans-serif" font-size="11" role="img"{aria}>"#
    )
}

/// The smallest and largest of `values`.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

fn whole(values: impl IntoIterator<Item = f64>) -> bool {
    values.into_iter().all(|v| v.fract() == 0.0)
}

/// A number without the float noise of arithmetic (0.30000000000000004 is 0.3).
fn clean(value: f64) -> f64 {
    format!("{value:.12e}").parse().unwrap_or(value)
}

/// `text` without trailing zeros after its decimal point (in a mantissa too), and never "-0".
fn trim(text: &str) -> String {
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m, format!("e{e}")),
        None => (text, String::new()),
    };
    let mantissa = if mantissa.contains('.') { mantissa.trim_end_matches('0').trim_end_matches('.') } else { mantissa };
    let out = format!("{mantissa}{exponent}");
    if out == "-0" { "0".into() } else { out }
}

/// Labels for `values` with the fewest digits that tell them apart and are exact to within a
/// millionth of `step`: plain decimals while six places do, else a mantissa and exponent.
fn tick_labels(values: &[f64], step: f64) -> Vec<String> {
    let fits = |labels: &[String]| {
        let exact =
            values.iter().zip(labels).all(|(v, l)| l.parse::<f64>().is_ok_and(|p| (p - v).abs() <= step.abs() * 1e-6));
        let mut sorted = labels.to_vec();
        sorted.sort();
        sorted.dedup();
        exact && sorted.len() == labels.len()
    };
    for decimals in 0..=6 {
        let labels: Vec<String> = values.iter().map(|v| trim(&format!("{v:.decimals$}"))).collect();
        if fits(&labels) {
            return labels;
        }
    }
    for digits in 0..=10 {
        let labels: Vec<String> =
            values.iter().map(|v| if *v == 0.0 { "0".to_owned() } else { trim(&format!("{v:.digits$e}")) }).collect();
        if fits(&labels) {
            return labels;
        }
    }
    values.iter().map(|v| format!("{v:e}")).collect()
}

/// One number with the fewest digits that keep it exact to a millionth of itself.
fn short_number(value: f64) -> String {
    tick_labels(&[value], value.abs().max(f64::MIN_POSITIVE)).remove(0)
}

/// Round ticks along one axis, and the range the axis spans.
struct Axis {
    lo: f64,
    hi: f64,
    /// Each tick's value (in the axis's own units: log10 on a log axis) and label.
    ticks: Vec<(f64, String)>,
    integer: bool,
}

/// The step of 1, 2 or 5 times a power of ten that cuts `span` into at most `count` parts; at
/// least 1 on an integer axis.
fn step_for(span: f64, count: usize, integer: bool) -> f64 {
    let raw = span / count.max(1) as f64;
    if !(raw > 0.0 && raw.is_finite()) {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| clean(m * power)).find(|s| *s >= raw * (1.0 - 1e-9));
    let step = step.unwrap_or(10.0 * power);
    if integer { step.max(1.0).round() } else { step }
}

impl Axis {
    /// A linear axis over data from `lo` to `hi` with ticks at most `count` steps apart;
    /// `widen` stretches the range to whole steps, so its ends are ticks (a value axis).
    fn linear(lo: f64, hi: f64, count: usize, integer: bool, widen: bool) -> Axis {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else if integer {
            (lo - 0.5, hi + 0.5)
        } else {
            // A flat series (a constant learning rate) gets a band around its value, at its scale.
            let pad = if lo != 0.0 { lo.abs() * 0.5 } else { 0.5 };
            (lo - pad, hi + pad)
        };
        let step = step_for(hi - lo, count, integer);
        let (lo, hi) =
            if widen { (clean((lo / step).floor() * step), clean((hi / step).ceil() * step)) } else { (lo, hi) };
        let first = (lo / step - 1e-9).ceil() as i64;
        let last = (hi / step + 1e-9).floor() as i64;
        let values: Vec<f64> = (first..=last.min(first + 200)).map(|k| clean(k as f64 * step)).collect();
        let labels = tick_labels(&values, step);
        Axis { lo, hi, ticks: values.into_iter().zip(labels).collect(), integer }
    }

    /// A linear axis `length` pixels long whose tick labels do not crowd each other: about one
    /// tick per 60px across (no closer than its labels' width), one per 40px up.
    fn fitted(lo: f64, hi: f64, length: f64, integer: bool, widen: bool, across: bool) -> Axis {
        let mut count = (length / if across { 60.0 } else { 40.0 }).floor().clamp(1.0, 12.0) as usize;
        loop {
            let axis = Axis::linear(lo, hi, count, integer, widen);
            let spacing = match axis.ticks.as_slice() {
                [a, b, ..] => (b.0 - a.0) / (axis.hi - axis.lo) * length,
                _ => f64::MAX,
            };
            let needed = if across { axis.widest() + 12.0 } else { 16.0 };
            if spacing >= needed || count == 1 {
                return axis;
            }
            count -= 1;
        }
    }

    /// A log axis `length` pixels long over log10 values `lo` to `hi`: powers of ten, with 2
    /// and 5 times them when their labels have room, or every second, third... power when even
    /// those crowd each other.
    fn log(lo: f64, hi: f64, length: f64) -> Axis {
        let place = |multiples: &[f64], every: i32| {
            let mut ticks = Vec::new();
            for exponent in (lo.floor() as i32)..=(hi.ceil() as i32) {
                if exponent.rem_euclid(every) != 0 {
                    continue;
                }
                for m in multiples {
                    let value = clean(m * 10f64.powi(exponent));
                    let at = value.log10();
                    if at >= lo - 1e-9 && at <= hi + 1e-9 {
                        ticks.push((at, short_number(value)));
                    }
                }
            }
            Axis { lo, hi, ticks, integer: false }
        };
        let roomy = |axis: &Axis| {
            axis.ticks.windows(2).all(|pair| {
                let apart = (pair[1].0 - pair[0].0) / (hi - lo) * length;
                apart >= (text_width(&pair[0].1) + text_width(&pair[1].1)) / 2.0 + 8.0
            })
        };
        let mut choices = vec![place(&[1.0, 2.0, 5.0], 1)];
        choices.extend([1, 2, 3, 5, 10, 20].map(|every| place(&[1.0], every)));
        let fallback = choices.pop().unwrap_or_else(|| place(&[1.0], 50));
        choices.into_iter().find(|axis| axis.ticks.len() >= 2 && roomy(axis)).unwrap_or(fallback)
    }

    /// Ticks at categories 0, 1, ... (with half a slot of room at either end).
    fn categories(names: &[String]) -> Axis {
        let ticks = names.iter().enumerate().map(|(i, n)| (i as f64, n.clone())).collect();
        Axis { lo: -0.5, hi: names.len() as f64 - 0.5, ticks, integer: false }
    }

    fn widest(&self) -> f64 {
        self.ticks.iter().map(|(_, l)| text_width(l)).fold(0.0, f64::max)
    }

    /// Where `value` falls on an axis drawn from `start` for `length` pixels.
    fn at(&self, value: f64, start: f64, length: f64) -> f64 {
        start + (value - self.lo) / (self.hi - self.lo) * length
    }

    /// How far the first and last tick labels, centred on their ticks, reach past the ends of
    /// an axis `length` pixels long.
    fn overhang(&self, length: f64) -> (f64, f64) {
        let reach = |(value, label): &(f64, String), end: f64| {
            text_width(label) / 2.0 - (self.at(*value, 0.0, length) - end).abs()
        };
        let first = self.ticks.first().map(|t| reach(t, 0.0)).unwrap_or(0.0);
        let last = self.ticks.last().map(|t| reach(t, length)).unwrap_or(0.0);
        (first.max(0.0), last.max(0.0))
    }

    fn open_group(&self, svg: &mut String, which: &str) {
        let integer = if self.integer { " data-integer=\"\"" } else { "" };
        let _ = write!(svg, r#"<g class="axis {which}"{integer}>"#);
    }
}

/// An x axis (`make(length)`) fitted between the `left` and `right` margins of a chart `width`
/// wide; when its first or last tick label would reach past a margin, the margin widens to hold
/// it and the axis is fitted again to the narrower plot.
fn x_axis_within(width: f64, left: &mut f64, right: &mut f64, make: impl Fn(f64) -> Axis) -> Axis {
    let x = make(width - *left - *right);
    let (first, last) = x.overhang(width - *left - *right);
    if first + 4.0 <= *left && last + 4.0 <= *right {
        return x;
    }
    (*left, *right) = (left.max(first + 4.0), right.max(last + 4.0));
    make(width - *left - *right)
}

/// The room a y axis's labels take left of the plot.
fn y_margin(axis: &Axis) -> f64 {
    (axis.widest() + 12.0).max(36.0)
}

/// Horizontal grid lines at the y axis's ticks, labelled at the left.
fn y_axis(svg: &mut String, axis: &Axis, left: f64, top: f64, plot_w: f64, plot_h: f64) {
    let sy = |y: f64| top + plot_h - axis.at(y, 0.0, plot_h);
    svg.push_str(r#"<g class="grid">"#);
    for (value, _) in &axis.ticks {
        let y = sy(*value);
        let _ =
            write!(svg, r##"<line x1="{left}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e7eb"/>"##, left + plot_w);
    }
    svg.push_str("</g>");
    axis.open_group(svg, "y");
    for (value, label) in &axis.ticks {
        let _ = write!(
            svg,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            sy(*value) + 4.0,
            escape(label)
        );
    }
    svg.push_str("</g>");
}

/// The x axis's tick labels under the plot and its centred caption.
fn x_axis(svg: &mut String, axis: &Axis, left: f64, plot_bottom: f64, plot_w: f64, caption: &str) {
    axis.open_group(svg, "x");
    for (value, label) in &axis.ticks {
        let _ = write!(
            svg,
            r#"<text class="tick" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            axis.at(*value, left, plot_w),
            plot_bottom + 16.0,
            escape(label)
        );
    }
    let _ = write!(
        svg,
        r#"<text class="axis-label" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        plot_bottom + 32.0,
        escape(caption)
    );
    svg.push_str("</g>");
}

/// Where a chart's legend goes: a column right of the plot when its labels are short and few
/// enough, else rows under the x axis, wrapped to the chart's width.
struct Legend {
    /// Width of the column at the right (0 when the legend is below).
    right: f64,
    /// Each entry's swatch position: in the right column from its top, or below the axis from
    /// the left of the plot and the top of the first row.
    entries: Vec<(f64, f64)>,
    /// Height of the rows below (0 when the legend is at the right).
    below: f64,
    /// The narrowest chart that holds the widest entry.
    min_width: f64,
}

const LEGEND_ROW: f64 = 18.0;

fn legend(names: &[&str], width: f64, left: f64, plot_h: f64) -> Legend {
    let entry = |name: &str| 18.0 + text_width(name);
    let widest = names.iter().map(|n| entry(n)).fold(0.0, f64::max);
    if names.is_empty() {
        return Legend { right: 0.0, entries: Vec::new(), below: 0.0, min_width: 0.0 };
    }
    if widest <= 240.0 && names.len() as f64 * LEGEND_ROW <= plot_h {
        let entries = (0..names.len()).map(|i| (0.0, i as f64 * LEGEND_ROW)).collect();
        return Legend { right: widest + 28.0, entries, below: 0.0, min_width: 0.0 };
    }
    let row_width = (width - left - 16.0).max(widest);
    let (mut x, mut y) = (0.0, 0.0);
    let mut entries = Vec::new();
    for name in names {
        if x > 0.0 && x + entry(name) > row_width {
            (x, y) = (0.0, y + LEGEND_ROW);
        }
        entries.push((x, y));
        x += entry(name) + 20.0;
    }
    Legend { right: 0.0, entries, below: y + LEGEND_ROW + 8.0, min_width: left + widest + 16.0 }
}

/// The legend's swatches and escaped labels, the first swatch's top-left at (`x`, `y`).
fn draw_legend(svg: &mut String, names: &[&str], legend: &Legend, (x, y): (f64, f64), swatch_h: f64) {
    svg.push_str(r#"<g class="legend">"#);
    for (index, (name, (dx, dy))) in names.iter().zip(&legend.entries).enumerate() {
        let color = COLORS[index % COLORS.len()];
        let (sx, sy) = (x + dx, y + dy);
        let _ = write!(
            svg,
            r#"<rect x="{sx:.1}" y="{:.1}" width="12" height="{swatch_h}" fill="{color}"/><text class="legend-label" x="{:.1}" y="{:.1}">{}</text>"#,
            sy + 6.0 - swatch_h / 2.0,
            sx + 18.0,
            sy + 10.0,
            escape(name)
        );
    }
    svg.push_str("</g>");
}

/// A line chart of named series of (x, y) points, with an optional marked x. An x axis of
/// whole numbers (epochs) has whole-number ticks.
pub fn line_chart(series: &[(String, Vec<(f64, f64)>)], x_label: &str, y_label: &str, marker: Option<f64>) -> String {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let points: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().filter(finite).copied()).collect();
    if points.is_empty() {
        return no_data();
    }
    let (x_min, x_max) = range(points.iter().map(|p| p.0));
    let (y_min, y_max) = range(points.iter().map(|p| p.1));
    let integer_x = whole(points.iter().map(|p| p.0));
    let (mut width, top, plot_h) = (960.0, 14.0, 230.0);
    let names: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    let y = Axis::fitted(y_min, y_max, plot_h, false, true, false);
    let mut left = y_margin(&y);
    let legend = legend(&names, width, left, plot_h);
    width = f64::max(width, legend.min_width);
    let mut right = legend.right.max(16.0);
    let x = x_axis_within(width, &mut left, &mut right, |length| {
        Axis::fitted(x_min, x_max, length, integer_x, false, true)
    });
    let plot_w = width - left - right;
    let height = top + plot_h + 38.0 + legend.below;
    let sx = |v: f64| x.at(v, left, plot_w);
    let sy = |v: f64| top + plot_h - y.at(v, 0.0, plot_h);
    let mut svg = open(width, height, y_label, Fit::Fill);
    y_axis(&mut svg, &y, left, top, plot_w, plot_h);
    x_axis(&mut svg, &x, left, top + plot_h, plot_w, x_label);
    if let Some(marker) = marker.filter(|m| m.is_finite()) {
        // "best" beside the line, on the side towards the middle of the plot.
        let (mx, y_end, y_text) = (sx(marker), top + plot_h, top + 10.0);
        let (tx, anchor) = if mx > left + plot_w / 2.0 { (mx - 4.0, "end") } else { (mx + 4.0, "start") };
        let _ = write!(
            svg,
            r##"<line x1="{mx:.1}" x2="{mx:.1}" y1="{top}" y2="{y_end}" stroke="#9ca3af" stroke-dasharray="4 3"/><text class="marker" x="{tx:.1}" y="{y_text}" text-anchor="{anchor}">best</text>"##
        );
    }
    for (index, (_, points)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let path: Vec<(f64, f64)> = points.iter().filter(finite).map(|(px, py)| (sx(*px), sy(*py))).collect();
        let joined: Vec<String> = path.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
        let _ =
            write!(svg, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, joined.join(" "));
        // Dots mark epochs; dense curves (ROC) are clearer without them.
        if path.len() <= 30 {
            for (px, py) in &path {
                let _ = write!(svg, r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{color}"/>"#);
            }
        }
    }
    let origin =
        if legend.right > 0.0 { (width - legend.right + 12.0, top + 4.0) } else { (left, top + plot_h + 44.0) };
    draw_legend(&mut svg, &names, &legend, origin, 3.0);
    svg.push_str("</svg>");
    svg
}

/// A histogram over `edges` (one more than each series' counts), the series side by side in
/// each bin.
pub fn histogram(edges: &[f64], series: &[(String, Vec<f64>)], x_label: &str) -> String {
    let bins = edges.len().saturating_sub(1);
    let max = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max);
    if bins == 0 || max <= 0.0 || !edges.iter().all(|e| e.is_finite()) {
        return no_data();
    }
    let (mut width, top, plot_h) = (960.0, 14.0, 190.0);
    let names: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    let counts = whole(series.iter().flat_map(|(_, v)| v.iter().copied()));
    let y = Axis::fitted(0.0, max, plot_h, counts, true, false);
    let mut left = y_margin(&y);
    let legend = legend(&names, width, left, plot_h);
    width = f64::max(width, legend.min_width);
    let mut right = legend.right.max(16.0);
    let (lo, hi) = (edges[0], edges[bins]);
    let integer_x = whole(edges.iter().copied());
    let x = x_axis_within(width, &mut left, &mut right, |length| Axis::fitted(lo, hi, length, integer_x, false, true));
    let plot_w = width - left - right;
    let height = top + plot_h + 38.0 + legend.below;
    let sx = |v: f64| x.at(v, left, plot_w);
    let mut svg = open(width, height, x_label, Fit::Fill);
    y_axis(&mut svg, &y, left, top, plot_w, plot_h);
    for (s, (name, counts)) in series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        for (bin, &count) in counts.iter().enumerate().take(bins) {
            let (x0, x1) = (sx(edges[bin]), sx(edges[bin + 1]));
            let bar_w = ((x1 - x0 - 2.0) / series.len().max(1) as f64).max(0.5);
            let bar_h = count.max(0.0) / y.hi * plot_h;
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bar_h:.1}" fill="{color}"><title>{}: {count} in [{:.2}, {:.2})</title></rect>"#,
                x0 + 1.0 + s as f64 * bar_w,
                top + plot_h - bar_h,
                bar_w,
                escape(name),
                edges[bin],
                edges[bin + 1]
            );
        }
    }
    x_axis(&mut svg, &x, left, top + plot_h, plot_w, x_label);
    let origin =
        if legend.right > 0.0 { (width - legend.right + 12.0, top + 4.0) } else { (left, top + plot_h + 44.0) };
    draw_legend(&mut svg, &names, &legend, origin, 12.0);
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
    let points: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_x || *x > 0.0))
        .map(|&(x, y)| (if log_x && categories.is_none() { x.log10() } else { x }, y))
        .collect();
    if points.is_empty() {
        return no_data();
    }
    let (mut width, top, plot_h) = (420.0, 14.0, 186.0);
    let (y_min, y_max) = range(points.iter().map(|p| p.1));
    let pad = if y_max > y_min { (y_max - y_min) * 0.05 } else { 0.0 };
    // Padding never takes a metric that cannot be negative (a loss, an accuracy) below zero.
    let floor = if y_min >= 0.0 { (y_min - pad).max(0.0) } else { y_min - pad };
    let y = Axis::fitted(floor, y_max + pad, plot_h, false, true, false);
    let mut left = y_margin(&y);
    let mut right = 16.0;
    let (x_min, x_max) = range(points.iter().map(|p| p.0));
    // Dots at the data's ends sit a little inside the plot.
    let pad = if x_max > x_min { (x_max - x_min) * 0.05 } else { 0.0 };
    let integer_x = !log_x && whole(points.iter().map(|p| p.0));
    let make = |length: f64| match categories {
        Some(names) => Axis::categories(names),
        None if log_x => Axis::log(x_min - pad, x_max + pad, length),
        None => Axis::fitted(x_min - pad, x_max + pad, length, integer_x, false, true),
    };
    if let Some(names) = categories {
        // Each category's label within its slot.
        let slot = names.iter().map(|n| text_width(n) + 12.0).fold(0.0, f64::max);
        width = f64::max(width, left + right + slot * names.len() as f64);
    }
    let x = x_axis_within(width, &mut left, &mut right, make);
    let plot_w = width - left - right;
    let height = top + plot_h + 40.0;
    let sx = |v: f64| x.at(v, left, plot_w);
    let sy = |v: f64| top + plot_h - y.at(v, 0.0, plot_h);
    let mut svg = open(width, height, y_label, Fit::Shrink);
    y_axis(&mut svg, &y, left, top, plot_w, plot_h);
    x_axis(&mut svg, &x, left, top + plot_h, plot_w, x_label);
    dots(&mut svg, &points, (&sx, &sy), 5.0, 0.8);
    svg.push_str("</svg>");
    svg
}

/// Predicted against actual values on equal axes, with the y = x line a perfect model would
/// follow.
pub fn parity(points: &[(f64, f64)], x_label: &str, y_label: &str) -> String {
    let points: Vec<(f64, f64)> = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    if points.is_empty() {
        return no_data();
    }
    let (top, plot) = (14.0, 320.0);
    let (lo, hi) = range(points.iter().flat_map(|&(x, y)| [x, y]));
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 0.0 };
    let axis = Axis::fitted(lo - pad, hi + pad, plot, false, true, true);
    let (first, last) = axis.overhang(plot);
    let left = y_margin(&axis).max(first + 4.0);
    let right = f64::max(16.0, last + 4.0);
    let (lo, hi) = (axis.lo, axis.hi);
    let sx = |x: f64| axis.at(x, left, plot);
    let sy = |y: f64| top + plot - axis.at(y, 0.0, plot);
    let (width, height) = (left + plot + right, top + plot + 40.0);
    let mut svg = open(width, height, y_label, Fit::Shrink);
    y_axis(&mut svg, &axis, left, top, plot, plot);
    x_axis(&mut svg, &axis, left, top + plot, plot, x_label);
    let _ = write!(
        svg,
        r##"<line class="identity" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#6b7280" stroke-dasharray="5 4"/>"##,
        sx(lo),
        sy(lo),
        sx(hi),
        sy(hi)
    );
    dots(&mut svg, &points, (&sx, &sy), 3.0, 0.6);
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

/// Grouped vertical bars: one group per category, one bar per series; `fraction` for values
/// from 0 to 1.
pub fn grouped_bars(categories: &[String], series: &[(String, Vec<f64>)], fraction: bool) -> String {
    if categories.is_empty() {
        return no_data();
    }
    let (width, top, plot_h) = (960.0, 14.0, 190.0);
    let names: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    let max = series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let y = if fraction {
        Axis::fitted(0.0, 1.0, plot_h, false, true, false)
    } else {
        let counts = whole(series.iter().flat_map(|(_, v)| v.iter().copied()));
        Axis::fitted(0.0, if max > 0.0 { max } else { 1.0 }, plot_h, counts, true, false)
    };
    let legend = legend(&names, width, y_margin(&y), plot_h);
    let right = legend.right.max(16.0);
    // Category labels lie flat when they fit their group, else turn 35 degrees.
    let widest = categories.iter().map(|c| text_width(c)).fold(0.0, f64::max);
    let (cos, sin) = (35f64.to_radians().cos(), 35f64.to_radians().sin());
    let mut left = y_margin(&y);
    let mut group_w = (width - left - right) / categories.len() as f64;
    let turned = widest + 6.0 > group_w;
    if turned {
        // The first label, ending at its group's centre, reaches left of it.
        left = left.max(text_width(&categories[0]) * cos - group_w / 2.0 + 8.0);
        group_w = (width - left - right) / categories.len() as f64;
    }
    let bottom = if turned { widest * sin + 24.0 } else { 30.0 };
    let height = top + plot_h + bottom + legend.below;
    let bar_w = ((group_w - 8.0) / series.len().max(1) as f64).clamp(1.0, 24.0);
    let mut svg = open(width, height, "", Fit::Fill);
    y_axis(&mut svg, &y, left, top, width - left - right, plot_h);
    for (c, category) in categories.iter().enumerate() {
        let centre = left + (c as f64 + 0.5) * group_w;
        let x0 = centre - bar_w * series.len() as f64 / 2.0;
        for (s, (_, values)) in series.iter().enumerate() {
            let value = values.get(c).copied().filter(|v| v.is_finite()).unwrap_or(0.0).max(0.0);
            let bar_h = value / y.hi * plot_h;
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                x0 + s as f64 * bar_w,
                top + plot_h - bar_h,
                (bar_w - 2.0).max(1.0),
                bar_h,
                COLORS[s % COLORS.len()],
                escape(category),
                value
            );
        }
    }
    svg.push_str(r#"<g class="axis x">"#);
    for (c, category) in categories.iter().enumerate() {
        let (x, y) = (left + (c as f64 + 0.5) * group_w, top + plot_h + 16.0);
        let placed = if turned {
            format!(r#"x="{x:.1}" y="{y}" text-anchor="end" transform="rotate(-35 {x:.1} {y})""#)
        } else {
            format!(r#"x="{x:.1}" y="{y}" text-anchor="middle""#)
        };
        let _ = write!(svg, r#"<text class="tick" {placed}>{}</text>"#, escape(category));
    }
    svg.push_str("</g>");
    let origin =
        if legend.right > 0.0 { (width - legend.right + 12.0, top + 4.0) } else { (left, top + plot_h + bottom + 4.0) };
    draw_legend(&mut svg, &names, &legend, origin, 12.0);
    svg.push_str("</svg>");
    svg
}

/// The confusion matrix as a heatmap shaded by row-normalised share, labelled with counts or,
/// `normalised`, with each row's percentages.
pub fn heatmap(matrix: &[Vec<u64>], labels: &[String], normalised: bool) -> String {
    let n = matrix.len();
    if n == 0 || labels.is_empty() {
        return no_data();
    }
    let cell = 40.0;
    let widest = labels.iter().take(n).map(|l| text_width(l)).fold(0.0, f64::max);
    let diagonal = std::f64::consts::FRAC_1_SQRT_2;
    // Row labels at the left; column labels turned 45 degrees above, the last reaching right.
    let left = (widest + 12.0).max(30.0);
    let top = widest * diagonal + 20.0;
    let last = labels.get(n - 1).map(|l| text_width(l)).unwrap_or(0.0);
    let right = (last * diagonal - cell / 2.0 + 12.0).max(10.0);
    let (width, height) = (left + cell * n as f64 + right, top + cell * n as f64 + 10.0);
    let mut svg = open(width, height, "", Fit::Shrink);
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
            r#"<text x="{x:.1}" y="{:.1}" transform="rotate(-45 {x:.1} {:.1})">{}</text>"#,
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

    /// Each `<text class="...">` of `class` in `svg`, as (attributes, text).
    fn texts<'a>(svg: &'a str, class: &str) -> Vec<(&'a str, &'a str)> {
        let opening = format!("<text class=\"{class}\"");
        svg.split(opening.as_str())
            .skip(1)
            .filter_map(|rest| {
                let (attributes, rest) = rest.split_once('>')?;
                Some((attributes, rest.split_once("</text>")?.0))
            })
            .collect()
    }

    fn number(attributes: &str, name: &str) -> f64 {
        let start = attributes.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        attributes[start..].split('"').next().unwrap().parse().unwrap()
    }

    fn view_width(svg: &str) -> f64 {
        svg.split("viewBox=\"0 0 ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
    }

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

    #[test]
    fn tick_labels_have_the_fewest_digits_that_tell_them_apart() {
        assert_eq!(tick_labels(&[0.001, 0.002, 0.003], 0.001), ["0.001", "0.002", "0.003"]);
        assert_eq!(tick_labels(&[0.0, 0.25, 0.5, 0.75, 1.0], 0.25), ["0", "0.25", "0.5", "0.75", "1"]);
        assert_eq!(tick_labels(&[1.0, 2.0, 3.0], 1.0), ["1", "2", "3"]);
        assert_eq!(tick_labels(&[-0.0, 10.0], 10.0), ["0", "10"]);
        assert_eq!(tick_labels(&[0.0, 2e-8, 4e-8], 2e-8), ["0", "2e-8", "4e-8"]);
        assert_eq!(short_number(0.003), "0.003");
        let axis = Axis::linear(0.001, 0.003, 4, false, false);
        let labels: Vec<&str> = axis.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["0.001", "0.0015", "0.002", "0.0025", "0.003"]);
        let log = Axis::log(0.001f64.log10(), 0.01f64.log10(), 400.0);
        let labels: Vec<&str> = log.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["0.001", "0.002", "0.005", "0.01"]);
    }

    #[test]
    fn epochs_and_counts_get_whole_number_ticks_only() {
        for epochs in [1, 2, 3, 4, 7, 40] {
            let points: Vec<(f64, f64)> = (1..=epochs).map(|e| (e as f64, 1.0 / e as f64)).collect();
            let chart = line_chart(&[("loss".into(), points)], "epoch", "loss", Some(1.0));
            let ticks = texts(&chart, "tick");
            assert!(chart.contains(r#"<g class="axis x" data-integer="">"#), "{chart}");
            let x_axis = chart.split(r#"<g class="axis x""#).nth(1).unwrap().split("</g>").next().unwrap();
            let x: Vec<&str> = texts(x_axis, "tick").into_iter().map(|(_, t)| t).collect();
            assert!(!x.is_empty() && x.iter().all(|t| t.parse::<i64>().is_ok()), "{epochs} epochs: {x:?}");
            assert!(ticks.len() > x.len(), "y ticks too");
        }
        let counts = histogram(&[0.0, 0.5, 1.0], &[("n".into(), vec![1.0, 3.0])], "confidence");
        assert!(counts.contains(r#"<g class="axis y" data-integer="">"#), "{counts}");
    }

    #[test]
    fn every_label_lies_inside_its_chart() {
        // Long legend labels (the comparison page names runs by id and what differs) go under
        // the plot; each text's estimated extent stays within the view box.
        let long = |i: usize| format!("20261201-14080{i}-abcdef (training.learning_rate=0.00{i})");
        let series: Vec<(String, Vec<(f64, f64)>)> =
            (1..=3).map(|i| (long(i), vec![(1.0, 0.5), (2.0, 0.4 / i as f64)])).collect();
        let charts = [
            line_chart(&series, "epoch", "loss", None),
            scatter(&[(0.001, 0.9), (0.003, 0.95)], None, false, "training.learning_rate", "accuracy"),
            scatter(&[(0.0001, 0.9), (0.01, 0.95)], None, true, "training.learning_rate", "accuracy"),
            histogram(&[-12.5, 0.0, 12.5, 25.0], &[("residuals".into(), vec![1.0, 2.0, 3.0])], "residual"),
            parity(&[(1000.5, 999.0), (2000.25, 2100.0)], "actual", "predicted"),
        ];
        for chart in &charts {
            let width = view_width(chart);
            for class in ["tick", "legend-label", "axis-label"] {
                for (attributes, text) in texts(chart, class) {
                    let x = number(attributes, "x");
                    let w = text_width(text);
                    let (from, to) = if attributes.contains("text-anchor=\"middle\"") {
                        (x - w / 2.0, x + w / 2.0)
                    } else if attributes.contains("text-anchor=\"end\"") {
                        (x - w, x)
                    } else {
                        (x, x + w)
                    };
                    assert!(from >= 0.0 && to <= width, "{text:?} spans {from}..{to} of {width}: {chart}");
                }
            }
        }
        let sweep = &charts[1];
        let ticks: Vec<&str> = texts(sweep, "tick").into_iter().map(|(_, t)| t).collect();
        assert!(ticks.contains(&"0.003") && !ticks.iter().any(|t| t.ends_with('0') && t.contains('.')), "{ticks:?}");
    }
}
