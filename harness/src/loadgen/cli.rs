//! Command line: wrk's flags (a wrk command line works unchanged) plus the
//! ones wrk never had. Every mistake becomes one line naming the fix.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use servers::config::parse_duration;

use super::url::{self, Target};

/// A wrk-compatible HTTP/1.1 load generator.
///
/// Drives URL with -c connections over -t threads for -d, or for exactly -n
/// requests, as fast as possible or at a constant -R rate (latency then
/// measured from each request's intended send time).
#[derive(Parser, Debug)]
#[command(name = "loadgen", version, disable_version_flag = true)]
struct Args {
    /// Threads, each with its own event loop.
    #[arg(short = 't', long = "threads", value_name = "N", default_value = "2", value_parser = parse_count)]
    threads: u64,
    /// Connections to keep open, spread over the threads.
    #[arg(short = 'c', long = "connections", value_name = "N", default_value = "10", value_parser = parse_count)]
    connections: u64,
    /// Test duration: 10s, 2m, 1h, 500ms, or plain seconds [default: 10s].
    #[arg(short = 'd', long = "duration", value_name = "D", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Add a header to every request ('Name: value'); a Host given here replaces the default.
    #[arg(short = 'H', long = "header", value_name = "H")]
    headers: Vec<String>,
    /// Print the latency distribution and the full percentile spectrum.
    #[arg(short = 'L', long = "latency")]
    latency: bool,
    /// A request outstanding longer than this is a timeout; its connection is reopened.
    #[arg(short = 'T', long = "timeout", value_name = "D", default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
    /// Total requests per second across all connections, held constant.
    #[arg(short = 'R', long = "rate", value_name = "N", value_parser = parse_count)]
    rate: Option<u64>,
    /// Send exactly N requests in total, then stop once all are answered.
    #[arg(short = 'n', long = "requests", value_name = "N", value_parser = parse_count)]
    requests: Option<u64>,
    /// Requests written back to back per connection; the next batch after all N responses.
    #[arg(long = "pipeline", value_name = "N", default_value = "1", value_parser = parse_count)]
    pipeline: u64,
    /// Before sleeping with requests in flight, poll for up to D (e.g. 50us)
    /// so a response finds this thread awake and the server is not charged
    /// for waking the client's CPU. Costs client CPU; off by default.
    #[arg(long = "busy-poll", value_name = "D", default_value = "0", value_parser = parse_duration)]
    busy_poll: Duration,
    /// With requests in flight and nothing to read, doze up to D (and at
    /// most 1/32 of the recent mean latency) before sleeping in epoll_wait,
    /// so responses arriving meanwhile are taken in one wake-up instead of
    /// each making the server wake the client's CPU. Latency then includes
    /// that doze. 0 turns it off; never with -R.
    #[arg(long = "coalesce", value_name = "D", default_value = "50us", value_parser = parse_duration)]
    coalesce: Duration,
    /// Request method.
    #[arg(short = 'm', long = "method", value_name = "M", default_value = "GET")]
    method: String,
    /// Request body, read from FILE and sent with Content-Length.
    #[arg(long = "body", value_name = "FILE")]
    body: Option<PathBuf>,
    /// Also write the whole result as JSON to FILE.
    #[arg(long = "json", value_name = "FILE")]
    json: Option<PathBuf>,
    /// wrk's Lua scripts: not supported.
    #[arg(short = 's', long = "script", value_name = "FILE", hide = true)]
    script: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: Option<bool>,
    /// http://HOST[:PORT]/path (HOST: an IPv4 address or localhost).
    #[arg(value_name = "URL")]
    url: Option<String>,
}

/// What the run needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The URL as the user wrote it (for the report).
    pub url: String,
    /// Where to connect and what to ask for.
    pub target: Target,
    /// `-t`: one epoll loop per thread.
    pub threads: usize,
    /// `-c`: connections over all threads.
    pub connections: usize,
    /// `None` only with `-n` and no `-d`: run until the count is done.
    pub duration: Option<Duration>,
    /// `-H` lines, sent verbatim.
    pub headers: Vec<String>,
    /// `--latency`: print the distribution as wrk does.
    pub latency: bool,
    /// `--timeout`: a request unanswered this long counts as a timeout.
    pub timeout: Duration,
    /// `-R`: a constant rate (coordinated omission corrected), else as fast as possible.
    pub rate: Option<u64>,
    /// `-n`: stop after this many requests.
    pub requests: Option<u64>,
    /// `--pipeline`: requests written back to back per connection.
    pub pipeline: usize,
    /// Longest poll before sleeping (zero: sleep at once).
    pub busy_poll: Duration,
    /// Longest doze before sleeping with requests in flight (zero: none).
    pub coalesce: Duration,
    /// `-m`: the request method.
    pub method: String,
    /// `--body`: the request body.
    pub body: Option<Vec<u8>>,
    /// `--json`: where the machine-readable result goes.
    pub json: Option<PathBuf>,
}

/// Why parsing stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// Help or version text: print it to stdout and exit 0.
    Info(String),
    /// A usage error: the message after `loadgen: `; exit 2.
    Usage(String),
}

const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// The request bytes are `--pipeline` copies held in memory; past this a
/// deeper pipeline only measures the server's socket buffers.
const MAX_PIPELINE: u64 = 65_536;

/// Parse and validate a command line (`args[0]` is the program name).
pub fn parse<I, T>(args: I) -> Result<Config, Stop>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let a = Args::try_parse_from(args).map_err(clap_error)?;
    if a.script.is_some() {
        return Err(usage(
            "Lua scripts are not supported: use -m, -H, --body, --pipeline",
        ));
    }
    let Some(url) = a.url else {
        return Err(usage(
            "no URL given: loadgen [OPTIONS] http://HOST[:PORT]/path",
        ));
    };
    let target = url::parse(&url).map_err(Stop::Usage)?;
    if a.connections == 0 {
        return Err(usage("-c 0: use at least one connection"));
    }
    if a.threads == 0 {
        return Err(usage("-t 0: use at least one thread"));
    }
    if a.threads > a.connections {
        return Err(usage(&format!(
            "-t {} is more than -c {}: use at most one thread per connection",
            a.threads, a.connections
        )));
    }
    if a.pipeline == 0 {
        return Err(usage("--pipeline 0: use 1 (no pipelining) or more"));
    }
    if a.pipeline > MAX_PIPELINE {
        return Err(usage(&format!(
            "--pipeline {} is deeper than any server queues: use at most {MAX_PIPELINE}",
            a.pipeline
        )));
    }
    if a.rate == Some(0) {
        return Err(usage(
            "-R 0: use a positive rate, or drop -R to go as fast as possible",
        ));
    }
    if a.rate.is_some() && a.pipeline > 1 {
        return Err(usage(
            "-R paces one request at a time per connection: drop --pipeline or -R",
        ));
    }
    if a.requests == Some(0) {
        return Err(usage("-n 0: use at least one request"));
    }
    if a.duration == Some(Duration::ZERO) {
        return Err(usage("-d 0: use a positive duration such as 10s"));
    }
    if a.timeout.is_zero() {
        return Err(usage("--timeout 0: use a positive timeout such as 2s"));
    }
    if a.method.is_empty() || !a.method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(usage(&format!(
            "-m '{}' is not a method: use e.g. -m GET or -m POST",
            a.method
        )));
    }
    for h in &a.headers {
        let ok = h
            .split_once(':')
            .is_some_and(|(n, _)| !n.trim().is_empty() && !n.trim().contains(char::is_whitespace));
        if !ok || h.contains(['\r', '\n']) {
            return Err(usage(&format!(
                "header '{h}' is not 'Name: value': use -H 'Name: value'"
            )));
        }
    }
    let body = match &a.body {
        None => None,
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            usage(&format!(
                "cannot read --body file '{}' ({e}): give an existing, readable file",
                path.display()
            ))
        })?),
    };
    let duration = match (a.duration, a.requests) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_DURATION),
    };
    Ok(Config {
        url,
        target,
        threads: to_usize(a.threads, "-t")?,
        connections: to_usize(a.connections, "-c")?,
        duration,
        headers: a.headers,
        latency: a.latency,
        timeout: a.timeout,
        rate: a.rate,
        requests: a.requests,
        pipeline: to_usize(a.pipeline, "--pipeline")?,
        busy_poll: a.busy_poll,
        coalesce: a.coalesce,
        method: a.method,
        body,
        json: a.json,
    })
}

fn usage(msg: &str) -> Stop {
    Stop::Usage(msg.to_string())
}

fn to_usize(n: u64, flag: &str) -> Result<usize, Stop> {
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= 1 << 24)
        .ok_or_else(|| usage(&format!("{flag} {n} is too large: use at most 16M")))
}

/// Turn clap's multi-line error into our one line (help and version are
/// not errors: they go to stdout).
fn clap_error(e: clap::Error) -> Stop {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Stop::Info(e.render().to_string()),
        _ => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            Stop::Usage(format!("{first}; see loadgen --help"))
        }
    }
}

/// A count with an optional `k`/`M` suffix: `100`, `10k`, `1.5M`.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let err = || format!("'{s}' is not a count: use e.g. 100, 10k or 1.5M");
    let (num, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1_000.0),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s, 1.0),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult as u64).ok_or_else(err);
    }
    let x: f64 = num.parse().map_err(|_| err())?;
    let v = x * mult;
    if !v.is_finite() || v < 0.0 || v.fract() != 0.0 || v > u64::MAX as f64 {
        return Err(err());
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Result<Config, Stop> {
        parse(std::iter::once("loadgen").chain(args.iter().copied()))
    }

    fn usage_of(args: &[&str]) -> String {
        match cfg(args) {
            Err(Stop::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn counts_and_durations() {
        assert_eq!(parse_count("10k"), Ok(10_000));
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert_eq!(parse_count("7"), Ok(7));
        assert!(parse_count("1.5").is_err());
        assert!(parse_count("x").is_err());
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn wrk_command_line_works() {
        let c = cfg(&[
            "-t4",
            "-c",
            "800",
            "-d",
            "20s",
            "--latency",
            "-H",
            "X-A: b",
            "-T",
            "1s",
            "http://127.0.0.1:8080/plaintext",
        ])
        .unwrap();
        assert_eq!((c.threads, c.connections), (4, 800));
        assert_eq!(c.duration, Some(Duration::from_secs(20)));
        assert!(c.latency);
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.headers, vec!["X-A: b".to_string()]);
    }

    #[test]
    fn defaults() {
        let c = cfg(&["http://localhost:1/"]).unwrap();
        assert_eq!((c.threads, c.connections, c.pipeline), (2, 10, 1));
        assert_eq!(c.coalesce, Duration::from_micros(50));
        let c = cfg(&["--coalesce", "0", "http://localhost:1/"]).unwrap();
        assert_eq!(c.coalesce, Duration::ZERO);
        assert_eq!(c.duration, Some(DEFAULT_DURATION));
        assert_eq!(c.timeout, Duration::from_secs(2));
        let c = cfg(&["-n", "1k", "http://localhost:1/"]).unwrap();
        assert_eq!((c.requests, c.duration), (Some(1000), None));
    }

    #[test]
    fn usage_errors_name_the_fix() {
        assert_eq!(
            usage_of(&["-t", "4", "-c", "2", "http://127.0.0.1:1/"]),
            "-t 4 is more than -c 2: use at most one thread per connection"
        );
        assert_eq!(
            usage_of(&["https://127.0.0.1/"]),
            "https is not supported: use an http:// URL"
        );
        assert!(usage_of(&["-c", "0", "http://127.0.0.1:1/"]).starts_with("-c 0"));
        assert!(usage_of(&["--pipeline", "0", "http://127.0.0.1:1/"]).starts_with("--pipeline 0"));
        assert!(usage_of(&["-R", "0", "http://127.0.0.1:1/"]).starts_with("-R 0"));
        assert!(
            usage_of(&["--body", "/nonexistent/x", "http://127.0.0.1:1/"])
                .starts_with("cannot read --body file")
        );
        assert_eq!(
            usage_of(&["-s", "x.lua", "http://127.0.0.1:1/"]),
            "Lua scripts are not supported: use -m, -H, --body, --pipeline"
        );
        assert!(usage_of(&["-H", "nocolon", "http://127.0.0.1:1/"]).contains("Name: value"));
        assert!(usage_of(&["--bogus", "http://127.0.0.1:1/"]).contains("--help"));
        assert!(usage_of(&["-c", "ten", "http://127.0.0.1:1/"]).contains("10k"));
        assert!(usage_of(&["--coalesce", "soon", "http://127.0.0.1:1/"]).contains("--coalesce"));
        assert!(usage_of(&[]).starts_with("no URL"));
    }

    #[test]
    fn help_is_not_an_error() {
        assert!(matches!(cfg(&["--help"]), Err(Stop::Info(_))));
        assert!(matches!(cfg(&["-v"]), Err(Stop::Info(_))));
    }
}
