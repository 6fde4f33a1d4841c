//! The PNG charts, one set per workload: req/s and p99 latency against
//! connections (one line per variant, nginx dashed), and the server's CPU
//! time per request split user/system at one connection count.
//!
//! Every chart carries the machine, revision and settings in its footer, so
//! a PNG pasted on its own still says where its numbers came from. The
//! legend sits beside the plot rather than on it, so it never hides a line.

use std::fmt::Display;
use std::io;
use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::element::{ComposedElement, DashedPathElement};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::catalog;
use crate::format;
use crate::schema::SummaryRow;

use super::font::{self, FAMILY};
use super::looks::{self, Line, Look, Marker};
use super::RunInfo;

/// Size of every chart, pixels.
pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 700;

/// Width of the legend column right of the plot.
const LEGEND_WIDTH: u32 = 210;
/// Height of the title and subtitle band.
const HEAD_HEIGHT: u32 = 78;
const FOOTER_LINE: u32 = 21;

pub(super) const INK: RGBColor = RGBColor(25, 25, 25);
pub(super) const MUTED: RGBColor = RGBColor(90, 90, 90);
pub(super) const GRID_BOLD: RGBColor = RGBColor(215, 215, 215);
pub(super) const GRID_LIGHT: RGBColor = RGBColor(238, 238, 238);
const FOOTER_RULE: RGBColor = RGBColor(200, 200, 200);

pub(super) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// One chart written by [`render_workload`].
#[derive(Debug, Clone)]
pub struct Chart {
    /// File name inside the report directory.
    pub file_name: String,
    /// The chart's title, usable as alt text.
    pub title: String,
}

/// The file-name form of a workload: anything but `[A-Za-z0-9_-]` becomes `_`.
pub fn file_stem(workload: &str) -> String {
    workload
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The connection count of the CPU chart: `wanted` when it was measured,
/// otherwise the closest measured one (the lower on a tie).
pub fn closest_connections(available: &[u32], wanted: u32) -> Option<u32> {
    available
        .iter()
        .copied()
        .min_by_key(|&c| (c.abs_diff(wanted), c))
}

/// Draw the three charts of `workload` from its summary rows into `dir`.
pub fn render_workload(
    dir: &Path,
    workload: &str,
    summary: &[SummaryRow],
    info: &RunInfo,
) -> io::Result<Vec<Chart>> {
    font::ensure_registered()?;
    let rows: Vec<&SummaryRow> = summary.iter().filter(|r| r.workload == workload).collect();
    let series = Series::collect(&rows);
    let mut conns: Vec<u32> = rows.iter().map(|r| r.connections).collect();
    conns.sort_unstable();
    conns.dedup();
    let trials = trials_text(&rows);
    let clients = clients_text(&rows);
    let stem = file_stem(workload);
    let mut charts = Vec::new();

    let chart = Chart {
        file_name: format!("req_per_s_{stem}.png"),
        title: format!("Requests per second vs connections — {workload}"),
    };
    let subtitle = format!("higher is better · {clients} · {trials}");
    let path = dir.join(&chart.file_name);
    page(&path, &chart.title, &subtitle, info, |body| {
        rate_chart(body, &conns, &series)
    })?;
    charts.push(chart);

    let chart = Chart {
        file_name: format!("p99_{stem}.png"),
        title: format!("p99 latency vs connections — {workload}"),
    };
    let subtitle = format!("lower is better · {clients} · {trials}");
    let path = dir.join(&chart.file_name);
    page(&path, &chart.title, &subtitle, info, |body| {
        p99_chart(body, &conns, &series)
    })?;
    charts.push(chart);

    let at = closest_connections(&conns, info.cpu_chart_connections).unwrap_or(0);
    let at_text = if at == info.cpu_chart_connections {
        format!("at {at} connections")
    } else {
        format!(
            "at {at} connections (closest to {})",
            info.cpu_chart_connections
        )
    };
    let chart = Chart {
        file_name: format!("cpu_per_req_{stem}.png"),
        title: format!("Server CPU µs per request {at_text} — {workload}"),
    };
    let subtitle = format!(
        "lower is better · user and system time of the server process tree / completed requests · {clients} · {trials}"
    );
    let path = dir.join(&chart.file_name);
    let bars: Vec<(&Series, &SummaryRow)> = series
        .iter()
        .filter_map(|s| s.at(at).map(|r| (s, r)))
        .collect();
    page(&path, &chart.title, &subtitle, info, |body| {
        cpu_chart(body, &bars)
    })?;
    charts.push(chart);

    Ok(charts)
}

/// One line of a chart: a variant (and client, when several were used).
struct Series<'r> {
    label: String,
    /// Second legend line (the client), when several clients were used.
    detail: Option<String>,
    look: Look,
    /// Points sorted by connections.
    rows: Vec<&'r SummaryRow>,
}

impl<'r> Series<'r> {
    /// Rows arrive in report order (variant, connections, client).
    fn collect(rows: &[&'r SummaryRow]) -> Vec<Series<'r>> {
        let multi_client = rows.iter().any(|r| r.client != rows[0].client);
        let unknown = looks::unknown_names(rows.iter().map(|r| r.variant.as_str()));
        let mut keys: Vec<(&str, &str)> = Vec::new();
        for r in rows {
            if !keys.contains(&(&r.variant, &r.client)) {
                keys.push((&r.variant, &r.client));
            }
        }
        keys.sort_by(|a, b| catalog::cmp(a.0, b.0).then_with(|| a.1.cmp(b.1)));
        let mut clients: Vec<&str> = rows.iter().map(|r| r.client.as_str()).collect();
        clients.sort_unstable();
        clients.dedup();
        keys.into_iter()
            .map(|(variant, client)| {
                let mut look = looks::look(variant, &unknown);
                // Same colour and marker for one variant under every client;
                // the lines of the second and later clients are dotted.
                if clients.first() != Some(&client) {
                    look.line = Line::Dotted;
                }
                let mut points: Vec<&SummaryRow> = rows
                    .iter()
                    .copied()
                    .filter(|r| r.variant == variant && r.client == client)
                    .collect();
                points.sort_by_key(|r| r.connections);
                Series {
                    label: variant.to_string(),
                    detail: multi_client.then(|| client.to_string()),
                    look,
                    rows: points,
                }
            })
            .collect()
    }

    fn at(&self, connections: u32) -> Option<&'r SummaryRow> {
        self.rows
            .iter()
            .copied()
            .find(|r| r.connections == connections)
    }

    /// (connections, value) for the finite values `get` picks.
    fn points(&self, get: impl Fn(&SummaryRow) -> f64) -> Vec<(f64, f64)> {
        self.rows
            .iter()
            .map(|r| (f64::from(r.connections), get(r)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    }

    fn bar_label(&self) -> String {
        match &self.detail {
            Some(client) => format!("{}/{client}", self.label),
            None => self.label.clone(),
        }
    }
}

fn trials_text(rows: &[&SummaryRow]) -> String {
    let lo = rows.iter().map(|r| r.trials).min().unwrap_or(0);
    let hi = rows.iter().map(|r| r.trials).max().unwrap_or(0);
    let n = if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}–{hi}")
    };
    let s = if hi == 1 { "" } else { "s" };
    format!("median of {n} trial{s} per point")
}

fn clients_text(rows: &[&SummaryRow]) -> String {
    let mut clients: Vec<&str> = rows.iter().map(|r| r.client.as_str()).collect();
    clients.sort_unstable();
    clients.dedup();
    format!("client {}", clients.join(", "))
}

/// Map a drawing error to an io::Error.
pub(super) fn io<T, E: Display>(r: Result<T, E>) -> io::Result<T> {
    r.map_err(|e| io::Error::other(format!("drawing chart: {e}")))
}

pub(super) fn text_style(size: u32, colour: &'static RGBColor) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(colour)
}

fn bold_style(size: u32, colour: &'static RGBColor) -> TextStyle<'static> {
    // Not `.into_font().style(Bold)`: that keeps the regular glyphs.
    FontDesc::new(FontFamily::Name(FAMILY), f64::from(size), FontStyle::Bold).color(colour)
}

/// A 1200×700 PNG at `path`: title, subtitle, `body` and the footer.
pub(super) fn page(
    path: &Path,
    title: &str,
    subtitle: &str,
    info: &RunInfo,
    body: impl FnOnce(&Area) -> io::Result<()>,
) -> io::Result<()> {
    draw_page(path, title, subtitle, info, body)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn draw_page(
    path: &Path,
    title: &str,
    subtitle: &str,
    info: &RunInfo,
    body: impl FnOnce(&Area) -> io::Result<()>,
) -> io::Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    io(root.fill(&WHITE))?;

    let footer_style = text_style(15, &MUTED);
    let lines = footer_lines(&root, info, &footer_style)?;
    let footer_height = FOOTER_LINE * lines.len() as u32 + 14;
    let (upper, footer) = root.split_vertically(HEIGHT - footer_height);
    let (head, main) = upper.split_vertically(HEAD_HEIGHT);

    let centre = (WIDTH / 2) as i32;
    let top = Pos::new(HPos::Center, VPos::Top);
    let title_style = fit(&head, title, 25, |size| bold_style(size, &INK))?;
    io(head.draw_text(title, &title_style.pos(top), (centre, 14)))?;
    let subtitle_style = fit(&head, subtitle, 16, |size| text_style(size, &MUTED))?;
    io(head.draw_text(subtitle, &subtitle_style.pos(top), (centre, 48)))?;

    io(footer.draw(&PathElement::new(
        vec![(20, 2), (WIDTH as i32 - 20, 2)],
        FOOTER_RULE.stroke_width(1),
    )))?;
    for (i, line) in lines.iter().enumerate() {
        let y = 9 + (i as u32 * FOOTER_LINE) as i32;
        io(footer.draw_text(line, &footer_style, (20, y)))?;
    }

    body(&main)?;
    io(root.present())
}

/// The style `make(size)` for the largest size up to `size` (down to 11)
/// at which `text` fits the page width with a margin.
fn fit(
    area: &Area,
    text: &str,
    size: u32,
    make: impl Fn(u32) -> TextStyle<'static>,
) -> io::Result<TextStyle<'static>> {
    let mut size = size;
    while size > 11 && io(area.estimate_text_size(text, &make(size)))?.0 > WIDTH - 30 {
        size -= 1;
    }
    Ok(make(size))
}

/// Machine and revision on the first line, the settings wrapped below.
fn footer_lines(area: &Area, info: &RunInfo, style: &TextStyle) -> io::Result<Vec<String>> {
    let m = &info.machine;
    let mut lines = vec![format!(
        "Machine: {} · {} cores · Linux {} · revision {}",
        m.cpu_model, m.cores, m.kernel, m.git_revision
    )];
    let max_width = WIDTH - 40;
    let mut line = String::from("Settings:");
    let mut empty = true;
    for (name, value) in &info.settings {
        let item = format!("{name}: {value}");
        let candidate = if empty {
            format!("{line} {item}")
        } else {
            format!("{line} · {item}")
        };
        let (w, _) = io(area.estimate_text_size(&candidate, style))?;
        if w > max_width && !empty {
            lines.push(line);
            line = format!("    {item}");
        } else {
            line = candidate;
        }
        empty = false;
    }
    if !empty {
        lines.push(line);
    }
    Ok(lines)
}

/// Split `body` into the plot and the legend column.
pub(super) fn with_legend<'a>(body: &Area<'a>) -> (Area<'a>, Area<'a>) {
    body.split_horizontally(WIDTH - LEGEND_WIDTH)
}

/// The log-scale x axis: the measured connection counts as ticks.
fn x_axis(conns: &[u32]) -> (f64, f64, Vec<f64>) {
    let lo = f64::from(*conns.first().unwrap_or(&1)).max(1.0);
    let hi = f64::from(*conns.last().unwrap_or(&1)).max(lo);
    let ticks = conns.iter().map(|&c| f64::from(c)).collect();
    if hi / lo < 2.0 {
        (lo / 1.6, hi * 1.6, ticks)
    } else {
        (lo / 1.2, hi * 1.2, ticks)
    }
}

fn rate_chart(body: &Area, conns: &[u32], series: &[Series]) -> io::Result<()> {
    let lines: Vec<(Look, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| (s.look, s.points(|r| r.req_per_s)))
        .collect();
    let max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(0.0f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let (plot, legend) = with_legend(body);
    let (x_lo, x_hi, x_ticks) = x_axis(conns);
    line_plot(
        &plot,
        (x_lo..x_hi).log_scale().with_key_points(x_ticks),
        0.0..top,
        "requests per second",
        &lines,
    )?;
    draw_legend(&legend, series)
}

fn p99_chart(body: &Area, conns: &[u32], series: &[Series]) -> io::Result<()> {
    let lines: Vec<(Look, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| (s.look, s.points(|r| r.p99_us / 1000.0)))
        .collect();
    let values = || lines.iter().flat_map(|(_, p)| p.iter().map(|&(_, y)| y));
    let max = values().fold(0.0f64, f64::max);
    let min_positive = values().filter(|&y| y > 0.0).fold(f64::INFINITY, f64::min);
    let (plot, legend) = with_legend(body);
    let (x_lo, x_hi, x_ticks) = x_axis(conns);
    let x = (x_lo..x_hi).log_scale().with_key_points(x_ticks);
    // A wide range (one variant queueing at 100× another's latency) would
    // flatten every other line onto the axis: switch to log then.
    let wide = min_positive.is_finite() && max / min_positive >= 20.0;
    if wide {
        let lo = min_positive / 1.5;
        let hi = max * 1.5;
        // Points ≤ 0 have no place on a log axis.
        let positive: Vec<(Look, Vec<(f64, f64)>)> = lines
            .into_iter()
            .map(|(look, p)| (look, p.into_iter().filter(|&(_, y)| y > 0.0).collect()))
            .collect();
        line_plot(
            &plot,
            x,
            (lo..hi).log_scale().with_key_points(ticks_125(lo, hi)),
            "p99 latency, ms (log scale)",
            &positive,
        )?;
    } else {
        let top = if max > 0.0 { max * 1.1 } else { 1.0 };
        line_plot(&plot, x, 0.0..top, "p99 latency, ms", &lines)?;
    }
    draw_legend(&legend, series)
}

/// 1, 2, 5, 10, 20, 50, ... within `lo..=hi`.
fn ticks_125(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let t = decade * m;
            if t >= lo && t <= hi {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

fn line_plot<X, Y>(
    plot: &Area,
    x: X,
    y: Y,
    y_desc: &str,
    lines: &[(Look, Vec<(f64, f64)>)],
) -> io::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = io(ChartBuilder::on(plot)
        .margin_left(12)
        .margin_right(24)
        .margin_top(8)
        .margin_bottom(8)
        .x_label_area_size(58)
        .y_label_area_size(92)
        .build_cartesian_2d(x, y))?;
    io(chart
        .configure_mesh()
        .x_desc("concurrent connections (log scale)")
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{}", v.round()))
        .y_label_formatter(&|v| format::short(*v))
        .label_style(text_style(16, &INK))
        .axis_desc_style(text_style(18, &INK))
        .bold_line_style(GRID_BOLD)
        .light_line_style(GRID_LIGHT)
        .y_max_light_lines(1)
        .draw())?;
    for (look, points) in lines {
        let stroke = look.colour.stroke_width(3);
        match look.line {
            Line::Solid => io(chart.draw_series(LineSeries::new(points.clone(), stroke)))?,
            Line::Dashed => {
                io(chart.draw_series(DashedLineSeries::new(points.clone(), 12, 8, stroke)))?
            }
            Line::Dotted => {
                io(chart.draw_series(DashedLineSeries::new(points.clone(), 3, 6, stroke)))?
            }
        };
        io(chart.draw_series(points.iter().map(|&p| marker(look.marker, p, look.colour))))?;
    }
    Ok(())
}

/// The outline of marker `m` around (0, 0), pixels. Every shape is a filled
/// polygon, so all markers share one element type.
fn marker_shape(m: Marker) -> Vec<(i32, i32)> {
    let round = |n: usize, radius: f64, inner: Option<f64>| -> Vec<(i32, i32)> {
        let count = if inner.is_some() { n * 2 } else { n };
        (0..count)
            .map(|i| {
                let r = match inner {
                    Some(inner) if i % 2 == 1 => inner,
                    _ => radius,
                };
                let a =
                    std::f64::consts::TAU * i as f64 / count as f64 - std::f64::consts::FRAC_PI_2;
                ((r * a.cos()).round() as i32, (r * a.sin()).round() as i32)
            })
            .collect()
    };
    match m {
        Marker::Circle => round(16, 6.5, None),
        Marker::Square => vec![(-5, -5), (5, -5), (5, 5), (-5, 5)],
        Marker::Triangle => vec![(0, -8), (7, 5), (-7, 5)],
        Marker::TriangleDown => vec![(0, 8), (7, -5), (-7, -5)],
        Marker::Diamond => vec![(0, -8), (7, 0), (0, 8), (-7, 0)],
        Marker::Cross => vec![
            (-6, -8),
            (0, -2),
            (6, -8),
            (8, -6),
            (2, 0),
            (8, 6),
            (6, 8),
            (0, 2),
            (-6, 8),
            (-8, 6),
            (-2, 0),
            (-8, -6),
        ],
        Marker::Star => round(5, 9.0, Some(4.0)),
    }
}

/// Marker `m` centred on `at`.
/// A marker: filled shape plus rim, in pixels around a chart coordinate.
type MarkerElement<C, DB> = ComposedElement<C, DB, Polygon<Pixel>, PathElement<Pixel>>;
/// A backend coordinate (plotters' `BackendCoord`, not re-exported).
type Pixel = (i32, i32);

/// Marker `m` centred on `at`: filled, with a white rim that keeps it
/// visible where it sits on another variant's line.
fn marker<C, DB: DrawingBackend>(m: Marker, at: C, colour: RGBColor) -> MarkerElement<C, DB> {
    let shape = marker_shape(m);
    let mut rim = shape.clone();
    rim.push(shape[0]);
    EmptyElement::at(at)
        + Polygon::new(shape, colour.filled())
        + PathElement::new(rim, WHITE.stroke_width(1))
}

fn draw_legend(area: &Area, series: &[Series]) -> io::Result<()> {
    let label = text_style(17, &INK).pos(Pos::new(HPos::Left, VPos::Center));
    let detail = text_style(14, &MUTED).pos(Pos::new(HPos::Left, VPos::Center));
    let row_height = if series.iter().any(|s| s.detail.is_some()) {
        44
    } else {
        30
    };
    let x0 = 6;
    let y0 = 28;
    let height = row_height * series.len() as i32 + 12;
    io(area.draw(&Rectangle::new(
        [
            (x0 - 4, y0 - 20),
            (LEGEND_WIDTH as i32 - 12, y0 - 20 + height),
        ],
        GRID_BOLD.stroke_width(1),
    )))?;
    for (i, s) in series.iter().enumerate() {
        let y = y0 + row_height * i as i32;
        let stroke = s.look.colour.stroke_width(3);
        let sample = vec![(x0 + 4, y), (x0 + 52, y)];
        match s.look.line {
            Line::Solid => io(area.draw(&PathElement::new(sample, stroke)))?,
            Line::Dashed => io(area.draw(&DashedPathElement::new(sample, 9, 5, stroke)))?,
            Line::Dotted => io(area.draw(&DashedPathElement::new(sample, 3, 5, stroke)))?,
        }
        io(area.draw(&marker(s.look.marker, (x0 + 28, y), s.look.colour)))?;
        io(area.draw_text(&s.label, &label, (x0 + 62, y)))?;
        if let Some(d) = &s.detail {
            io(area.draw_text(d, &detail, (x0 + 62, y + 18)))?;
        }
    }
    Ok(())
}

/// Lighter shade of `c` for the system-time part of a bar.
fn light(c: RGBColor) -> RGBColor {
    let mix = |v: u8| (f64::from(v) + (255.0 - f64::from(v)) * 0.55).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

fn cpu_chart(body: &Area, bars: &[(&Series, &SummaryRow)]) -> io::Result<()> {
    let (plot, legend) = with_legend(body);
    let clean = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let max = bars
        .iter()
        .map(|(_, r)| clean(r.user_us_per_req) + clean(r.system_us_per_req))
        .fold(0.0f64, f64::max);
    let top = if max > 0.0 { max * 1.15 } else { 1.0 };
    let n = bars.len().max(1);
    let labels: Vec<String> = bars.iter().map(|(s, _)| s.bar_label()).collect();
    let x = -0.5..n as f64 - 0.5;
    let mut chart = io(ChartBuilder::on(&plot)
        .margin_left(12)
        .margin_right(24)
        .margin_top(8)
        .margin_bottom(8)
        .x_label_area_size(58)
        .y_label_area_size(92)
        .build_cartesian_2d(x, 0.0..top))?;
    io(chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("variant")
        .y_desc("CPU µs per request")
        .x_labels(0)
        .y_label_formatter(&|v| format::short(*v))
        .label_style(text_style(16, &INK))
        .axis_desc_style(text_style(18, &INK))
        .bold_line_style(GRID_BOLD)
        .light_line_style(GRID_LIGHT)
        .y_max_light_lines(1)
        .draw())?;

    let half = 0.32;
    let above = text_style(16, &INK).pos(Pos::new(HPos::Center, VPos::Bottom));
    let centre = Pos::new(HPos::Center, VPos::Center);
    // White on the dark (user) part, black on the light (system) part.
    let inside_user = text_style(14, &WHITE).pos(centre);
    let inside_system = text_style(14, &INK).pos(centre);
    // The variant names go under their bars (the mesh cannot put ticks at
    // chosen places on an f64 axis).
    let under = text_style(16, &INK).pos(Pos::new(HPos::Center, VPos::Top));
    io(
        chart.draw_series(labels.iter().enumerate().map(|(i, label)| {
            EmptyElement::at((i as f64, 0.0)) + Text::new(label.clone(), (0, 10), under.clone())
        })),
    )?;
    for (i, (s, row)) in bars.iter().enumerate() {
        let x = i as f64;
        let user = clean(row.user_us_per_req);
        let system = clean(row.system_us_per_req);
        let total = user + system;
        let (l, r) = (x - half, x + half);
        let colour = s.look.colour;
        io(chart.draw_series([
            Rectangle::new([(l, 0.0), (r, user)], colour.filled()),
            Rectangle::new([(l, user), (r, total)], light(colour).filled()),
            Rectangle::new([(l, 0.0), (r, total)], INK.stroke_width(1)),
        ]))?;
        let no_requests = !(row.req_per_s.is_finite() && row.req_per_s > 0.0);
        let caption = if no_requests {
            "no requests".to_string()
        } else {
            format!("{} µs", format::num(total))
        };
        io(chart.draw_series(std::iter::once(
            EmptyElement::at((x, total)) + Text::new(caption, (0, -6), above.clone()),
        )))?;
        // Name each part inside it when it is tall enough to hold the text.
        for (name, lo, hi, style) in [
            ("user", 0.0, user, &inside_user),
            ("sys", user, total, &inside_system),
        ] {
            let tall = chart.backend_coord(&(x, lo)).1 - chart.backend_coord(&(x, hi)).1;
            if tall >= 22 {
                let text = format!("{name} {}", format::num(hi - lo));
                io(chart.draw_series(std::iter::once(Text::new(
                    text,
                    (x, (lo + hi) / 2.0),
                    style.clone(),
                ))))?;
            }
        }
    }

    // Legend: what the two shades of each bar mean.
    let label = text_style(17, &INK).pos(Pos::new(HPos::Left, VPos::Center));
    let sample = RGBColor(90, 90, 90);
    for (i, (name, colour)) in [("system (light)", light(sample)), ("user (dark)", sample)]
        .into_iter()
        .enumerate()
    {
        let y = 28 + 34 * i as i32;
        io(legend.draw(&Rectangle::new(
            [(10, y - 11), (40, y + 11)],
            colour.filled(),
        )))?;
        io(legend.draw(&Rectangle::new(
            [(10, y - 11), (40, y + 11)],
            INK.stroke_width(1),
        )))?;
        io(legend.draw_text(name, &label, (50, y)))?;
    }
    let note = text_style(14, &MUTED).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, line) in ["each part is the median", "over the trials"]
        .iter()
        .enumerate()
    {
        io(legend.draw_text(line, &note, (10, 100 + 20 * i as i32)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest() {
        assert_eq!(closest_connections(&[], 400), None);
        assert_eq!(closest_connections(&[50, 100, 400], 400), Some(400));
        assert_eq!(closest_connections(&[50, 100, 800], 400), Some(100));
        assert_eq!(closest_connections(&[200, 600], 400), Some(200));
        assert_eq!(closest_connections(&[50, 1200], 1000), Some(1200));
    }

    #[test]
    fn ticks() {
        assert_eq!(ticks_125(0.3, 60.0), [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
    }

    #[test]
    fn stems() {
        assert_eq!(file_stem("static-1k"), "static-1k");
        assert_eq!(file_stem("a b/c"), "a_b_c");
    }
}
