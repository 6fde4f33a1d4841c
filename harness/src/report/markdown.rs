//! `summary.md`: the run's context, one section per workload with a
//! computed one-line verdict, the table of medians and the charts, then notes
//! on anything that makes a figure less than it seems (trials without
//! requests, missing values, a substituted connection count).

use std::fmt::Write as _;

use crate::catalog::NGINX;
use crate::format::{self, grouped};
use crate::schema::medians::{self, cmp_nan_low, PointKey};
use crate::schema::{BenchRow, SummaryRow};

use super::plot::{closest_connections, Chart};
use super::RunInfo;

/// The header row of every summary table.
pub const TABLE_HEADER: &str = "| variant | workload | conns | req/s | p50 ms | p99 ms | errors | CPU µs/req (user + sys) | ctx switches (vol / invol) | peak RSS MiB |";
const TABLE_ALIGN: &str = "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|";

/// The whole of `summary.md`; `charts` are the files per workload.
pub fn render(
    rows: &[BenchRow],
    summary: &[SummaryRow],
    info: &RunInfo,
    charts: &[(String, Vec<Chart>)],
) -> String {
    let mut md = String::new();
    let m = &info.machine;
    let points = summary.len();
    let _ = writeln!(md, "# Bench results\n");
    let _ = writeln!(
        md,
        "- **Machine:** {}, {} cores, Linux {}",
        m.cpu_model, m.cores, m.kernel
    );
    let _ = writeln!(md, "- **Revision:** `{}`", m.git_revision);
    if info.settings.is_empty() {
        let _ = writeln!(md, "- **Settings:** (none recorded)");
    } else {
        let _ = writeln!(md, "- **Settings:**");
        for (name, value) in &info.settings {
            let _ = writeln!(md, "  - {name}: {value}");
        }
    }
    let _ = writeln!(
        md,
        "- **Data:** {} trials over {points} points in `bench.csv`; medians in `summary.csv`\n",
        rows.len()
    );
    let _ = writeln!(
        md,
        "Every figure is the median over the trials of its point. CPU µs per request is the \
         server's user + system CPU time (its threads and children included) divided by the \
         requests completed; user and system are medians of their own, so they may not add up \
         exactly to the total.\n"
    );

    for (workload, workload_charts) in charts {
        let rows_w: Vec<&SummaryRow> = summary.iter().filter(|r| &r.workload == workload).collect();
        let multi_client = rows_w.iter().any(|r| r.client != rows_w[0].client);
        let _ = writeln!(md, "## Workload `{workload}`\n");
        for line in verdicts(&rows_w) {
            let _ = writeln!(md, "{line}\n");
        }
        let _ = writeln!(md, "{TABLE_HEADER}\n{TABLE_ALIGN}");
        for r in &rows_w {
            let _ = writeln!(md, "{}", table_row(r, multi_client));
        }
        md.push('\n');
        for chart in workload_charts {
            let _ = writeln!(md, "![{}]({})\n", chart.title, chart.file_name);
        }
    }

    let notes = notes(rows, summary, info);
    if !notes.is_empty() {
        let _ = writeln!(md, "## Notes\n");
        for note in notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    md
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn table_row(r: &SummaryRow, multi_client: bool) -> String {
    let variant = if multi_client {
        format!("{} ({})", r.variant, r.client)
    } else {
        r.variant.clone()
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} ({} + {}) | {} / {} | {} |",
        cell(&variant),
        cell(&r.workload),
        r.connections,
        format::rate(r.req_per_s),
        format::ms(r.p50_us),
        format::ms(r.p99_us),
        grouped(r.errors),
        format::num(r.cpu_us_per_req),
        format::num(r.user_us_per_req),
        format::num(r.system_us_per_req),
        grouped(r.ctx_switches_voluntary),
        grouped(r.ctx_switches_involuntary),
        format::mib(r.peak_rss_kib),
    )
}

/// One line per client: the fastest variant at each connection count and
/// its req/s relative to nginx's at the same point.
fn verdicts(rows: &[&SummaryRow]) -> Vec<String> {
    let mut clients: Vec<&str> = rows.iter().map(|r| r.client.as_str()).collect();
    clients.sort_unstable();
    clients.dedup();
    let mut lines = Vec::new();
    for client in &clients {
        let of_client: Vec<&SummaryRow> = rows
            .iter()
            .copied()
            .filter(|r| r.client == *client)
            .collect();
        let has_nginx = of_client.iter().any(|r| r.variant == NGINX);
        let mut conns: Vec<u32> = of_client.iter().map(|r| r.connections).collect();
        conns.sort_unstable();
        conns.dedup();
        let mut parts = Vec::new();
        for c in conns {
            let at: Vec<&SummaryRow> = of_client
                .iter()
                .copied()
                .filter(|r| r.connections == c)
                .collect();
            let best = at
                .iter()
                .filter(|r| r.variant != NGINX && r.req_per_s.is_finite())
                .max_by(|a, b| cmp_nan_low(a.req_per_s, b.req_per_s));
            let Some(best) = best else { continue };
            let mut part = format!(
                "{c} → **{}** {} req/s",
                best.variant,
                format::rate(best.req_per_s)
            );
            let nginx = at.iter().find(|r| r.variant == NGINX).map(|r| r.req_per_s);
            match nginx {
                Some(n) if n.is_finite() && n > 0.0 => {
                    let _ = write!(part, " ({:.2}× nginx)", best.req_per_s / n);
                }
                Some(_) => part.push_str(" (nginx: no requests)"),
                None if has_nginx => part.push_str(" (nginx not measured here)"),
                None => {}
            }
            parts.push(part);
        }
        if parts.is_empty() {
            continue;
        }
        let by = if clients.len() > 1 {
            format!(" with {client}")
        } else {
            String::new()
        };
        let tail = if has_nginx {
            ""
        } else {
            " (nginx not measured)"
        };
        lines.push(format!(
            "**Fastest variant per connection count{by}**{tail}: {}",
            parts.join(" · ")
        ));
    }
    lines
}

fn notes(rows: &[BenchRow], summary: &[SummaryRow], info: &RunInfo) -> Vec<String> {
    let mut notes = Vec::new();
    for (key, trials) in medians::group(rows) {
        let name = point_name(&key);
        let zero = trials.iter().filter(|r| r.requests == 0).count();
        if zero > 0 {
            notes.push(format!(
                "{name}: {zero} of {} trial(s) completed no request; their CPU µs per request counts as 0.",
                trials.len()
            ));
        }
        let missing = trials
            .iter()
            .filter(|r| {
                [
                    r.req_per_s,
                    r.p50_us,
                    r.p90_us,
                    r.p99_us,
                    r.p99_9_us,
                    r.max_us,
                ]
                .iter()
                .any(|v| v.is_nan())
            })
            .count();
        if missing > 0 {
            notes.push(format!(
                "{name}: {missing} of {} trial(s) had values that are not numbers; medians use the other trials (– where none had one).",
                trials.len()
            ));
        }
    }
    for workload in medians::workloads(rows) {
        let mut conns: Vec<u32> = summary
            .iter()
            .filter(|r| r.workload == workload)
            .map(|r| r.connections)
            .collect();
        conns.sort_unstable();
        conns.dedup();
        if let Some(at) = closest_connections(&conns, info.cpu_chart_connections) {
            if at != info.cpu_chart_connections {
                notes.push(format!(
                    "`{workload}`: no point at {} connections, so its CPU chart shows {at} connections.",
                    info.cpu_chart_connections
                ));
            }
        }
    }
    let mut revisions: Vec<&str> = rows.iter().map(|r| r.git_revision.as_str()).collect();
    revisions.sort_unstable();
    revisions.dedup();
    if revisions != [info.machine.git_revision.as_str()] {
        notes.push(format!(
            "The rows were measured at revision(s) {}, the report was written at `{}`.",
            revisions
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", "),
            info.machine.git_revision
        ));
    }
    notes
}

fn point_name(key: &PointKey) -> String {
    format!(
        "`{}` {} @ {} connections ({})",
        key.variant, key.workload, key.connections, key.client
    )
}
