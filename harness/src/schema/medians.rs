//! Medians per point: variant × workload × connections × client.
//!
//! Medians rather than means because one trial disturbed by the machine
//! (a cron job, a frequency drop) should not move the reported figure.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::catalog;

use super::{BenchRow, SummaryRow};

/// The identity of one point of the sweep.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PointKey {
    /// The server.
    pub variant: String,
    /// The workload.
    pub workload: String,
    /// Connections.
    pub connections: u32,
    /// The load generator (points driven by different clients are not merged).
    pub client: String,
}

impl PointKey {
    /// The point a row belongs to.
    pub fn of(row: &BenchRow) -> PointKey {
        PointKey {
            variant: row.variant.clone(),
            workload: row.workload.clone(),
            connections: row.connections,
            client: row.client.clone(),
        }
    }
}

/// The workloads present, in the order they first appear in `rows` (the
/// runner's order).
pub fn workloads(rows: &[BenchRow]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for row in rows {
        if !seen.contains(&row.workload) {
            seen.push(row.workload.clone());
        }
    }
    seen
}

/// Trials grouped by point, in report order: workload (first appearance),
/// variant (blocking, threadpool, epoll, ..., nginx last), connections, client.
pub fn group(rows: &[BenchRow]) -> Vec<(PointKey, Vec<&BenchRow>)> {
    let mut index: HashMap<PointKey, usize> = HashMap::new();
    let mut groups: Vec<(PointKey, Vec<&BenchRow>)> = Vec::new();
    for row in rows {
        let key = PointKey::of(row);
        match index.get(&key) {
            Some(&i) => groups[i].1.push(row),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![row]));
            }
        }
    }
    let order = workloads(rows);
    let workload_rank = |w: &str| order.iter().position(|o| o == w);
    groups.sort_by(|(a, _), (b, _)| {
        workload_rank(&a.workload)
            .cmp(&workload_rank(&b.workload))
            .then_with(|| catalog::cmp(&a.variant, &b.variant))
            .then_with(|| a.connections.cmp(&b.connections))
            .then_with(|| a.client.cmp(&b.client))
    });
    groups
}

/// One [`SummaryRow`] per point, in the order of [`group`].
pub fn summarize(rows: &[BenchRow]) -> Vec<SummaryRow> {
    group(rows)
        .into_iter()
        .map(|(key, trials)| summarize_point(key, &trials))
        .collect()
}

fn summarize_point(key: PointKey, trials: &[&BenchRow]) -> SummaryRow {
    let f = |get: fn(&BenchRow) -> f64| median_f64(trials.iter().map(|r| get(r)));
    let u = |get: fn(&BenchRow) -> u64| median_u64(trials.iter().map(|r| get(r)));
    let first = trials[0];
    SummaryRow {
        variant: key.variant,
        workload: key.workload,
        connections: key.connections,
        client: key.client,
        trials: u32::try_from(trials.len()).unwrap_or(u32::MAX),
        req_per_s: f(|r| r.req_per_s),
        p50_us: f(|r| r.p50_us),
        p90_us: f(|r| r.p90_us),
        p99_us: f(|r| r.p99_us),
        p99_9_us: f(|r| r.p99_9_us),
        max_us: f(|r| r.max_us),
        errors: u(total_errors),
        cpu_us_per_req: f(|r| cpu_per_req(r).total),
        user_us_per_req: f(|r| cpu_per_req(r).user),
        system_us_per_req: f(|r| cpu_per_req(r).system),
        ctx_switches_voluntary: u(|r| r.ctx_switches_voluntary),
        ctx_switches_involuntary: u(|r| r.ctx_switches_involuntary),
        peak_rss_kib: u(|r| r.peak_rss_kib),
        cpu_model: first.cpu_model.clone(),
        cores: first.cores,
        kernel: first.kernel.clone(),
        git_revision: first.git_revision.clone(),
    }
}

/// Every error kind of one trial, added up.
pub fn total_errors(row: &BenchRow) -> u64 {
    [
        row.errors_connect,
        row.errors_read,
        row.errors_write,
        row.errors_timeout,
        row.errors_status,
    ]
    .iter()
    .fold(0u64, |sum, e| sum.saturating_add(*e))
}

/// CPU microseconds per request of one trial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuPerReq {
    /// User + system CPU µs per request.
    pub total: f64,
    /// User CPU µs per request.
    pub user: f64,
    /// System CPU µs per request.
    pub system: f64,
}

/// The trial's CPU per request: its own fields when they are numbers,
/// recomputed from the CPU seconds otherwise, and 0 when the trial completed
/// no request (there is nothing to divide by; the report notes it).
pub fn cpu_per_req(row: &BenchRow) -> CpuPerReq {
    if row.requests == 0 {
        return CpuPerReq {
            total: 0.0,
            user: 0.0,
            system: 0.0,
        };
    }
    let per = |field: f64, seconds: f64| {
        if field.is_finite() {
            field
        } else {
            seconds * 1e6 / row.requests as f64
        }
    };
    CpuPerReq {
        total: per(row.cpu_us_per_req, row.cpu_user_s + row.cpu_system_s),
        user: per(row.user_us_per_req, row.cpu_user_s),
        system: per(row.system_us_per_req, row.cpu_system_s),
    }
}

/// Median of the values that are numbers (NaN left out); NaN if none is.
/// An even count gives the mean of the two middle values.
pub fn median_f64(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        v[mid - 1] / 2.0 + v[mid] / 2.0
    }
}

/// Median of counters; an even count gives the mean of the two middle
/// values, rounded half up. 0 for no values.
pub fn median_u64(values: impl Iterator<Item = u64>) -> u64 {
    let mut v: Vec<u64> = values.collect();
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (u128::from(v[mid - 1]) + u128::from(v[mid])).div_ceil(2) as u64
    }
}

/// Order of two floats for picking a maximum: NaN counts as smallest.
pub fn cmp_nan_low(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.total_cmp(&b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert!(median_f64([].into_iter()).is_nan());
        assert!(median_f64([f64::NAN].into_iter()).is_nan());
        assert_eq!(median_f64([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median_f64([4.0, 1.0, 2.0, 3.0].into_iter()), 2.5);
        assert_eq!(median_f64([f64::NAN, 1.0, 3.0].into_iter()), 2.0);
        assert_eq!(median_u64([].into_iter()), 0);
        assert_eq!(median_u64([5, 1, 3].into_iter()), 3);
        assert_eq!(median_u64([1, 2].into_iter()), 2);
        assert_eq!(median_u64([2, 2].into_iter()), 2);
        assert_eq!(median_u64([u64::MAX, u64::MAX].into_iter()), u64::MAX);
    }
}
