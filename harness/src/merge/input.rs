//! One input of a merge: a loadgen `--json` file, read and checked whole
//! before anything is combined, so that a wrong file stops the merge with
//! a message naming the file and the key rather than skewing the result.

use std::fs;
use std::path::Path;

use hdrhistogram::Histogram;
use serde_json::error::Category;

use crate::loadgen::hist;
use crate::loadgen::json::Report;

/// A loadgen result ready to be merged.
#[derive(Debug)]
pub struct Input {
    /// The file's name as given, for messages.
    pub name: String,
    /// Its JSON as written.
    pub report: Report,
    /// `histogram`, decoded.
    pub latency: Histogram<u64>,
    /// `histogram_uncorrected`, decoded.
    pub uncorrected: Histogram<u64>,
    /// `errors.status_by_code`, the codes as numbers.
    pub codes: Vec<(u16, u64)>,
}

/// Read and check the file at `path`.
pub fn read(path: &Path) -> Result<Input, String> {
    let name = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|e| format!("{name}: cannot read it: {e}"))?;
    parse(name, &text)
}

/// Check `text`, the contents of the file `name`.
pub fn parse(name: String, text: &str) -> Result<Input, String> {
    if !text.trim_start().starts_with('{') {
        // serde would read a JSON array as the fields in order.
        let any = serde_json::from_str::<serde::de::IgnoredAny>(text);
        return Err(match any {
            Err(e) => json_error(&name, text, &e),
            Ok(_) => format!("{name}: not a loadgen --json output: not a JSON object"),
        });
    }
    let report: Report = serde_json::from_str(text).map_err(|e| json_error(&name, text, &e))?;
    let decode = |key: &str, b64: &str| {
        hist::from_base64(b64).map_err(|e| format!("{name}: key `{key}`: {e}"))
    };
    let latency = decode("histogram", &report.histogram)?;
    let uncorrected = decode("histogram_uncorrected", &report.histogram_uncorrected)?;
    let codes = report
        .errors
        .status_by_code
        .iter()
        .map(|(code, &n)| match code.parse::<u16>() {
            Ok(c) if (100..1000).contains(&c) => Ok((c, n)),
            _ => Err(format!(
                "{name}: key `errors.status_by_code`: {code:?} is not a three-digit status code"
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok(Input {
        name,
        report,
        latency,
        uncorrected,
        codes,
    })
}

/// serde's message, said as what the file is not, with the key at fault.
fn json_error(name: &str, text: &str, e: &serde_json::Error) -> String {
    match e.classify() {
        Category::Io | Category::Syntax | Category::Eof => {
            format!("{name}: not JSON ({e}); merge reads the files `loadgen --json FILE` writes")
        }
        Category::Data => {
            let msg = e.to_string();
            if msg.starts_with("missing field") {
                return format!("{name}: not a loadgen --json output: {msg}");
            }
            match key_before(text, e.line(), e.column()) {
                Some(key) => format!("{name}: key `{key}`: {msg}"),
                None => format!("{name}: not a loadgen --json output: {msg}"),
            }
        }
    }
}

/// The last `"key":` before 1-based `line` and `column`: the key whose
/// value serde rejected (it reports the position just after the value),
/// in a pretty-printed file or a one-line one alike.
fn key_before(text: &str, line: usize, column: usize) -> Option<&str> {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let end = (line_start + column).min(text.len());
    let before = text.get(..end)?;
    let colon = before.rfind("\":")?;
    let open = before[..colon].rfind('"')?;
    Some(&before[open + 1..colon])
}

/// For tests: the file loadgen would write after a run with `args` (its
/// command line without the URL, which is http://127.0.0.1:1/x), one
/// completed request per latency in `latency_us`, one 503 per `status_503`,
/// lasting `secs` from `started_unix_ms`, read back as an input. The
/// histograms' range grows with the largest latency, as different -T and -R
/// make it grow in real runs.
#[cfg(test)]
pub fn fixture(
    name: &str,
    args: &[&str],
    latency_us: &[u64],
    status_503: u64,
    (secs, started_unix_ms): (f64, u64),
) -> Input {
    use crate::loadgen::{cli, json, stats::Stats, Outcome};
    let argv = std::iter::once("loadgen").chain(args.iter().copied());
    let cfg = cli::parse(argv.chain(["http://127.0.0.1:1/x"])).unwrap();
    // Bounds as loadgen sets them: from the run's own longest latency.
    let top = latency_us
        .iter()
        .max()
        .map_or(1_000, |m| (m * 2).max(1_000));
    let mut stats = Stats::new(top);
    for &v in latency_us {
        stats.latency.saturating_record(v);
        stats.bytes_read += 100;
    }
    stats.completed = latency_us.len() as u64;
    stats.rps_samples.push(stats.completed as f64 / secs);
    for _ in 0..status_503 {
        stats.status(503);
    }
    stats.finish(cfg.rate.is_some());
    let outcome = Outcome {
        stats,
        elapsed: std::time::Duration::from_secs_f64(secs),
        started_unix_ms,
        all_connects_failed: None,
    };
    parse(name.into(), &json::render(&cfg, &outcome)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real run's file, as JSON to spoil.
    fn good() -> serde_json::Value {
        let input = fixture("a.json", &["-n", "5"], &[100], 1, (1.0, 0));
        serde_json::to_value(&input.report).unwrap()
    }

    fn error_of(text: &str) -> String {
        parse("a.json".into(), text).unwrap_err()
    }

    fn with(key: &str, value: serde_json::Value) -> String {
        let mut v = good();
        v[key] = value;
        serde_json::to_string_pretty(&v).unwrap()
    }

    #[test]
    fn a_good_file_reads() {
        let input = parse("a.json".into(), &good().to_string()).unwrap();
        assert_eq!(input.latency.len(), 1);
        assert_eq!(input.codes, vec![(503, 1)]);
    }

    #[test]
    fn messages_name_the_file_and_the_key() {
        let cases: [(String, &str); 8] = [
            ("Running 10s test @ x".into(), "a.json: not JSON ("),
            ("{\"requests\": 3".into(), "a.json: not JSON ("),
            (
                "[1, 2]".into(),
                "a.json: not a loadgen --json output: not a JSON object",
            ),
            (
                "{\"rows\": []}".into(),
                "a.json: not a loadgen --json output: missing field `settings`",
            ),
            (
                with("requests", "many".into()),
                "a.json: key `requests`: invalid type: string \"many\"",
            ),
            (
                good()
                    .to_string()
                    .replace("\"requests\":1,", "\"requests\":-1,"),
                "a.json: key `requests`: invalid value: integer `-1`",
            ),
            (
                with("histogram", "@@@".into()),
                "a.json: key `histogram`: not base64: ",
            ),
            (
                with("histogram_uncorrected", "aGVsbG8=".into()),
                "a.json: key `histogram_uncorrected`: not an HdrHistogram V2 encoding: ",
            ),
        ];
        for (text, want) in cases {
            let got = error_of(&text);
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = read(Path::new("/nonexistent/r.json")).unwrap_err();
        assert!(
            e.starts_with("/nonexistent/r.json: cannot read it: "),
            "{e}"
        );
    }

    #[test]
    fn a_bad_status_code_is_named() {
        let mut v = good();
        v["errors"]["status_by_code"] = serde_json::json!({"5xx": 2});
        let e = error_of(&v.to_string());
        assert!(
            e.starts_with("a.json: key `errors.status_by_code`: \"5xx\" is not"),
            "{e}"
        );
    }
}
