//! The files that put the servers side by side: `profiles/buckets.csv`
//! (every server's buckets in one tidy table), the two charts — CPU µs per
//! request per bucket (the headline) and the 100%-stacked shares — and the
//! profile section of `results/summary.md`.
//!
//! summary.md belongs to the bench report; the profile section is fenced by
//! [`BEGIN`]/[`END`] markers and only what lies between them is rewritten,
//! so rerunning either step leaves the other's text alone.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::format::thousands;
use crate::report::{self, BucketBar, RunInfo, View};

pub use crate::report::sections::{existing_section, replace_section, BEGIN, END};

use super::classify::Bucket;
use super::{diff, VariantProfile};

/// One row of `buckets.csv`: one bucket of one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketRow {
    /// The server.
    pub variant: String,
    /// The bucket's name.
    pub bucket: String,
    /// `user` or `kernel`.
    pub space: String,
    /// Samples in the bucket.
    pub samples: u64,
    /// Percent of the server's samples.
    pub share_pct: f64,
    /// The bucket's CPU microseconds per request (its share of the
    /// server's CPU time over the recording ÷ the requests completed in
    /// it); 0 when unknown.
    #[serde(default)]
    pub us_per_request: f64,
}

/// The rows of one profile, every bucket included (zeros too, so every
/// server has the same rows).
pub fn rows_of(p: &VariantProfile) -> Vec<BucketRow> {
    p.buckets
        .iter()
        .map(|b| BucketRow {
            variant: p.variant.clone(),
            bucket: b.bucket.clone(),
            space: Bucket::from_name(&b.bucket)
                .map_or("kernel", |x| x.space())
                .to_string(),
            samples: b.samples,
            share_pct: round4(b.share_pct),
            us_per_request: round4(b.us_per_request),
        })
        .collect()
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Write `rows` as buckets.csv.
pub fn write_buckets_csv(path: &Path, rows: &[BucketRow]) -> io::Result<()> {
    let mut w = csv::Writer::from_path(path).map_err(|e| in_file(path, e.into()))?;
    for r in rows {
        w.serialize(r).map_err(|e| in_file(path, e.into()))?;
    }
    w.flush().map_err(|e| in_file(path, e))
}

/// Read a buckets.csv written by [`write_buckets_csv`].
pub fn read_buckets_csv(path: &Path) -> io::Result<Vec<BucketRow>> {
    let mut r = csv::Reader::from_path(path).map_err(|e| in_file(path, e.into()))?;
    r.deserialize()
        .map(|row| row.map_err(|e| in_file(path, e.into())))
        .collect()
}

fn in_file(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// One stacked bar per server, in the order the rows come (a server's
/// buckets in [`Bucket::ALL`] order, unknown bucket names dropped), in the
/// unit of `view`.
pub fn bars(rows: &[BucketRow], view: View) -> Vec<BucketBar> {
    let mut out: Vec<BucketBar> = Vec::new();
    for r in rows {
        let Some(bucket) = Bucket::from_name(&r.bucket) else {
            continue;
        };
        if out.last().map_or(true, |b| b.variant != r.variant) {
            out.push(BucketBar {
                variant: r.variant.clone(),
                shares: Vec::new(),
                caption: None,
            });
        }
        let value = match view {
            View::Shares => r.share_pct,
            View::MicrosPerRequest => r.us_per_request,
        };
        if let Some(bar) = out.last_mut() {
            bar.shares.push((bucket, value));
        }
    }
    for bar in &mut out {
        bar.shares
            .sort_by_key(|(b, _)| Bucket::ALL.iter().position(|x| x == b));
    }
    out
}

/// Every `profile.json` under `out` (one directory per server), in report
/// order (the variants' architecture order, nginx last).
pub fn load_profiles(out: &Path) -> io::Result<Vec<VariantProfile>> {
    let mut profiles = Vec::new();
    for entry in fs::read_dir(out).map_err(|e| in_file(out, e))?.flatten() {
        let path = entry.path().join("profile.json");
        if !path.is_file() {
            continue;
        }
        let text = fs::read_to_string(&path).map_err(|e| in_file(&path, e))?;
        let p: VariantProfile = serde_json::from_str(&text)
            .map_err(|e| in_file(&path, io::Error::new(io::ErrorKind::InvalidData, e)))?;
        profiles.push(p);
    }
    sort(&mut profiles);
    Ok(profiles)
}

fn sort(profiles: &mut [VariantProfile]) {
    profiles.sort_by(|a, b| catalog::cmp(&a.variant, &b.variant));
}

/// Write `out/buckets.csv`, `results/bottleneck-migration.png`, the
/// differential flame graphs (`out/diff/`) and the profile section of
/// `results/summary.md` for `profiles`; `missing` names
/// servers that were meant to be there but failed. Returns the paths.
pub fn write_aggregate(
    out: &Path,
    results: &Path,
    profiles: &[VariantProfile],
    missing: &[String],
) -> io::Result<Vec<PathBuf>> {
    if profiles.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no profile to put side by side",
        ));
    }
    let mut profiles = profiles.to_vec();
    sort(&mut profiles);
    fs::create_dir_all(out).map_err(|e| in_file(out, e))?;
    fs::create_dir_all(results).map_err(|e| in_file(results, e))?;
    let mut written = Vec::new();

    let csv_path = out.join("buckets.csv");
    let rows: Vec<BucketRow> = profiles.iter().flat_map(rows_of).collect();
    write_buckets_csv(&csv_path, &rows)?;
    written.push(csv_path);

    let info = run_info(&profiles);
    let costed: Vec<&VariantProfile> = profiles
        .iter()
        .filter(|p| p.cpu_us_per_request > 0.0)
        .collect();
    if !costed.is_empty() {
        let rows: Vec<BucketRow> = costed.iter().flat_map(|p| rows_of(p)).collect();
        let mut bars = bars(&rows, View::MicrosPerRequest);
        // Short: eight bars share 1200 pixels (syscalls are under the shares chart).
        caption(&mut bars, &profiles, |p| {
            format!("CPU {:.0}% busy", p.server_cpus_busy_pct)
        });
        let png = results.join(COST_CHART_FILE);
        report::render_buckets(&png, &bars, &info, View::MicrosPerRequest)?;
        written.push(png);
    }
    let png = results.join(CHART_FILE);
    let mut bars = bars(&rows, View::Shares);
    caption(&mut bars, &profiles, |p| {
        format!("{:.2} sys/req", p.syscalls.per_request())
    });
    report::render_buckets(&png, &bars, &info, View::Shares)?;
    written.push(png);

    let diffs = diff::write_all(out, &profiles)?;
    written.extend(diff::files(&diffs));

    let md = results.join("summary.md");
    let old = fs::read_to_string(&md).unwrap_or_default();
    let section = section(&profiles, missing, out, results, &diffs);
    fs::write(&md, replace_section(&old, &section)).map_err(|e| in_file(&md, e))?;
    written.push(md);
    Ok(written)
}

/// The second line under each bar, from its server's profile.
fn caption(
    bars: &mut [BucketBar],
    profiles: &[VariantProfile],
    text: impl Fn(&VariantProfile) -> String,
) {
    for bar in bars {
        if let Some(p) = profiles.iter().find(|p| p.variant == bar.variant) {
            bar.caption = Some(text(p));
        }
    }
}

/// The shares chart's file name inside the results directory.
pub const CHART_FILE: &str = "bottleneck-migration.png";
/// The headline chart's file name inside the results directory.
pub const COST_CHART_FILE: &str = "cost-per-request.png";

/// The machine and settings the chart's footer shows.
pub fn run_info(profiles: &[VariantProfile]) -> RunInfo {
    let first = &profiles[0];
    let mut settings = vec![
        (
            "load".to_string(),
            format!(
                "{} at {} connections (loadgen on CPU(s) {})",
                first.request, first.connections, first.client_cpus
            ),
        ),
        (
            "recording".to_string(),
            format!(
                "perf record -e cpu-clock -g, {:.0} s per server, server on CPU(s) {}",
                first.record_s, first.server_cpus
            ),
        ),
        ("perf".to_string(), first.perf_version.clone()),
    ];
    let mixed = profiles.iter().any(|p| {
        p.request != first.request
            || p.connections != first.connections
            || p.record_s != first.record_s
    });
    if mixed {
        settings.push((
            "note".to_string(),
            "the servers were not all profiled under the same load".to_string(),
        ));
    }
    RunInfo {
        machine: first.machine.clone(),
        settings,
        cpu_chart_connections: first.connections,
    }
}

/// The markdown of the profile section, the differential flame graphs'
/// list (`diffs`) included.
pub fn section(
    profiles: &[VariantProfile],
    missing: &[String],
    out: &Path,
    results: &Path,
    diffs: &[diff::Entry],
) -> String {
    let first = &profiles[0];
    let rel = relative(out, results);
    let mut md = String::new();
    let _ = writeln!(md, "{BEGIN}");
    let _ = writeln!(md, "## Profiles: where the CPU time goes\n");
    let _ = writeln!(
        md,
        "`harness profile --all`: each server under {} at {} connections, `perf record -e \
         cpu-clock -g` on the server's CPUs, kept to its processes, for {:.0} s (server on CPU(s) {}, loadgen on CPU(s) \
         {}), then its syscalls counted with `perf stat` over a {:.0} s load. Machine: {}, {} \
         cores, Linux {}; revision `{}`; {}. Per server: `{rel}<server>/` holds report.txt, \
         flamegraph.svg, buckets.csv and syscalls.txt.\n",
        first.request,
        first.connections,
        first.record_s,
        first.server_cpus,
        first.client_cpus,
        first.syscalls.window_s,
        first.machine.cpu_model,
        first.machine.cores,
        first.machine.kernel,
        first.machine.git_revision,
        first.perf_version,
    );
    cost_table(&mut md, profiles);
    off_cpu_table(&mut md, profiles, &rel);
    let _ = writeln!(
        md,
        "| server | samples | server CPU % | user % | kernel % | (/proc sys %) | syscalls/req | syscall mix per request | top 5 symbols (self %) |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|---|---|");
    for p in profiles {
        let top = p
            .top_symbols
            .iter()
            .take(5)
            .map(|s| format!("`{}` {:.1}", s.symbol.replace('|', "\\|"), s.self_pct))
            .collect::<Vec<_>>()
            .join(" · ");
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.1} | {:.1} | ({:.0}) | {:.2} | {} | {} |",
            p.variant,
            thousands(p.samples as f64),
            p.server_cpu_pct,
            p.user_pct,
            p.kernel_pct,
            p.proc_system_pct,
            p.syscalls.per_request(),
            p.syscalls.mix_line(),
            top
        );
    }
    let _ = writeln!(md);
    let _ = write!(md, "| server |");
    for b in Bucket::ALL {
        let _ = write!(md, " {} |", b.name());
    }
    let _ = writeln!(md);
    let _ = write!(md, "|---|");
    for _ in Bucket::ALL {
        let _ = write!(md, "--:|");
    }
    let _ = writeln!(md);
    for p in profiles {
        let _ = write!(md, "| {} |", p.variant);
        for b in Bucket::ALL {
            let v = p
                .buckets
                .iter()
                .find(|x| x.bucket == b.name())
                .map_or(0.0, |x| x.share_pct);
            let _ = write!(md, " {v:.1} |");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "\nShares of perf samples per bucket (DESIGN §7; the rule table is in \
         `harness/src/profile/classify.rs`). User % and kernel % are exactly the shares of \
         samples taken in user and kernel mode; the bucket table only splits each side further. \
         Server CPU % is the server's CPU time during the recording over its length (100 = one \
         CPU busy all the time) and /proc sys % the system share of that time as the kernel \
         accounts it, a cross-check of the sampled kernel %.\n"
    );
    let _ = writeln!(md, "![bottleneck migration]({CHART_FILE})\n");
    md.push_str(&diff::markdown(diffs, &rel));
    let mut notes: Vec<String> = Vec::new();
    for m in missing {
        notes.push(format!(
            "{m}: no profile in this run (see the run's output)."
        ));
    }
    for p in profiles {
        for n in &p.notes {
            notes.push(format!("{}: {n}", p.variant));
        }
        if p.complete_user_stacks_pct < 20.0 {
            notes.push(format!(
                "{}: only {:.0}% of its user stacks reach the program's or a thread's entry \
                 (no frame pointers), so its flame graph's user side is shallow.",
                p.variant, p.complete_user_stacks_pct
            ));
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "Notes:\n");
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "{END}");
    md
}

/// The headline table: CPU µs per request per bucket, with what it was
/// divided from, and the chart drawn from it.
fn cost_table(md: &mut String, profiles: &[VariantProfile]) {
    let _ = writeln!(md, "### CPU microseconds per request, by bucket\n");
    let _ = write!(
        md,
        "| server | requests in the recording | server CPU % | busy % of the server CPUs | CPU µs/req |"
    );
    for b in Bucket::ALL {
        let _ = write!(md, " {} |", b.name());
    }
    let _ = write!(md, "\n|---|--:|--:|--:|--:|");
    for _ in Bucket::ALL {
        let _ = write!(md, "--:|");
    }
    let _ = writeln!(md);
    for p in profiles {
        if p.cpu_us_per_request <= 0.0 {
            let _ = writeln!(
                md,
                "| {} | unknown (see the notes) | {:.0} | {:.0} | — |",
                p.variant, p.server_cpu_pct, p.server_cpus_busy_pct
            );
            continue;
        }
        let _ = write!(
            md,
            "| {} | {} | {:.0} | {:.0} | **{:.2}** |",
            p.variant,
            thousands(p.window_requests as f64),
            p.server_cpu_pct,
            p.server_cpus_busy_pct,
            p.cpu_us_per_request
        );
        for b in Bucket::ALL {
            let v = p
                .buckets
                .iter()
                .find(|x| x.bucket == b.name())
                .map_or(0.0, |x| x.us_per_request);
            let _ = write!(md, " {v:.2} |");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "\nCPU µs/req is the server's CPU time over the recording ÷ the requests it completed \
         in the same window (its own counter — `/stats`, nginx's `stub_status` — read just \
         before and after); each bucket gets its share of the samples of it. Server CPU % is \
         that CPU time over the window (100 = one CPU); busy % of the server CPUs is how busy \
         those CPUs were by /proc/stat, whoever used them: below 100 the server waited for \
         work (or for the client).\n"
    );
    let _ = writeln!(md, "![CPU µs per request]({COST_CHART_FILE})\n");
}

/// Where the threads waited: one row per server that has an off-CPU
/// recording, with its flame graph linked.
fn off_cpu_table(md: &mut String, profiles: &[VariantProfile], rel: &str) {
    let with: Vec<&VariantProfile> = profiles.iter().filter(|p| p.off_cpu.is_some()).collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(md, "### Off the CPU: where the threads wait\n");
    let _ = writeln!(
        md,
        "| server | busy % of the server CPUs | threads off the CPU (thread-s per s) | waits per s | where they waited (% of the off-CPU time) | flame graph |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|---|---|");
    for p in with {
        let Some(o) = &p.off_cpu else { continue };
        let span = o.span_s.max(1e-9);
        let reasons = o
            .reasons
            .iter()
            .take(4)
            .map(|(r, pct)| format!("{r} {pct:.0}%"))
            .collect::<Vec<_>>()
            .join(" · ");
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.2} | {} | {} | [offcpu.svg]({rel}{}/offcpu.svg) |",
            p.variant,
            p.server_cpus_busy_pct,
            o.off_cpu_s / span,
            thousands(o.waits as f64 / span),
            reasons,
            p.variant
        );
    }
    let _ = writeln!(
        md,
        "\nOff-CPU time from `perf record -e sched:sched_switch -g -a -C <server CPUs>` under the \
         same load: each of the server's threads' waits from the switch that takes it off the CPU \
         to the one that puts it back, summed per stack, by the syscall it slept in (or \
         `preempted`: runnable, waiting for the CPU). Thread-seconds per second above 1 mean \
         several threads waiting at once. A thread asleep through the whole recording has no \
         switch in it and is not counted. Busy % is the server CPUs' utilisation by /proc/stat \
         during the main recording.\n"
    );
}

/// `../profiles/` for out=`profiles`, results=`results` (how summary.md
/// links the per-server directories); the path as given otherwise.
fn relative(out: &Path, results: &Path) -> String {
    let same_parent = out.parent() == results.parent();
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned());
    match name {
        Some(n) if same_parent && !out.is_absolute() => format!("../{n}/"),
        _ => format!("{}/", out.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links() {
        assert_eq!(
            relative(Path::new("profiles"), Path::new("results")),
            "../profiles/"
        );
        assert_eq!(relative(Path::new("/tmp/p"), Path::new("/x/r")), "/tmp/p/");
    }
}
