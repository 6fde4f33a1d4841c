//! The bottleneck-migration chart: one 100%-stacked bar per server in
//! architecture order (nginx last), user-space buckets at the bottom in
//! warm colours and kernel buckets above them in cool ones, with a rule at
//! the user/kernel boundary, so how much of each model's time has moved
//! into the kernel reads at a glance.

use std::io;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::schema::Bucket;

use super::font;
use super::plot::{io, page, text_style, with_legend, Area, GRID_BOLD, GRID_LIGHT, INK, MUTED};
use super::RunInfo;

/// One bar: a server's bucket shares (percent, any order) and an optional
/// second line under its name.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationBar {
    /// The server's name under its bar.
    pub variant: String,
    /// Share of the samples per bucket, percent.
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
pub fn render(path: &Path, bars: &[MigrationBar], info: &RunInfo) -> io::Result<()> {
    font::ensure_registered()?;
    if bars.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no server to draw a bar for",
        ));
    }
    let title = "Where each server's CPU time goes, in architecture order";
    let subtitle = "share of perf cpu-clock samples per bucket (DESIGN §7 classifier) · \
                    user space at the bottom (warm), kernel above (cool) · each bar sums to 100%";
    page(path, title, subtitle, info, |body| chart(body, bars))
}

fn chart(body: &Area, bars: &[MigrationBar]) -> io::Result<()> {
    let (plot, legend) = with_legend(body);
    let n = bars.len();
    let mut chart = io(ChartBuilder::on(&plot)
        .margin_left(12)
        .margin_right(24)
        .margin_top(30)
        .margin_bottom(8)
        .x_label_area_size(62)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..100.0))?;
    io(chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("share of samples, %")
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
        // Normalised, so rounding in a CSV never leaves a gap or an overflow.
        let scale = if total > 0.0 { 100.0 / total } else { 0.0 };
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
                io(chart.draw_series(std::iter::once(Text::new(
                    format!("{share:.0}%"),
                    (x, y + share / 2.0),
                    style.pos(centre),
                ))))?;
            }
            y += share;
        }
        io(chart.draw_series([Rectangle::new([(l, 0.0), (r, 100.0)], INK.stroke_width(1))]))?;
        let kernel_from = boundary.unwrap_or(y);
        io(chart.draw_series(std::iter::once(PathElement::new(
            vec![(l - 0.04, kernel_from), (r + 0.04, kernel_from)],
            INK.stroke_width(3),
        ))))?;
        io(chart.draw_series(std::iter::once(
            EmptyElement::at((x, 100.0))
                + Text::new(
                    format!("kernel {:.0}%", 100.0 - kernel_from),
                    (0, -6),
                    above.clone(),
                ),
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
