//! What `harness clients` prints and writes: every run in the order it ran,
//! then per mode each client's medians with the loadgen/client ratios, and
//! the same as CSV in the columns earlier `loadgen-vs-wrk` files have.

use crate::format;
use crate::rig::client::ClientKind;
use crate::rig::cpus::Placement;
use crate::rig::measure::Sample;
use crate::rig::workload::PIPELINE_DEPTH;
use crate::schema::medians::median_f64;

use super::{ClientsArgs, Mode, RunRow, REQ_PATH};

/// One good run's figures, as the tables and the CSV show them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Responses per second.
    pub rps: f64,
    /// Responses.
    pub requests: u64,
    /// The client's CPU µs per response.
    pub cpu_us: f64,
    /// The client's CPU time / wall time, %.
    pub cli_pct: f64,
    /// nginx's CPU time / wall time, %.
    pub nginx_pct: f64,
    /// nginx's CPU µs per response.
    pub nginx_us: f64,
    /// Errors of every kind.
    pub errors: u64,
    /// Requests in flight at the end, abandoned (loadgen and oha report them).
    pub abandoned: u64,
}

impl Figures {
    /// The figures of `s`.
    pub fn of(s: &Sample) -> Figures {
        let nginx = s.server.user_s + s.server.system_s;
        Figures {
            rps: s.load.req_per_s,
            requests: s.load.requests,
            cpu_us: s.per_req(s.client_cpu_s),
            cli_pct: s.pct_of_wall(s.client_cpu_s),
            nginx_pct: s.pct_of_wall(nginx),
            nginx_us: s.per_req(nginx),
            errors: s.load.errors.total(),
            abandoned: s.load.abandoned,
        }
    }
}

/// One client's medians at one point (NaN where no run succeeded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Medians {
    rps: f64,
    cpu_us: f64,
    cli_pct: f64,
    nginx_pct: f64,
    nginx_us: f64,
    /// Errors summed over the runs.
    errors: u64,
    /// Runs that gave figures.
    ok: usize,
}

impl Medians {
    /// The medians of `figures`.
    pub fn of(figures: &[Figures]) -> Medians {
        let m = |get: fn(&Figures) -> f64| median_f64(figures.iter().map(get));
        Medians {
            rps: m(|f| f.rps),
            cpu_us: m(|f| f.cpu_us),
            cli_pct: m(|f| f.cli_pct),
            nginx_pct: m(|f| f.nginx_pct),
            nginx_us: m(|f| f.nginx_us),
            errors: figures.iter().map(|f| f.errors).sum(),
            ok: figures.len(),
        }
    }
}

/// loadgen against another client at one point.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// loadgen req/s / the client's (>= 1 is the target).
    pub ratio: Option<f64>,
    /// loadgen CPU µs/req / the client's (<= 1 is the target).
    pub cpu_ratio: Option<f64>,
    /// PASS, FAIL(req/s), FAIL(cpu), FAIL(req/s,cpu) or FAIL(no-data).
    pub result: String,
}

/// How loadgen's medians `lg` compare with another client's `other`.
pub fn verdict(lg: &Medians, other: &Medians) -> Verdict {
    let usable = |x: f64| x.is_finite() && x > 0.0;
    if ![lg.rps, lg.cpu_us, other.rps, other.cpu_us]
        .into_iter()
        .all(usable)
    {
        return Verdict {
            ratio: None,
            cpu_ratio: None,
            result: "FAIL(no-data)".into(),
        };
    }
    let (r, c) = (lg.rps / other.rps, lg.cpu_us / other.cpu_us);
    let why: Vec<&str> = [(r < 1.0, "req/s"), (c > 1.0, "cpu")]
        .iter()
        .filter(|(bad, _)| *bad)
        .map(|(_, w)| *w)
        .collect();
    Verdict {
        ratio: Some(r),
        cpu_ratio: Some(c),
        result: if why.is_empty() {
            "PASS".into()
        } else {
            format!("FAIL({})", why.join(","))
        },
    }
}

/// `v` with `dec` decimals, or `n/a`.
fn num(v: f64, dec: usize) -> String {
    if v.is_finite() {
        format!("{v:.dec$}")
    } else {
        "n/a".into()
    }
}

/// `v` with `dec` decimals, or nothing (an empty CSV cell).
fn cell(v: f64, dec: usize) -> String {
    if v.is_finite() {
        format!("{v:.dec$}")
    } else {
        String::new()
    }
}

/// The runs and the clients they were of.
pub struct Table<'a> {
    /// The options of the run.
    pub args: &'a ClientsArgs,
    /// The modes, in order.
    pub modes: &'a [Mode],
    /// The clients, in their order within a round.
    pub clients: &'a [ClientKind],
    /// Every run.
    pub rows: &'a [RunRow],
}

const RUNS_HDR: [&str; 12] = [
    "mode",
    "conns",
    "client",
    "run",
    "req/s",
    "requests",
    "cpu_us/req",
    "cli_cpu%",
    "nginx_cpu%",
    "nginx_us/req",
    "errors",
    "status",
];

const SUM_HDR: [&str; 12] = [
    "conns",
    "client",
    "req/s",
    "lg/x",
    "cpu_us/req",
    "cpu lg/x",
    "cli_cpu%",
    "nginx_cpu%",
    "nginx_us/req",
    "errors",
    "runs ok",
    "result",
];

fn runs_line(c: &[String]) -> String {
    format!(
        "{:<9} {:>6} {:<8} {:>4} {:>12} {:>11} {:>11} {:>9} {:>11} {:>13} {:>7}  {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]
    )
}

fn sum_line(c: &[String]) -> String {
    format!(
        "{:>6}  {:<8} {:>12} {:>7} {:>11} {:>9} {:>9} {:>11} {:>13} {:>7} {:>8}  {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]
    )
}

impl Table<'_> {
    /// The medians of `client` at (`mode`, `conns`).
    fn medians(&self, mode: Mode, conns: u32, client: ClientKind) -> Medians {
        let f: Vec<Figures> = self
            .rows
            .iter()
            .filter(|r| r.mode == mode && r.conns == conns && r.client == client)
            .filter_map(|r| r.result.as_ref().ok().map(Figures::of))
            .collect();
        Medians::of(&f)
    }

    /// The clients with runs in `mode`.
    fn clients_in(&self, mode: Mode) -> impl Iterator<Item = ClientKind> + '_ {
        self.clients.iter().copied().filter(move |k| mode.runs(*k))
    }

    /// Print the runs, the summaries and the notes.
    pub fn print(&self, notes: &[String], p: &Placement) {
        println!(
            "\nRuns, in the order they ran (GET {REQ_PATH}; nginx on CPU(s) {}; each client with {} thread(s) on CPU(s) {}; {}s per run; CLK_TCK={})",
            format::cpus(&p.server_cpus),
            self.args.client_threads,
            format::cpus(&p.client_cpus),
            self.args.duration.as_secs_f64().ceil(),
            crate::procfs::clock_ticks()
        );
        println!("{}", runs_line(&RUNS_HDR.map(String::from)));
        for r in self.rows {
            println!("{}", runs_line(&run_cells(r)));
        }
        for &mode in self.modes {
            self.print_summary(mode);
        }
        println!("\nTarget: lg/x (loadgen req/s / the client's) >= 1.0 and cpu lg/x (loadgen cpu_us/req / the client's) <= 1.0.");
        if !notes.is_empty() {
            println!("\nNotes (treat the numbers of these runs with suspicion):");
            for n in notes {
                println!("  {n}");
            }
        }
    }

    fn print_summary(&self, mode: Mode) {
        let title = match mode {
            Mode::Plain => "plain: one request per write".to_string(),
            Mode::Pipelined => format!("pipelined: {PIPELINE_DEPTH} requests per write (wrk -s wrk-pipeline.lua -- {PIPELINE_DEPTH}, loadgen --pipeline {PIPELINE_DEPTH})"),
        };
        println!(
            "\nSummary, {title}; medians of {} runs per client",
            self.args.runs
        );
        for k in self.clients.iter().filter(|k| !mode.runs(**k)) {
            println!("  ({} cannot pipeline: no runs, no row)", k.name());
        }
        println!("{}", sum_line(&SUM_HDR.map(String::from)));
        for &c in &self.args.conns {
            let lg = self.medians(mode, c, ClientKind::Loadgen);
            for k in self.clients_in(mode) {
                let m = self.medians(mode, c, k);
                let (ratio, cpu_ratio, result) = if k == ClientKind::Loadgen {
                    ("-".into(), "-".into(), String::new())
                } else {
                    let v = verdict(&lg, &m);
                    let r = |x: Option<f64>| x.map_or("n/a".into(), |x| format!("{x:.3}"));
                    (r(v.ratio), r(v.cpu_ratio), v.result)
                };
                println!(
                    "{}",
                    sum_line(&[
                        c.to_string(),
                        k.name().into(),
                        num(m.rps, 1),
                        ratio,
                        num(m.cpu_us, 3),
                        cpu_ratio,
                        num(m.cli_pct, 1),
                        num(m.nginx_pct, 1),
                        num(m.nginx_us, 3),
                        m.errors.to_string(),
                        format!("{}/{}", m.ok, self.args.runs),
                        result,
                    ])
                );
            }
        }
    }

    /// Every run, then per point each client's medians and each other
    /// client's `loadgen/CLIENT` ratios.
    pub fn csv(&self) -> String {
        let mut out = String::from("mode,conns,client,run,requests,req_per_s,cpu_us_per_req,client_cpu_pct,nginx_cpu_pct,nginx_us_per_req,errors,status\n");
        for r in self.rows {
            let (mode, client) = (r.mode.name(), r.client.name());
            match r.result.as_ref().ok().map(Figures::of) {
                Some(f) => out.push_str(&format!(
                    "{mode},{},{client},{},{},{:.2},{:.3},{:.1},{:.1},{:.3},{},ok\n",
                    r.conns,
                    r.run,
                    f.requests,
                    f.rps,
                    f.cpu_us,
                    f.cli_pct,
                    f.nginx_pct,
                    f.nginx_us,
                    f.errors
                )),
                None => out.push_str(&format!(
                    "{mode},{},{client},{},,,,,,,,failed\n",
                    r.conns, r.run
                )),
            }
        }
        for &mode in self.modes {
            for &c in &self.args.conns {
                self.csv_point(&mut out, mode, c);
            }
        }
        out
    }

    fn csv_point(&self, out: &mut String, mode: Mode, c: u32) {
        let name = mode.name();
        for k in self.clients_in(mode) {
            let m = self.medians(mode, c, k);
            out.push_str(&format!(
                "{name},{c},{},median,,{},{},{},{},{},{},{}_of_{}_ok\n",
                k.name(),
                cell(m.rps, 2),
                cell(m.cpu_us, 3),
                cell(m.cli_pct, 1),
                cell(m.nginx_pct, 1),
                cell(m.nginx_us, 3),
                m.errors,
                m.ok,
                self.args.runs
            ));
        }
        let lg = self.medians(mode, c, ClientKind::Loadgen);
        for k in self.clients_in(mode).filter(|k| *k != ClientKind::Loadgen) {
            let v = verdict(&lg, &self.medians(mode, c, k));
            let r = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x:.3}"));
            out.push_str(&format!(
                "{name},{c},loadgen/{},ratio,,{},{},,,,,{}\n",
                k.name(),
                r(v.ratio),
                r(v.cpu_ratio),
                v.result
            ));
        }
    }
}

/// `ok`, with the errors by kind and the requests abandoned at the end
/// when there are any.
fn status(s: &Sample) -> String {
    let mut why = Vec::new();
    if s.load.errors.total() > 0 {
        why.push(s.load.errors.describe());
    }
    if s.load.abandoned > 0 {
        why.push(format!(
            "{} in flight at the end, abandoned",
            s.load.abandoned
        ));
    }
    if why.is_empty() {
        "ok".into()
    } else {
        format!("ok ({})", why.join("; "))
    }
}

/// The cells of one run in the runs table.
fn run_cells(r: &RunRow) -> Vec<String> {
    let mut c = vec![
        r.mode.name().to_string(),
        r.conns.to_string(),
        r.client.name().to_string(),
        r.run.to_string(),
    ];
    match &r.result {
        Ok(s) => {
            let f = Figures::of(s);
            c.extend([
                format!("{:.1}", f.rps),
                f.requests.to_string(),
                format!("{:.2}", f.cpu_us),
                format!("{:.1}", f.cli_pct),
                format!("{:.1}", f.nginx_pct),
                format!("{:.2}", f.nginx_us),
                f.errors.to_string(),
                status(s),
            ]);
        }
        Err(m) => {
            c.extend(vec!["-".to_string(); 7]);
            c.push(format!("FAILED: {}", m.lines().next().unwrap_or("")));
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn med(rps: f64, cpu_us: f64) -> Medians {
        Medians {
            rps,
            cpu_us,
            cli_pct: 90.0,
            nginx_pct: 99.0,
            nginx_us: 10.0,
            errors: 0,
            ok: 3,
        }
    }

    #[test]
    fn verdicts() {
        let cases = [
            ((110.0, 8.0), (100.0, 10.0), "PASS"),
            ((90.0, 8.0), (100.0, 10.0), "FAIL(req/s)"),
            ((110.0, 12.0), (100.0, 10.0), "FAIL(cpu)"),
            ((90.0, 12.0), (100.0, 10.0), "FAIL(req/s,cpu)"),
            ((110.0, 8.0), (f64::NAN, f64::NAN), "FAIL(no-data)"),
        ];
        for ((lr, lc), (or, oc), want) in cases {
            let v = verdict(&med(lr, lc), &med(or, oc));
            assert_eq!(v.result, want, "loadgen {lr}/{lc} vs {or}/{oc}");
        }
        let v = verdict(&med(110.0, 8.0), &med(100.0, 10.0));
        assert_eq!((v.ratio, v.cpu_ratio), (Some(1.1), Some(0.8)));
    }

    #[test]
    fn medians_of_the_runs_with_their_errors_summed() {
        let f = |rps, errors| Figures {
            rps,
            requests: 1,
            cpu_us: 1.0,
            cli_pct: 1.0,
            nginx_pct: 1.0,
            nginx_us: 1.0,
            errors,
            abandoned: 0,
        };
        let m = Medians::of(&[f(3.0, 1), f(1.0, 0), f(2.0, 2)]);
        assert_eq!((m.rps, m.errors, m.ok), (2.0, 3, 3));
        assert!(Medians::of(&[]).rps.is_nan());
    }
}
