//! `harness merge` on real loadgen results: two loadgen processes drive one
//! `epoll` server at the same time, each writing `--json`; the merge must
//! equal their sum (requests, bytes, every error counter, status codes) and
//! its percentiles must be those of the union of their histograms, decoded
//! and added here independently of the harness (the support module's own
//! base64 decoder). Then the refusals: files that are not loadgen results,
//! and results of different loads.
//!
//! The load is a path the server does not have, so every response is a 404:
//! the error counters are then not zero and their sums mean something.

mod support;

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::Value;
use support::*;

/// Hang guard of each process (the loads last 1 s).
const LIMIT: Duration = Duration::from_secs(30);

/// Two loadgens at once against one server: their runs and results.
fn two_loads(dir: &Path) -> [(Run, Value); 2] {
    let srv = Variant::start("epoll", &[]);
    let url = srv.url("/no-such-file");
    std::thread::scope(|s| {
        let loads = ["a", "b"].map(|name| {
            let (url, json) = (&url, dir.join(format!("{name}.json")));
            s.spawn(move || {
                let json_arg = json.to_str().expect("utf-8 temp path");
                let args = ["-t1", "-c2", "-d1s", "--json", json_arg, url];
                let run = run_loadgen(&args, LIMIT);
                run.expect_code(0, "loadgen");
                let value = read_json(&json, &run);
                (run, value)
            })
        });
        loads.map(|h| h.join().expect("a loadgen thread panicked"))
    })
}

/// The histogram at `key` of each result, added.
fn union(results: &[&Value], key: &str) -> Histogram<u64> {
    let mut sum: Option<Histogram<u64>> = None;
    for v in results {
        let b64 = v[key].as_str().unwrap_or_else(|| panic!("no {key}"));
        let h = decode_histogram(b64).unwrap_or_else(|e| panic!("{key}: {e}"));
        match &mut sum {
            None => {
                let mut h = h;
                h.auto(true);
                sum = Some(h);
            }
            Some(s) => s.add(&h).expect("histograms add"),
        }
    }
    sum.expect("at least one result")
}

#[test]
fn two_loadgens_merge_to_their_sum() {
    let dir = tempfile::tempdir().unwrap();
    let [(run_a, a), (run_b, b)] = two_loads(dir.path());
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let out = path("merged.json");
    let merge = run_harness(
        &[
            "merge",
            &path("a.json"),
            &path("b.json"),
            "--json",
            &out,
            "-L",
        ],
        &[],
        LIMIT,
    );
    merge.expect_code(0, "harness merge");
    let m = read_json(Path::new(&out), &merge);

    let both = |key: &str| int(&a, key, &run_a) + int(&b, key, &run_b);
    assert!(both("requests") > 0, "no load\n{}", run_a.describe());
    assert!(
        both("errors.status") > 0,
        "expected 404s\n{}",
        run_a.describe()
    );
    let summed = [
        "requests",
        "bytes_read",
        "bytes_written",
        "reconnects",
        "batches",
    ];
    let errors = ERROR_KINDS.map(|k| format!("errors.{k}"));
    for key in summed
        .iter()
        .copied()
        .chain(errors.iter().map(String::as_str))
    {
        assert_eq!(
            int(&m, key, &merge),
            both(key),
            "{key}\n{}",
            merge.describe()
        );
    }
    let mut codes = serde_json::Map::new();
    for v in [&a, &b] {
        for (code, n) in v["errors"]["status_by_code"].as_object().unwrap() {
            let had = codes.get(code).and_then(Value::as_u64).unwrap_or(0);
            codes.insert(code.clone(), (had + n.as_u64().unwrap()).into());
        }
    }
    assert_eq!(m["errors"]["status_by_code"], Value::Object(codes));
    assert_eq!(int(&m, "merged_from", &merge), 2);
    assert_eq!(int(&m, "settings.connections", &merge), 4);

    for (key, summary) in [
        ("histogram", "latency_us"),
        ("histogram_uncorrected", "uncorrected_latency_us"),
    ] {
        let u = union(&[&a, &b], key);
        assert_eq!(u.len(), both("requests"), "{key}: one value per request");
        let p99 = int(&m, &format!("{summary}.p99"), &merge);
        assert_eq!(
            p99,
            u.value_at_quantile(0.99),
            "{summary}.p99 vs the union's"
        );
        assert_eq!(
            int(&m, &format!("{summary}.p50"), &merge),
            u.value_at_quantile(0.5)
        );
        assert_eq!(int(&m, &format!("{summary}.max"), &merge), u.max());
        let merged = decode_histogram(m[key].as_str().unwrap()).unwrap();
        assert_eq!(merged, u, "{key}: the merged file's histogram is the union");
    }

    // The text: loadgen's layout under the merge header, the union's p99.
    let u = union(&[&a, &b], "histogram");
    let p99 = harness::format::wrk::time_us(u.value_at_quantile(0.99) as f64);
    let lines = merge.stdout_lines();
    assert_eq!(
        lines[0],
        format!(
            "Merged 2 loadgen runs @ {}",
            a["settings"]["url"].as_str().unwrap()
        )
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().eq(["99%", p99.as_str()])),
        "no `99% {p99}` line\n{}",
        merge.describe()
    );
    let count = format!("  {} requests in ", both("requests"));
    assert!(
        lines.iter().any(|l| l.starts_with(&count)),
        "{}",
        merge.describe()
    );
    assert!(lines.last().unwrap().starts_with("Transfer/sec:"));

    // A merged file merges again: with a itself, its counts add once more.
    let again = run_harness(
        &[
            "merge",
            &out,
            &path("a.json"),
            "--json",
            &path("again.json"),
        ],
        &[],
        LIMIT,
    );
    again.expect_code(0, "merging a merged file");
    let m2 = read_json(Path::new(&path("again.json")), &again);
    assert_eq!(
        int(&m2, "requests", &again),
        both("requests") + int(&a, "requests", &run_a)
    );
    assert_eq!(int(&m2, "merged_from", &again), 3);
}

#[test]
fn refusals_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (run, good) = run_loadgen_json(
        &["-n", "20", &format!("http://127.0.0.1:{}/", dead_port())],
        LIMIT,
    );
    assert_eq!(
        run.code(),
        Some(1),
        "every connect refused\n{}",
        run.describe()
    );
    let write = |name: &str, text: String| std::fs::write(path(name), text).unwrap();
    let with = |key: &str, value: Value| {
        let mut v = good.clone();
        v[key] = value;
        serde_json::to_string(&v).unwrap()
    };
    write("good.json", good.to_string());
    write("text.json", "Running 10s test @ http://x/\n".into());
    write("rows.json", "{\"rows\": []}".into());
    write(
        "hist.json",
        with("histogram", "bm90IGEgaGlzdG9ncmFt".into()),
    );
    let mut other = good.clone();
    other["settings"]["url"] = "http://127.0.0.1:1/elsewhere".into();
    write("other.json", other.to_string());

    let cases: [(&[&str], &str); 5] = [
        (&["missing.json"], "missing.json: cannot read it: "),
        (&["text.json"], "text.json: not JSON ("),
        (
            &["rows.json"],
            "rows.json: not a loadgen --json output: missing field `settings`",
        ),
        (
            &["hist.json"],
            "hist.json: key `histogram`: not an HdrHistogram V2 encoding",
        ),
        (
            &["good.json", "other.json"],
            "refusing to merge runs of different loads:\n  settings.url: ",
        ),
    ];
    for (files, want) in cases {
        let mut args = vec!["merge".to_string()];
        args.extend(files.iter().map(|f| path(f)));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run_harness(&args, &[], LIMIT);
        r.expect_code(1, want);
        let msg = r
            .stderr
            .strip_prefix("harness merge: ")
            .unwrap_or(&r.stderr);
        let msg = msg.replace(&format!("{}/", dir.path().display()), "");
        assert!(
            msg.starts_with(want),
            "stderr should start with {want:?}\n{}",
            r.describe()
        );
    }
    let mixed = run_harness(
        &[
            "merge",
            "--allow-mixed",
            &path("good.json"),
            &path("other.json"),
        ],
        &[],
        LIMIT,
    );
    mixed.expect_code(0, "--allow-mixed");
    assert!(
        mixed.stderr.contains("warning: settings.url: "),
        "{}",
        mixed.describe()
    );
}
