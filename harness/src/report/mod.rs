//! Bench reports: `bench.csv`, `summary.csv`, the PNG plots and `summary.md`.
//!
//! One module per output: [`csv`] writes the tidy rows and the medians,
//! [`summarize`] computes the medians, `plot` draws the charts (with a font
//! compiled in, see `font`) and `markdown` ties them into `summary.md`.
//! `migration` draws `harness profile`'s two bucket charts (CPU µs per
//! request, and shares) with the same page layout.

pub mod csv;
mod font;
mod looks;
mod markdown;
mod migration;
mod plot;
pub mod sections;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::schema::medians;
use crate::schema::BenchRow;
use sections::existing_section;

pub use crate::schema::RunInfo;
pub use migration::{colour as bucket_colour, render as render_buckets, BucketBar, View};

/// Write every report file for `rows` into `dir`; returns the paths written.
///
/// Order: `bench.csv`, `summary.csv`, the PNGs (`req_per_s_<workload>.png`,
/// `p99_<workload>.png`, `cpu_per_req_<workload>.png` per workload, in the
/// order the workloads first appear in `rows`), then `summary.md`. The CSVs
/// are written first so the measurements survive a failure to draw.
/// Empty `rows` is an `InvalidInput` error: there is nothing to report.
pub fn write_all(dir: &Path, rows: &[BenchRow], info: &RunInfo) -> io::Result<Vec<PathBuf>> {
    if rows.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no bench rows to report: no variant produced a measurement",
        ));
    }
    fs::create_dir_all(dir).map_err(|e| in_file(dir, e))?;
    let mut written = Vec::new();

    let bench = dir.join("bench.csv");
    self::csv::write_rows(&bench, rows)?;
    written.push(bench);

    let summary = medians::summarize(rows);
    let summary_csv = dir.join("summary.csv");
    self::csv::write_rows(&summary_csv, &summary)?;
    written.push(summary_csv);

    let mut charts = Vec::new();
    for workload in medians::workloads(rows) {
        let drawn = plot::render_workload(dir, &workload, &summary, info)?;
        written.extend(drawn.iter().map(|c| dir.join(&c.file_name)));
        charts.push((workload, drawn));
    }

    let md = dir.join("summary.md");
    let mut text = markdown::render(rows, &summary, info, &charts);
    // The profile section (`harness profile --all`) is not the bench's to drop.
    if let Some(profile) = fs::read_to_string(&md)
        .ok()
        .as_deref()
        .and_then(existing_section)
    {
        text = format!("{}\n\n{profile}\n", text.trim_end());
    }
    fs::write(&md, text).map_err(|e| in_file(&md, e))?;
    written.push(md);
    Ok(written)
}

/// `e` with the path it happened at.
fn in_file(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
