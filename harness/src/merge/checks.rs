//! Whether a merge means anything. Two kinds of doubt:
//!
//! - different loads: inputs that hit another URL, with another method,
//!   headers or pipeline depth, or one paced (`-R`, latency corrected) and
//!   another not, measured different things; adding them up is refused
//!   unless asked for.
//! - different windows: the merged req/s is the sum of the inputs' req/s,
//!   which is the combined rate only if the runs were under way at the same
//!   time. Durations more than [`SPREAD`] apart, or starts (as each
//!   machine's wall clock saw them) further apart than [`SPREAD`] of the
//!   shortest run, are warned about: the clock caveat.

use super::input::Input;

/// The tolerated difference between the inputs' durations (relative), and
/// between their starts (as a fraction of the shortest duration).
pub const SPREAD: f64 = 0.10;

/// The settings in which every input must agree, by JSON key: each one's
/// value as text, for the message.
fn load_settings(input: &Input) -> [(&'static str, String); 5] {
    let s = &input.report.settings;
    [
        ("settings.url", s.url.clone()),
        ("settings.method", s.method.clone()),
        ("settings.headers", format!("{:?}", s.headers)),
        ("settings.pipeline", s.pipeline.to_string()),
        (
            "settings.rate",
            if s.rate.is_some() {
                "given (-R)"
            } else {
                "absent"
            }
            .to_string(),
        ),
    ]
}

/// Every setting in which an input differs from the first, one line each.
pub fn differences(inputs: &[Input]) -> Vec<String> {
    let Some((first, rest)) = inputs.split_first() else {
        return Vec::new();
    };
    let want = load_settings(first);
    let mut out = Vec::new();
    for input in rest {
        for ((key, a), (_, b)) in want.iter().zip(load_settings(input)) {
            if *a != b {
                out.push(format!(
                    "{key}: {} has {a}, {} has {b}",
                    first.name, input.name
                ));
            }
        }
    }
    out
}

/// The clock caveat, when it applies: warnings about windows that may not
/// have overlapped, and inputs whose start cannot be checked.
pub fn windows(inputs: &[Input]) -> Vec<String> {
    let mut out = Vec::new();
    let durations: Vec<f64> = inputs.iter().map(|i| i.report.duration_s).collect();
    let shortest = durations.iter().copied().fold(f64::INFINITY, f64::min);
    let longest = durations.iter().copied().fold(0.0, f64::max);
    if longest > shortest * (1.0 + SPREAD) {
        out.push(format!(
            "the runs' durations differ by more than {:.0}% ({}): the summed req/s \
             counts each run's rate as if they all ran for the whole window",
            SPREAD * 100.0,
            list(inputs, |i| format!("{:.2}s", i.report.duration_s))
        ));
    }
    let starts: Vec<u64> = inputs
        .iter()
        .filter_map(|i| i.report.started_unix_ms)
        .collect();
    if starts.len() < inputs.len() {
        let missing: Vec<&str> = inputs
            .iter()
            .filter(|i| i.report.started_unix_ms.is_none())
            .map(|i| i.name.as_str())
            .collect();
        out.push(format!(
            "no started_unix_ms in {} (an older loadgen or a merge of such files): \
             whether the runs overlapped in time is not checked",
            missing.join(", ")
        ));
    } else if let (Some(&first), Some(&last)) = (starts.iter().min(), starts.iter().max()) {
        let apart_s = (last - first) as f64 / 1000.0;
        if apart_s > shortest * SPREAD {
            out.push(format!(
                "the runs started {apart_s:.3}s apart by their machines' clocks, more than \
                 {:.0}% of the shortest run ({shortest:.2}s): they overlapped only in part, \
                 so the summed req/s overstates the combined rate (start them at one \
                 wall-clock time, on clocks kept in step by NTP or chrony)",
                SPREAD * 100.0
            ));
        }
    }
    out
}

/// `a.json 10.01s, b.json 5.00s`.
fn list(inputs: &[Input], f: impl Fn(&Input) -> String) -> String {
    inputs
        .iter()
        .map(|i| format!("{} {}", i.name, f(i)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::super::input::fixture;
    use super::*;

    #[test]
    fn different_loads_are_named() {
        let a = fixture("a.json", &[], &[1], 0, (1.0, 0));
        let b = fixture("b.json", &["-R", "5", "-m", "HEAD"], &[1], 0, (1.0, 0));
        assert_eq!(
            differences(&[a, b]),
            vec![
                "settings.method: a.json has GET, b.json has HEAD".to_string(),
                "settings.rate: a.json has absent, b.json has given (-R)".to_string(),
            ]
        );
        let c = fixture("c.json", &["-t1", "-c3", "-d2s"], &[1], 0, (2.0, 0));
        let d = fixture("d.json", &["-n", "4"], &[1], 0, (2.0, 0));
        assert!(differences(&[c, d]).is_empty());
    }

    #[test]
    fn the_clock_caveat() {
        let run = |secs: f64, start: u64| fixture("r.json", &[], &[1], 0, (secs, start));
        assert!(windows(&[run(10.0, 1_000), run(10.5, 1_900)]).is_empty());
        let long = windows(&[run(10.0, 0), run(11.5, 0)]);
        assert_eq!(long.len(), 1);
        assert!(long[0].starts_with("the runs' durations differ by more than 10% "));
        let late = windows(&[run(10.0, 0), run(10.0, 1_500)]);
        assert_eq!(late.len(), 1);
        assert!(
            late[0].starts_with("the runs started 1.500s apart"),
            "{}",
            late[0]
        );
        let mut old = run(10.0, 0);
        old.report.started_unix_ms = None;
        let unknown = windows(&[run(10.0, 0), old]);
        assert!(unknown[0].starts_with("no started_unix_ms in r.json"));
    }
}
