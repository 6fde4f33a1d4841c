//! The two bucket charts of `harness profile`, one stacked bar per server
//! in architecture order (nginx last), user-space buckets at the bottom in
//! warm colours and kernel buckets above them in cool ones, with a rule at
//! the user/kernel boundary:
//!
//! - [`View::MicrosPerRequest`], the headline (`cost-per-request.png`):
//!   each bucket's CPU microseconds per request, the total on top, so what
//!   an architecture step removes shows as a segment that shrinks or
//!   vanishes, and what stays as one that keeps its height;
//! - [`View::Shares`] (`bottleneck-migration.png`): each bar stacked to
//!   100%, so how much of each model's time sits in the kernel reads at a
//!   glance, whatever its total.

use std::io;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::schema::Bucket;

use super::font;
use super::plot::{io, page, text_style, with_legend, Area, GRID_BOLD, GRID_LIGHT, INK, MUTED};
use super::RunInfo;

/// What a chart's bars measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Percent of the samples; every bar sums to 100.
    Shares,
    /// CPU microseconds per request; a bar's height is its total.
    MicrosPerRequest,
}

/// One bar: a server's bucket values (in the chart's [`View`] unit, any
/// order) and an optional second line under its name.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketBar {
    /// The server's name under its bar.
    pub variant: String,
    /// Value per bucket: percent of the samples or µs per request.
    pub shares: Vec<(Bucket, f64)>,
    /// A second line under the name (e.g. syscalls per request).
    pub caption: Option<String>,
}

/// Warm for user space, cool for the kernel; neighbours in the stack differ
/// in lightness as well as hue, so adjacent parts stay apart in grey too.
pub fn colour(b: Bucket) -> RGBColor {
    match b {
        Bucket::App => RGBColor(214, 39, 40),
        Bucket::LibcAlloc => RGBColor(255, 160, 70),
        Bucket::Memcpy => RGBColor(166, 222, 232),
        Bucket::Scheduler => RGBColor(23, 160, 180),
        Bucket::FutexLocks => RGBColor(150, 110, 200),
        Bucket::Epoll => RGBColor(90, 190, 150),
        Bucket::VfsSendfile => RGBColor(176, 200, 235),
        Bucket::TcpIp => RGBColor(31, 100, 170),
        Bucket::Connection => RGBColor(225, 150, 240),
        Bucket::SyscallEntry => RGBColor(50, 52, 110),
        Bucket::Process => RGBColor(120, 125, 215),
        Bucket::OtherKernel => RGBColor(190, 190, 198),
    }
}

const WHITE_INK: RGBColor = RGBColor(255, 255, 255);

/// Whether text on `c` should be white.
fn dark(c: RGBColor) -> bool {
    0.299 * f64::from(c.0) + 0.587 * f64::from(c.1) + 0.114 * f64::from(c.2) < 140.0
}

/// Draw the chart into `path` (PNG, 1200×700).
pub fn render(path: &Path, bars: &[BucketBar], info: &RunInfo, view: View) -> io::Result<()> {
    font::ensure_registered()?;
    if bars.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no server to draw a bar for",
        ));
    }
    let (title, subtitle) = match view {
        View::Shares => (
            "Where each server's CPU time goes, in architecture order",
            "share of perf cpu-clock samples per bucket (DESIGN §7 classifier) · \
             user space at the bottom (warm), kernel above (cool) · each bar sums to 100%",
        ),
        View::MicrosPerRequest => (
            "What each request costs the server, in CPU microseconds, in architecture order",
            "the server's CPU time over the recording ÷ the requests it completed in it, split by \
             its perf samples' buckets (DESIGN §7) · user space at the bottom (warm), kernel above (cool)",
        ),
    };
    page(path, title, subtitle, info, |body| chart(body, bars, view))
}

/// The top of the y axis: 100 for shares; for µs the tallest bar plus room
/// for its label, rounded up to a whole step.
fn y_top(bars: &[BucketBar], view: View) -> f64 {
    match view {
        View::Shares => 100.0,
        View::MicrosPerRequest => {
            let tallest = bars
                .iter()
                .map(|b| b.shares.iter().map(|(_, v)| v.max(0.0)).sum::<f64>())
                .fold(0.0, f64::max);
            let step = if tallest > 50.0 { 10.0 } else { 2.0 };
            ((tallest * 1.08 / step).ceil() * step).max(step)
        }
    }
}

fn chart(body: &Area, bars: &[BucketBar], view: View) -> io::Result<()> {
    let (plot, legend) = with_legend(body);
    let n = bars.len();
    let top = y_top(bars, view);
    let mut chart = io(ChartBuilder::on(&plot)
        .margin_left(12)
        .margin_right(24)
        .margin_top(30)
        .margin_bottom(8)
        .x_label_area_size(62)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..top))?;
    io(chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(match view {
            View::Shares => "share of samples, %",
            View::MicrosPerRequest => "server CPU µs per request",
        })
        .y_labels(11)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(text_style(16, &INK))
        .axis_desc_style(text_style(18, &INK))
        .bold_line_style(GRID_BOLD)
        .light_line_style(GRID_LIGHT)
        .y_max_light_lines(1)
        .draw())?;

    let half = 0.3;
    let under = text_style(17, &INK).pos(Pos::new(HPos::Center, VPos::Top));
    let under_small = text_style(14, &MUTED).pos(Pos::new(HPos::Center, VPos::Top));
    let above = text_style(15, &INK).pos(Pos::new(HPos::Center, VPos::Bottom));
    let centre = Pos::new(HPos::Center, VPos::Center);
    for (i, bar) in bars.iter().enumerate() {
        let x = i as f64;
        let (l, r) = (x - half, x + half);
        let total: f64 = bar.shares.iter().map(|(_, s)| s.max(0.0)).sum();
        // Shares are normalised, so rounding in a CSV never leaves a gap or
        // an overflow; microseconds are drawn as they are.
        let scale = match view {
            View::Shares if total > 0.0 => 100.0 / total,
            View::Shares => 0.0,
            View::MicrosPerRequest => 1.0,
        };
        let height = total * scale;
        let mut y = 0.0;
        let mut boundary = None;
        for b in Bucket::ALL {
            let share: f64 = bar
                .shares
                .iter()
                .filter(|(x, _)| *x == b)
                .map(|(_, s)| s.max(0.0) * scale)
                .sum();
            if b.is_kernel() && boundary.is_none() {
                boundary = Some(y);
            }
            if share <= 0.0 {
                continue;
            }
            let c = colour(b);
            io(chart.draw_series([Rectangle::new([(l, y), (r, y + share)], c.filled())]))?;
            let tall = chart.backend_coord(&(x, y)).1 - chart.backend_coord(&(x, y + share)).1;
            if tall >= 17 {
                let style = if dark(c) {
                    text_style(13, &WHITE_INK)
                } else {
                    text_style(13, &INK)
                };
                let text = match view {
                    View::Shares => format!("{share:.0}%"),
                    View::MicrosPerRequest => format!("{share:.1}"),
                };
                io(chart.draw_series(std::iter::once(Text::new(
                    text,
                    (x, y + share / 2.0),
                    style.pos(centre),
                ))))?;
            }
            y += share;
        }
        io(chart.draw_series([Rectangle::new([(l, 0.0), (r, height)], INK.stroke_width(1))]))?;
        let kernel_from = boundary.unwrap_or(y);
        let label = match view {
            View::Shares => format!("kernel {:.0}%", 100.0 - kernel_from),
            View::MicrosPerRequest => format!("{height:.1} µs"),
        };
        io(chart.draw_series(std::iter::once(PathElement::new(
            vec![(l - 0.04, kernel_from), (r + 0.04, kernel_from)],
            INK.stroke_width(3),
        ))))?;
        io(chart.draw_series(std::iter::once(
            EmptyElement::at((x, height)) + Text::new(label, (0, -6), above.clone()),
        )))?;
        io(chart.draw_series(std::iter::once(
            EmptyElement::at((x, 0.0)) + Text::new(bar.variant.clone(), (0, 10), under.clone()),
        )))?;
        if let Some(c) = &bar.caption {
            io(chart.draw_series(std::iter::once(
                EmptyElement::at((x, 0.0)) + Text::new(c.clone(), (0, 32), under_small.clone()),
            )))?;
        }
    }
    draw_legend(&legend)
}

/// The buckets top to bottom as they stack, under "kernel" and "user space".
fn draw_legend(area: &Area) -> io::Result<()> {
    let label = text_style(15, &INK).pos(Pos::new(HPos::Left, VPos::Center));
    let head = text_style(15, &MUTED).pos(Pos::new(HPos::Left, VPos::Center));
    let mut y = 40;
    let mut last_kernel = None;
    for b in Bucket::ALL.iter().rev() {
        if last_kernel != Some(b.is_kernel()) {
            if last_kernel.is_some() {
                y += 8;
            }
            io(area.draw_text(
                if b.is_kernel() {
                    "kernel"
                } else {
                    "user space"
                },
                &head,
                (8, y),
            ))?;
            y += 24;
            last_kernel = Some(b.is_kernel());
        }
        io(area.draw(&Rectangle::new(
            [(10, y - 9), (34, y + 9)],
            colour(*b).filled(),
        )))?;
        io(area.draw(&Rectangle::new(
            [(10, y - 9), (34, y + 9)],
            INK.stroke_width(1),
        )))?;
        io(area.draw_text(b.name(), &label, (42, y)))?;
        y += 26;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_is_warm_and_kernel_is_cool() {
        for b in Bucket::ALL {
            let c = colour(b);
            if b.is_kernel() {
                assert!(c.2 >= c.0, "{b} {c:?}");
            } else {
                assert!(c.0 > c.2, "{b} {c:?}");
            }
        }
    }
}
