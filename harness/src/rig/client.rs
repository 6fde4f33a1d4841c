//! The load generator side of a point: the project's `loadgen` (its
//! `--json` result read back), `wrk` (its report parsed, plus exact
//! figures from a generated Lua `done` hook) or, for `harness clients`,
//! oha (its JSON result, [`super::oha`]), pinned to the client CPUs.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::process;
use super::server::tail_of;
use crate::format::wrk::parse_time_us;
use crate::loadgen::json::Report as LoadgenReport;

/// Which load generator drives the sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// The project's loadgen (`--json` output).
    #[default]
    Loadgen,
    /// wrk (text output parsed).
    Wrk,
    /// oha (`--output-format json`). Only `harness clients` runs it: it
    /// cannot pipeline, so it is not a `harness bench --client`.
    #[value(skip)]
    Oha,
}

impl ClientKind {
    /// The name in the results and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Loadgen => "loadgen",
            ClientKind::Wrk => "wrk",
            ClientKind::Oha => "oha",
        }
    }

    /// Every kind, in the order `harness clients` runs them by default.
    pub const ALL: [ClientKind; 3] = [ClientKind::Wrk, ClientKind::Oha, ClientKind::Loadgen];

    /// The kind called `name` on the command line.
    pub fn from_name(name: &str) -> Option<ClientKind> {
        ClientKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether it can write requests back to back on a connection.
    pub fn can_pipeline(self) -> bool {
        self != ClientKind::Oha
    }

    /// The command that installs (or builds) it.
    pub fn install_hint(self) -> &'static str {
        match self {
            ClientKind::Loadgen => "cargo build --release -p harness",
            ClientKind::Wrk => "apt-get install wrk",
            ClientKind::Oha => "cargo install oha",
        }
    }
}

/// The client program and where it runs.
#[derive(Debug, Clone)]
pub struct Client {
    /// loadgen, wrk or oha: decides the command line and how the result is read.
    pub kind: ClientKind,
    /// The binary.
    pub program: PathBuf,
    /// Where it is pinned: never the server's CPUs.
    pub cpus: Vec<usize>,
    /// `-t` (oha: `--worker-threads`): at most this many threads (never
    /// more than connections).
    pub threads: usize,
    /// wrk only: scripts/wrk-pipeline.lua, for pipelined loads.
    pub wrk_pipeline_script: Option<PathBuf>,
}

/// One load: where, how many connections, how long, how deep a pipeline.
#[derive(Debug, Clone)]
pub struct Load {
    /// The full URL requested.
    pub url: String,
    /// Its path (wrk's pipeline script needs it apart).
    pub path: String,
    /// Open connections.
    pub connections: u32,
    /// Length of the load.
    pub duration: Duration,
    /// Requests written back to back per connection (1 = no pipelining).
    pub pipeline: usize,
    /// Every request says `Connection: close`: a new connection each.
    pub close: bool,
}

/// Error counts by kind (a request or connection counted once).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Errors {
    /// Connections that could not be opened.
    pub connect: u64,
    /// Reads that failed (resets included).
    pub read: u64,
    /// Writes that failed.
    pub write: u64,
    /// Requests without an answer in time.
    pub timeout: u64,
    /// Responses outside 200-399.
    pub status: u64,
}

impl Errors {
    /// Every error, whatever its kind.
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.status
    }

    /// `timeout 12, status 3` (only the non-zero kinds).
    pub fn describe(&self) -> String {
        [
            ("connect", self.connect),
            ("read", self.read),
            ("write", self.write),
            ("timeout", self.timeout),
            ("status", self.status),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// What a client measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Completed responses (any status).
    pub requests: u64,
    /// Measured length of the load, seconds.
    pub duration_s: f64,
    /// Completed responses per second.
    pub req_per_s: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 90th percentile latency, µs.
    pub p90_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub p99_9_us: f64,
    /// Highest latency, µs.
    pub max_us: f64,
    /// Failures by kind.
    pub errors: Errors,
    /// Requests in flight when the run ended, abandoned: neither responses
    /// nor errors (loadgen's `in_flight_at_end`, oha's "aborted due to
    /// deadline"; wrk drops its own uncounted).
    pub abandoned: u64,
}

#[derive(Debug)]
/// Why a client run gave no measurement.
pub enum ClientError {
    /// Ctrl-C during the run (the client was stopped).
    Interrupted,
    /// It failed: why, with the tail of its output.
    Failed(String),
}

/// Hang guard: a client still running this long past its duration is killed.
const OVERRUN: Duration = Duration::from_secs(30);

impl Client {
    /// `-t` for `connections`.
    fn threads_for(&self, connections: u32) -> usize {
        self.threads.clamp(1, connections.max(1) as usize)
    }

    /// The command line for `load` (without the program), with its result
    /// going to files under `scratch` named after `tag`.
    fn args(&self, load: &Load, scratch: &Path, tag: &str) -> Result<Vec<OsString>, String> {
        let t = self.threads_for(load.connections).to_string();
        let c = load.connections.to_string();
        match self.kind {
            ClientKind::Loadgen => {
                let mut a: Vec<OsString> = vec![
                    "-t".into(),
                    t.into(),
                    "-c".into(),
                    c.into(),
                    "-d".into(),
                    format!("{}ms", load.duration.as_millis().max(1)).into(),
                    "--json".into(),
                    scratch.join(format!("{tag}.json")).into(),
                ];
                if load.pipeline > 1 {
                    a.push("--pipeline".into());
                    a.push(load.pipeline.to_string().into());
                }
                if load.close {
                    a.extend(["-H".into(), "Connection: close".into()]);
                }
                a.push(load.url.clone().into());
                Ok(a)
            }
            ClientKind::Wrk => {
                let script = scratch.join(format!("{tag}.lua"));
                let pipeline = if load.pipeline > 1 {
                    Some(self.wrk_pipeline_script.as_deref().ok_or(
                        "scripts/wrk-pipeline.lua not found: wrk cannot pipeline without it",
                    )?)
                } else {
                    None
                };
                fs::write(&script, wrk_script(pipeline))
                    .map_err(|e| format!("writing {}: {e}", script.display()))?;
                let mut a: Vec<OsString> = vec![
                    "-t".into(),
                    t.into(),
                    "-c".into(),
                    c.into(),
                    "-d".into(),
                    format!("{}s", wrk_seconds(load.duration)).into(),
                    "--latency".into(),
                    "-s".into(),
                    script.into(),
                ];
                if load.close {
                    a.extend(["-H".into(), "Connection: close".into()]);
                }
                a.push(load.url.clone().into());
                if load.pipeline > 1 {
                    a.extend([
                        "--".into(),
                        load.pipeline.to_string().into(),
                        load.path.clone().into(),
                    ]);
                }
                Ok(a)
            }
            ClientKind::Oha => super::oha::args(
                load,
                self.threads_for(load.connections),
                &scratch.join(format!("{tag}.json")),
            ),
        }
    }

    /// Run `load` to completion and read what it measured.
    pub fn run(&self, load: &Load, scratch: &Path, tag: &str) -> Result<Measured, ClientError> {
        self.start(load, scratch, tag)?.finish()
    }

    /// Start `load` in the background (the profiler records the server
    /// while it runs); [`RunningClient::finish`] waits for it and reads
    /// what it measured.
    pub fn start(
        &self,
        load: &Load,
        scratch: &Path,
        tag: &str,
    ) -> Result<RunningClient, ClientError> {
        let args = self.args(load, scratch, tag).map_err(ClientError::Failed)?;
        let out_path = scratch.join(format!("{tag}.out"));
        let err_path = scratch.join(format!("{tag}.err"));
        let json_path = scratch.join(format!("{tag}.json"));
        let _ = fs::remove_file(&json_path);
        let open = |p: &Path| {
            File::create(p)
                .map_err(|e| ClientError::Failed(format!("creating {}: {e}", p.display())))
        };
        let mut cmd = Command::new(&self.program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(open(&out_path)?)
            .stderr(open(&err_path)?);
        process::confine(&mut cmd, &self.cpus)
            .map_err(|e| ClientError::Failed(format!("preparing CPU pinning: {e}")))?;
        let child = cmd.spawn().map_err(|e| {
            ClientError::Failed(format!("starting {}: {e}", self.program.display()))
        })?;
        Ok(RunningClient {
            kind: self.kind,
            child,
            duration: load.duration,
            deadline: Instant::now() + load.duration + OVERRUN,
            out_path,
            err_path,
            json_path,
        })
    }
}

/// A client run in progress. Dropping it kills the client.
pub struct RunningClient {
    kind: ClientKind,
    child: Child,
    duration: Duration,
    deadline: Instant,
    out_path: PathBuf,
    err_path: PathBuf,
    json_path: PathBuf,
}

impl RunningClient {
    /// The client's pid (perf and the profiler watch it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (without reaping it for good: `finish` still
    /// reads its status).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for the run to end (Ctrl-C stops it early; a hang past its
    /// duration is killed) and read what it measured.
    pub fn finish(mut self) -> Result<Measured, ClientError> {
        let (out_path, err_path) = (self.out_path.clone(), self.err_path.clone());
        let status: ExitStatus = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st;
            }
            if process::interrupted() {
                // Both clients stop early on SIGINT; the partial run is
                // discarded.
                process::signal(self.child.id(), libc::SIGINT);
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                process::signal_group(self.child.id(), libc::SIGKILL);
                let _ = self.child.wait();
                return Err(ClientError::Interrupted);
            }
            if Instant::now() >= self.deadline {
                process::signal_group(self.child.id(), libc::SIGKILL);
                let _ = self.child.wait();
                return Err(ClientError::Failed(format!(
                    "{} still running {OVERRUN:?} after its {:?} run: killed\n{}",
                    self.kind.name(),
                    self.duration,
                    output_tail(&out_path, &err_path)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let failed = |why: String| {
            ClientError::Failed(format!("{why}\n{}", output_tail(&out_path, &err_path)))
        };
        if !status.success() {
            return Err(failed(format!("{} exited with {status}", self.kind.name())));
        }
        match self.kind {
            ClientKind::Loadgen => {
                let text = fs::read_to_string(&self.json_path).map_err(|e| {
                    failed(format!(
                        "reading its --json {}: {e}",
                        self.json_path.display()
                    ))
                })?;
                parse_loadgen_json(&text).map_err(failed)
            }
            ClientKind::Wrk => {
                let text = fs::read_to_string(&out_path).unwrap_or_default();
                parse_wrk(&text).map_err(failed)
            }
            ClientKind::Oha => {
                let text = fs::read_to_string(&self.json_path).map_err(|e| {
                    failed(format!(
                        "reading its JSON result {}: {e}",
                        self.json_path.display()
                    ))
                })?;
                super::oha::parse_json(&text).map_err(failed)
            }
        }
    }
}

impl Drop for RunningClient {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            process::signal_group(self.child.id(), libc::SIGKILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn output_tail(out: &Path, err: &Path) -> String {
    let mut s = String::new();
    for (name, p) in [("stdout", out), ("stderr", err)] {
        let t = tail_of(p, 8);
        if !t.is_empty() {
            s.push_str(&format!("client {name}:\n{t}"));
        }
    }
    s
}

/// wrk takes whole seconds.
fn wrk_seconds(d: Duration) -> u64 {
    (d.as_secs_f64().ceil() as u64).max(1)
}

/// The Lua script given to wrk: an optional pipeline script (loaded as is,
/// taking its DEPTH and PATH arguments after `--`), and a `done` hook that
/// prints wrk's exact totals and percentiles (wrk's report rounds them and
/// has no 90th or 99.9th percentile) on one line.
pub fn wrk_script(pipeline: Option<&Path>) -> String {
    let mut s = String::from("-- generated by `harness bench`\n");
    if let Some(p) = pipeline {
        s.push_str(&format!("dofile({:?})\n", p.to_string_lossy()));
    }
    s.push_str(
        r#"done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("harness-wrk: requests=%d duration_us=%d p50=%.1f p90=%.1f p99=%.1f p99_9=%.1f max=%.1f connect=%d read=%d write=%d timeout=%d status=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max,
      e.connect, e.read, e.write, e.timeout, e.status))
end
"#,
    );
    s
}

/// Read loadgen's `--json` result (the layout of [`crate::loadgen::json`],
/// read by the same type that writes it).
pub fn parse_loadgen_json(text: &str) -> Result<Measured, String> {
    let j: LoadgenReport =
        serde_json::from_str(text).map_err(|e| format!("loadgen --json output unreadable: {e}"))?;
    let (l, e) = (&j.latency_us, &j.errors);
    Ok(Measured {
        requests: j.requests,
        duration_s: j.duration_s,
        req_per_s: j.requests_per_sec,
        p50_us: l.p50 as f64,
        p90_us: l.p90 as f64,
        p99_us: l.p99 as f64,
        p99_9_us: l.p99_9 as f64,
        max_us: l.max as f64,
        errors: Errors {
            connect: e.connect,
            read: e.read,
            write: e.write,
            timeout: e.timeout,
            status: e.status,
        },
        abandoned: j.in_flight_at_end,
    })
}

/// Parse wrk's report. The standard text gives requests, duration, req/s,
/// the 50/90/99th percentiles (90th from `--latency`), max and errors; the
/// `harness-wrk:` line of the generated `done` hook, when present, replaces
/// them with exact values and adds the 99.9th percentile (without it, the
/// 99.9th is taken as the max: an upper bound).
pub fn parse_wrk(text: &str) -> Result<Measured, String> {
    let mut m = Measured::default();
    let mut seen_requests = false;
    let mut in_dist = false;
    for line in text.lines() {
        let t = line.trim();
        let w: Vec<&str> = t.split_whitespace().collect();
        if t.starts_with("Latency Distribution") {
            in_dist = true;
            continue;
        }
        if in_dist {
            match w.as_slice() {
                [p, v] if p.ends_with('%') => {
                    let us = parse_time_us(v);
                    match *p {
                        "50%" => m.p50_us = us.unwrap_or(0.0),
                        "90%" => m.p90_us = us.unwrap_or(0.0),
                        "99%" => m.p99_us = us.unwrap_or(0.0),
                        _ => {}
                    }
                    continue;
                }
                _ => in_dist = false,
            }
        }
        if w.first() == Some(&"Latency") && w.len() >= 4 {
            m.max_us = parse_time_us(w[3]).unwrap_or(0.0);
        } else if w.len() >= 5 && w[1] == "requests" && w[2] == "in" {
            m.requests = w[0]
                .parse()
                .map_err(|_| format!("bad request count in {t:?}"))?;
            m.duration_s = parse_time_us(w[3].trim_end_matches(','))
                .map(|us| us / 1e6)
                .unwrap_or(0.0);
            seen_requests = true;
        } else if let Some(rest) = t.strip_prefix("Requests/sec:") {
            m.req_per_s = rest.trim().parse().unwrap_or(0.0);
        } else if let Some(rest) = t.strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                let kv: Vec<&str> = part.split_whitespace().collect();
                if let [k, v] = kv.as_slice() {
                    let n: u64 = v.parse().unwrap_or(0);
                    match *k {
                        "connect" => m.errors.connect = n,
                        "read" => m.errors.read = n,
                        "write" => m.errors.write = n,
                        "timeout" => m.errors.timeout = n,
                        _ => {}
                    }
                }
            }
        } else if let Some(rest) = t.strip_prefix("Non-2xx or 3xx responses:") {
            m.errors.status = rest.trim().parse().unwrap_or(0);
        } else if let Some(rest) = t.strip_prefix("harness-wrk:") {
            let get = |key: &str| -> Option<f64> {
                rest.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
            };
            let n = |key: &str| get(key).map(|v| v as u64).unwrap_or(0);
            m.requests = n("requests");
            m.duration_s = get("duration_us").unwrap_or(0.0) / 1e6;
            m.p50_us = get("p50").unwrap_or(0.0);
            m.p90_us = get("p90").unwrap_or(0.0);
            m.p99_us = get("p99").unwrap_or(0.0);
            m.p99_9_us = get("p99_9").unwrap_or(0.0);
            m.max_us = get("max").unwrap_or(0.0);
            m.errors = Errors {
                connect: n("connect"),
                read: n("read"),
                write: n("write"),
                timeout: n("timeout"),
                status: n("status"),
            };
            if m.duration_s > 0.0 {
                m.req_per_s = m.requests as f64 / m.duration_s;
            }
            return Ok(m);
        }
    }
    if !seen_requests {
        return Err("no `N requests in D` line in wrk's output".into());
    }
    m.p99_9_us = m.max_us;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 5s test @ http://127.0.0.1:8080/plaintext
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   631.00us  200.00us   5.00ms   70.00%
    Req/Sec    80.00k     5.00k   90.00k    68.00%
  Latency Distribution
     50%  600.00us
     75%  700.00us
     90%  800.00us
     99%    1.00ms
  400000 requests in 5.00s, 50.00MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  80000.00
Transfer/sec:     10.00MB
";

    #[test]
    fn parses_wrk_text() {
        let m = parse_wrk(WRK).unwrap();
        assert_eq!(m.requests, 400_000);
        assert_eq!(m.duration_s, 5.0);
        assert_eq!(m.req_per_s, 80_000.0);
        assert_eq!((m.p50_us, m.p90_us, m.p99_us), (600.0, 800.0, 1000.0));
        assert_eq!(m.max_us, 5000.0);
        assert_eq!(m.p99_9_us, 5000.0);
        assert_eq!(
            m.errors,
            Errors {
                connect: 1,
                read: 2,
                write: 3,
                timeout: 4,
                status: 5
            }
        );
    }

    #[test]
    fn the_done_hook_line_wins() {
        let text = format!(
            "{WRK}harness-wrk: requests=400123 duration_us=5001000 p50=601.0 p90=801.0 p99=1001.0 p99_9=2001.0 max=5003.0 connect=0 read=0 write=0 timeout=0 status=7\n"
        );
        let m = parse_wrk(&text).unwrap();
        assert_eq!(m.requests, 400_123);
        assert_eq!(m.p99_9_us, 2001.0);
        assert_eq!(m.errors.status, 7);
        assert_eq!(m.errors.total(), 7);
        assert!((m.req_per_s - 400_123.0 / 5.001).abs() < 1e-6);
    }

    #[test]
    fn wrk_output_without_a_result_is_an_error() {
        assert!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n").is_err());
    }

    #[test]
    fn parses_loadgen_json() {
        let text = r#"{"settings":{"url":"http://127.0.0.1:1/","threads":1,"connections":2,
            "duration_s":1.5,"rate":null,"requests":null,"pipeline":1,"method":"GET","timeout_s":2.0,
            "headers":[]},"duration_s":1.5,"requests":3000,"requests_per_sec":2000.0,
            "bytes_read":1,"bytes_written":1,
            "latency_us":{"min":1,"mean":2.0,"stdev":0.5,"max":900,"p50":100,"p75":150,"p90":200,"p99":400,"p99_9":800,"p99_99":890},
            "uncorrected_latency_us":{"min":1,"mean":2.0,"stdev":0.5,"max":900,"p50":100,"p75":150,"p90":200,"p99":400,"p99_9":800,"p99_99":890},
            "errors":{"connect":0,"read":1,"write":0,"timeout":2,"status":3,"status_by_code":{"503":3},"idle_close":9},
            "reconnects":0,"in_flight_at_end":4,"histogram":"","histogram_uncorrected":"","batches":0}"#;
        let m = parse_loadgen_json(text).unwrap();
        assert_eq!(m.requests, 3000);
        assert_eq!(m.p99_9_us, 800.0);
        assert_eq!(m.errors.total(), 6);
        assert_eq!(m.errors.describe(), "read 1, timeout 2, status 3");
        assert_eq!(m.abandoned, 4);
    }

    #[test]
    fn wrk_gets_whole_seconds() {
        assert_eq!(wrk_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(wrk_seconds(Duration::from_millis(200)), 1);
        assert_eq!(wrk_seconds(Duration::from_secs(5)), 5);
    }
}
