//! Differential flame graphs between servers (DESIGN §7): each pair of
//! neighbours in architecture order and each event-loop variant against
//! nginx, as `<out>/diff/A-vs-B.svg` (inferno's differential folding, then
//! its flame graph renderer), with one sentence per pair naming the bucket
//! and the function whose cost changed most.
//!
//! Why per request: samples count the CPU time a server used during the
//! recording, not what it got done with it: a server that serves twice as
//! many requests with the same CPU takes as many samples, so sample counts
//! only compare shares. Scaling each stack to CPU time per request (count ×
//! `cpu_us_per_request` / `samples`) makes a frame's width what it costs a
//! request and its colour the change in that cost. A profile.json without
//! that figure falls back to inferno's own normalisation (A's samples
//! scaled to B's total), and the picture and the sentence say so.
//!
//! Why the stacks are reduced before the diff: a differential flame graph
//! compares stacks by their whole path from the root, so the two sides
//! must share frames to line up. inferno's perf collapser puts the process
//! or thread name first (`epoll`, `worker-3`, `nginx`): that frame becomes
//! [`ROOT`] on both sides. Two programs share no user code either (nginx's
//! own frames are not even named, and a variant's main thread and worker
//! threads start from different entries), so with whole user stacks every
//! frame of B would be new and the graph all red. What they do share is
//! the kernel: a stack that enters it keeps only its kernel frames (from
//! the syscall or interrupt entry down), and a stack that stays in user
//! space keeps only its leaf function, under one [`USER`] frame. The
//! syscall paths (`__x64_sys_sendto` against `__x64_sys_writev`), the TCP
//! stack beneath them and each user function's self time then line up,
//! which is what the colours should compare; the whole user stacks are in
//! each server's own flame graph.
//!
//! The graph is drawn on B's stacks: what only A runs has no width in it
//! (the sentence still counts it). `stacks.folded` is not kept in git, so
//! a pair whose stacks are not on disk is listed as skipped, not an error.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use inferno::differential::{self, Options as DiffOptions};
use inferno::flamegraph::{self, Options as FlameOptions};

use super::classify::{parse_collapsed_line, split_annotation};
use super::{BucketShare, VariantProfile};
use crate::catalog;

/// The directory under `--out` that holds the differential SVGs.
pub const DIR: &str = "diff";

/// The root frame both sides' stacks get in place of the process name.
pub const ROOT: &str = "server";

/// The frame above the leaf of a stack that never entered the kernel.
pub const USER: &str = "user space";

/// The per-server file the stacks are read from.
const STACKS_FILE: &str = "stacks.folded";

/// Per-request counts are whole nanoseconds per request: inferno reads
/// whole counts, and its renderer's `factor` (which would allow a finer
/// unit) scales the widths it prints but not the change percentages.
const NS_PER_US: f64 = 1e3;

/// Frames narrower than this are left out, as in the per-server graphs.
const MIN_WIDTH_PX: f64 = 0.3;

/// Two servers compared: `a` the earlier model, `b` the next one (or
/// nginx). Colours say what `b` does differently from `a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The baseline.
    pub a: String,
    /// The server drawn.
    pub b: String,
}

impl Pair {
    fn new(a: &str, b: &str) -> Pair {
        Pair {
            a: a.to_string(),
            b: b.to_string(),
        }
    }

    /// `A-vs-B.svg`.
    pub fn file_name(&self) -> String {
        format!("{}-vs-{}.svg", self.a, self.b)
    }
}

/// The pairs among `names` (in report order: architecture order, nginx
/// last): each server with the next, then each event-loop variant with
/// nginx when nginx was profiled, without repeating a pair.
pub fn pairs(names: &[&str]) -> Vec<Pair> {
    let mut out: Vec<Pair> = names.windows(2).map(|w| Pair::new(w[0], w[1])).collect();
    if names.contains(&catalog::NGINX) {
        for name in names.iter().filter(|n| catalog::is_event_loop(n)) {
            let pair = Pair::new(name, catalog::NGINX);
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
    }
    out
}

/// What the widths, colours and figures of one pair measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    /// CPU time per request: both profiles know their CPU µs per request.
    PerRequest,
    /// Shares of samples: at least one profile lacks that figure.
    SampleShare,
}

impl Units {
    /// Per request when both sides know their CPU µs per request.
    pub fn of(a: &VariantProfile, b: &VariantProfile) -> Units {
        if known_cost(a) && known_cost(b) {
            Units::PerRequest
        } else {
            Units::SampleShare
        }
    }

    /// What one sample of `p` is worth: µs per request, or percent of its
    /// samples.
    fn per_sample(self, p: &VariantProfile) -> f64 {
        let samples = p.samples.max(1) as f64;
        match self {
            Units::PerRequest => p.cpu_us_per_request / samples,
            Units::SampleShare => 100.0 / samples,
        }
    }
}

fn known_cost(p: &VariantProfile) -> bool {
    p.cpu_us_per_request > 0.0 && p.samples > 0
}

/// Collapsed stacks, stack → count.
pub type Stacks = BTreeMap<String, u64>;

/// `comm;a;b COUNT` lines reduced so two servers' stacks line up (see the
/// module doc): the process or thread name becomes [`ROOT`], a stack that
/// enters the kernel keeps its kernel frames, one that does not keeps its
/// leaf under [`USER`]; equal stacks merge. A line that does not parse is
/// an error naming it.
pub fn align(folded: &str) -> Result<Stacks, String> {
    let mut out = Stacks::new();
    for (i, line) in folded.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (stack, count) = parse_collapsed_line(line)
            .ok_or_else(|| format!("line {} unreadable: {line:?}", i + 1))?;
        let frames: Vec<&str> = stack.split(';').skip(1).collect();
        let kernel = frames.iter().position(|f| split_annotation(f).1);
        let key = match (kernel, frames.last()) {
            (Some(k), _) => format!("{ROOT};{}", frames[k..].join(";")),
            (None, Some(leaf)) => format!("{ROOT};{USER};{leaf}"),
            (None, None) => ROOT.to_string(),
        };
        *out.entry(key).or_default() += count;
    }
    Ok(out)
}

/// `stacks` of `p` in nanoseconds of CPU per request (count ×
/// `cpu_us_per_request` / `samples`). A sample (250 µs of CPU) is worth
/// a nanosecond or less per request when it is shared by the hundreds of
/// thousands of requests of a recording, so each stack is rounded down and the nanoseconds left
/// go to the largest remainders: the total stays the server's cost, where
/// rounding each stack alone would shift it by the thousands of one-sample
/// stacks.
pub fn per_request(stacks: &Stacks, p: &VariantProfile) -> Stacks {
    let ns = Units::PerRequest.per_sample(p) * NS_PER_US;
    let exact: Vec<(&String, f64)> = stacks.iter().map(|(s, c)| (s, *c as f64 * ns)).collect();
    let total = exact.iter().map(|(_, x)| x).sum::<f64>().round() as u64;
    let mut out: Stacks = exact
        .iter()
        .map(|(s, x)| ((*s).clone(), *x as u64))
        .collect();
    let left = total.saturating_sub(out.values().sum());
    let mut by_remainder = exact.clone();
    by_remainder.sort_by(|x, y| (y.1 - y.1.floor()).total_cmp(&(x.1 - x.1.floor())));
    for (s, _) in by_remainder.into_iter().take(left as usize) {
        *out.entry(s.clone()).or_default() += 1;
    }
    out
}

/// inferno's differential folding of `a` and `b` (`stack A B` lines),
/// sorted as the flame graph renderer needs; `normalize` scales A's total
/// to B's (the fallback when the cost per request is unknown). Stacks B
/// does not have are dropped: they would be drawn zero wide anyway, but
/// the renderer scales every colour to the largest change of any line, and
/// a big stack only A runs (prefork's scheduler against epoll) would leave
/// everything B draws almost white.
pub fn differential_lines(a: &Stacks, b: &Stacks, normalize: bool) -> io::Result<Vec<String>> {
    let text = |m: &Stacks| {
        m.iter().fold(String::new(), |mut t, (s, c)| {
            let _ = writeln!(t, "{s} {c}");
            t
        })
    };
    let opts = DiffOptions {
        normalize,
        strip_hex: false,
    };
    let mut out = Vec::new();
    differential::from_readers(opts, text(a).as_bytes(), text(b).as_bytes(), &mut out)?;
    let text = String::from_utf8(out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.ends_with(" 0"))
        .map(str::to_string)
        .collect();
    lines.sort();
    Ok(lines)
}

/// The title and subtitle of one pair's graph: what the widths and the
/// colours mean, in which units.
fn titles(pair: &Pair, units: Units, unknown: &str) -> (String, String) {
    let (a, b) = (&pair.a, &pair.b);
    let title = format!("{a} → {b}: differential flame graph");
    let subtitle = match units {
        Units::PerRequest => format!(
            "Widths: {b}'s CPU ns/request. Red: {b} spends more per request than {a}, blue: less. \
             Stacks only {a} has are not drawn."
        ),
        Units::SampleShare => format!(
            "Shares of samples (CPU/request unknown for {unknown}), {a} scaled to {b}'s total. \
             Red: a larger share in {b}, blue: smaller."
        ),
    };
    (title, subtitle)
}

/// Render the differential `lines` of `pair` as an SVG.
fn render(lines: &[String], pair: &Pair, units: Units, unknown: &str) -> io::Result<Vec<u8>> {
    let (title, subtitle) = titles(pair, units, unknown);
    let mut opts = FlameOptions::default();
    opts.title = title;
    opts.subtitle = Some(subtitle);
    opts.deterministic = true;
    opts.min_width = MIN_WIDTH_PX;
    opts.image_width = Some(1200);
    opts.count_name = match units {
        Units::PerRequest => "ns/request",
        Units::SampleShare => "samples",
    }
    .to_string();
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut svg)?;
    Ok(svg)
}

/// One bucket's or one function's figure on each side (µs per request, or
/// percent of samples).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The bucket's or the function's name.
    pub name: String,
    /// Whether the function is a kernel frame (false for buckets).
    pub kernel: bool,
    /// The figure in A.
    pub a: f64,
    /// The figure in B.
    pub b: f64,
}

impl Change {
    /// B − A.
    pub fn delta(&self) -> f64 {
        self.b - self.a
    }
}

/// The change of largest magnitude (ties: the first name in order).
fn largest(changes: impl Iterator<Item = Change>) -> Option<Change> {
    let mut all: Vec<Change> = changes.collect();
    all.sort_by(|x, y| {
        y.delta()
            .abs()
            .total_cmp(&x.delta().abs())
            .then_with(|| x.name.cmp(&y.name))
    });
    all.into_iter().next()
}

/// A bucket's figure in `p`: its µs per request (its share of the CPU per
/// request when the profile did not split it), or its share of samples.
fn bucket_value(p: &VariantProfile, share: &BucketShare, units: Units) -> f64 {
    match units {
        Units::PerRequest if p.buckets.iter().any(|b| b.us_per_request > 0.0) => {
            share.us_per_request
        }
        Units::PerRequest => share.share_pct * p.cpu_us_per_request / 100.0,
        Units::SampleShare => share.share_pct,
    }
}

/// The bucket whose figure changed most from `a` to `b`.
pub fn bucket_change(a: &VariantProfile, b: &VariantProfile, units: Units) -> Option<Change> {
    let value = |p: &VariantProfile, name: &str| {
        p.buckets
            .iter()
            .find(|s| s.bucket == name)
            .map_or(0.0, |s| bucket_value(p, s, units))
    };
    let mut names: Vec<&str> = a.buckets.iter().map(|s| s.bucket.as_str()).collect();
    names.extend(b.buckets.iter().map(|s| s.bucket.as_str()));
    names.sort_unstable();
    names.dedup();
    largest(names.into_iter().map(|n| Change {
        name: n.to_string(),
        kernel: false,
        a: value(a, n),
        b: value(b, n),
    }))
}

/// Self time per leaf function (name, kernel?), each sample worth `scale`.
/// A stack that is only its root has no function and is left out.
fn self_times(stacks: &Stacks, scale: f64) -> HashMap<(String, bool), f64> {
    let mut out: HashMap<(String, bool), f64> = HashMap::new();
    for (stack, count) in stacks {
        let Some((_, leaf)) = stack.rsplit_once(';') else {
            continue;
        };
        let (name, kernel) = split_annotation(leaf);
        *out.entry((name.to_string(), kernel)).or_default() += *count as f64 * scale;
    }
    out
}

/// The function whose self time changed most, each side's samples worth
/// `a_scale` and `b_scale`.
pub fn function_change(a: &Stacks, b: &Stacks, a_scale: f64, b_scale: f64) -> Option<Change> {
    let (sa, sb) = (self_times(a, a_scale), self_times(b, b_scale));
    let mut keys: Vec<&(String, bool)> = sa.keys().chain(sb.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    largest(keys.into_iter().map(|k| Change {
        name: k.0.clone(),
        kernel: k.1,
        a: sa.get(k).copied().unwrap_or(0.0),
        b: sb.get(k).copied().unwrap_or(0.0),
    }))
}

/// `+1.20`, `−0.90` (a true minus sign), `0.00`.
fn signed(x: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, x.abs());
    if text.bytes().all(|c| c == b'0' || c == b'.') {
        text
    } else if x < 0.0 {
        format!("−{text}")
    } else {
        format!("+{text}")
    }
}

/// What one pair's sentence needs.
pub struct Findings<'a> {
    /// The pair.
    pub pair: &'a Pair,
    /// The units of every figure.
    pub units: Units,
    /// The server(s) lacking CPU per request, for the fallback's note.
    pub unknown: &'a str,
    /// CPU µs per request of A and B.
    pub totals: (f64, f64),
    /// The bucket that changed most.
    pub bucket: Option<Change>,
    /// The function that changed most.
    pub function: Option<Change>,
}

/// The sentence after `A vs B: `, naming the biggest bucket and function
/// changes with signed figures.
pub fn sentence(f: &Findings) -> String {
    let b = &f.pair.b;
    let (unit, dp) = match f.units {
        Units::PerRequest => ("µs/request", 2),
        Units::SampleShare => ("points", 1),
    };
    let mut s = String::new();
    match (&f.bucket, f.units) {
        (Some(c), Units::PerRequest) if c.delta() != 0.0 => {
            let more = if c.delta() > 0.0 { "more" } else { "less" };
            let _ = write!(
                s,
                "{b} spends {:.2} µs/request {more} in {} ({:.2} → {:.2}; all CPU {:.2} → {:.2} \
                 µs/request)",
                c.delta().abs(),
                c.name,
                c.a,
                c.b,
                f.totals.0,
                f.totals.1
            );
        }
        (Some(c), Units::SampleShare) if c.delta() != 0.0 => {
            let more = if c.delta() > 0.0 { "more" } else { "less" };
            let _ = write!(
                s,
                "(shares of samples: CPU per request unknown for {}) {} takes {:.1} points {more} \
                 of {b}'s samples ({:.1}% → {:.1}%)",
                f.unknown,
                c.name,
                c.delta().abs(),
                c.a,
                c.b
            );
        }
        _ => s.push_str("no bucket changed"),
    }
    if let Some(c) = f.function.as_ref().filter(|c| c.delta() != 0.0) {
        let side = if c.kernel { "kernel" } else { "user" };
        let _ = write!(
            s,
            "; the largest single function change is `{}` ({side}, {} {unit} of self time)",
            c.name,
            signed(c.delta(), dp)
        );
    }
    s.push('.');
    s
}

/// What became of one pair.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `<out>/diff/A-vs-B.svg` was written; the sentence goes with it.
    Drawn {
        /// The SVG.
        file: PathBuf,
        /// What changed most, after `A vs B: `.
        sentence: String,
    },
    /// Not drawn, and why (a side's stacks not on disk...).
    Skipped(String),
}

/// One pair and its outcome, in [`pairs`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The two servers.
    pub pair: Pair,
    /// The SVG and its sentence, or why there is none.
    pub outcome: Outcome,
}

/// Draw every pair of `profiles` (in report order) whose two
/// `stacks.folded` are under `out`, into `out/diff/`. A pair with a side
/// missing or unreadable is skipped with the reason; only failing to write
/// an SVG is an error.
pub fn write_all(out: &Path, profiles: &[VariantProfile]) -> io::Result<Vec<Entry>> {
    let names: Vec<&str> = profiles.iter().map(|p| p.variant.as_str()).collect();
    let find = |name: &str| profiles.iter().find(|p| p.variant == name);
    let mut entries = Vec::new();
    for pair in pairs(&names) {
        let (Some(a), Some(b)) = (find(&pair.a), find(&pair.b)) else {
            continue;
        };
        let outcome = match (read_stacks(out, a), read_stacks(out, b)) {
            (Ok(sa), Ok(sb)) => draw(out, &pair, (a, &sa), (b, &sb))?,
            (Err(why), _) | (_, Err(why)) => Outcome::Skipped(why),
        };
        entries.push(Entry { pair, outcome });
    }
    Ok(entries)
}

/// `out/NAME/stacks.folded` aligned, or why it cannot be used.
fn read_stacks(out: &Path, p: &VariantProfile) -> Result<Stacks, String> {
    let path = out.join(&p.variant).join(STACKS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "no {STACKS_FILE} for {} (it is not kept in git; `harness profile --variant {}` \
                 records it again)",
                p.variant, p.variant
            ))
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let stacks = align(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if stacks.is_empty() || p.samples == 0 {
        return Err(format!("{} has no samples", path.display()));
    }
    Ok(stacks)
}

/// Write one pair's SVG and find its sentence.
fn draw(
    out: &Path,
    pair: &Pair,
    (a, sa): (&VariantProfile, &Stacks),
    (b, sb): (&VariantProfile, &Stacks),
) -> io::Result<Outcome> {
    let units = Units::of(a, b);
    let unknown = [a, b]
        .iter()
        .filter(|p| !known_cost(p))
        .map(|p| p.variant.as_str())
        .collect::<Vec<_>>()
        .join(" and ");
    let lines = match units {
        Units::PerRequest => differential_lines(&per_request(sa, a), &per_request(sb, b), false)?,
        Units::SampleShare => differential_lines(sa, sb, true)?,
    };
    let svg = render(&lines, pair, units, &unknown)?;
    let dir = out.join(DIR);
    fs::create_dir_all(&dir).map_err(|e| in_file(&dir, e))?;
    let file = dir.join(pair.file_name());
    fs::write(&file, svg).map_err(|e| in_file(&file, e))?;
    let findings = Findings {
        pair,
        units,
        unknown: &unknown,
        totals: (a.cpu_us_per_request, b.cpu_us_per_request),
        bucket: bucket_change(a, b, units),
        function: function_change(sa, sb, units.per_sample(a), units.per_sample(b)),
    };
    Ok(Outcome::Drawn {
        file,
        sentence: sentence(&findings),
    })
}

fn in_file(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The markdown list of `entries` for summary.md, each SVG linked as
/// `{rel}diff/A-vs-B.svg` (`rel` is how summary.md reaches `--out`);
/// empty when there is no pair.
pub fn markdown(entries: &[Entry], rel: &str) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut md = String::from("### Differential flame graphs\n\n");
    md.push_str(
        "Each server against the next in architecture order, then each event-loop variant \
         against nginx (A vs B). Each graph is drawn on B's stacks and coloured by the change from A: red where B spends more, blue \
         where it spends less. Widths, colours and figures are CPU time per request (a stack's \
         samples × its server's CPU µs per request ÷ its samples) where both profiles know that \
         cost, shares of samples otherwise (the line says so); hovering a frame shows B's figure, its \
         share of B and the change as a share of B's total. So that two programs' stacks line up, \
         a stack that enters the kernel keeps only its kernel frames and one that does not only \
         its leaf function (under `user space`); the whole stacks are in each server's own flame \
         graph. Each line names the bucket that \
         changed most and the function whose self time changed most.\n\n",
    );
    for e in entries {
        let (a, b) = (&e.pair.a, &e.pair.b);
        let _ = match &e.outcome {
            Outcome::Drawn { sentence, .. } => writeln!(
                md,
                "- [{a} vs {b}]({rel}{DIR}/{}): {sentence}",
                e.pair.file_name()
            ),
            Outcome::Skipped(why) => writeln!(md, "- {a} vs {b}: not drawn: {why}."),
        };
    }
    md.push('\n');
    md
}

/// The SVGs `entries` wrote.
pub fn files(entries: &[Entry]) -> impl Iterator<Item = PathBuf> + '_ {
    entries.iter().filter_map(|e| match &e.outcome {
        Outcome::Drawn { file, .. } => Some(file.clone()),
        Outcome::Skipped(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real profile.json (the integration tests' fixture), so fields
    /// added later with a default need no edit here.
    const PROFILE_JSON: &str = include_str!("../../tests/fixtures/profile-epoll.json");

    /// A profile of `name` with `samples` samples, `cpu_us` µs per request
    /// (0: unknown) and (bucket, share %) pairs whose µs per request follow
    /// from the shares.
    fn profile(name: &str, samples: u64, cpu_us: f64, shares: &[(&str, f64)]) -> VariantProfile {
        let mut p: VariantProfile = serde_json::from_str(PROFILE_JSON).unwrap();
        p.variant = name.into();
        p.samples = samples;
        p.cpu_us_per_request = cpu_us;
        p.buckets = shares
            .iter()
            .map(|(b, pct)| BucketShare {
                bucket: b.to_string(),
                samples: (*pct * samples as f64 / 100.0) as u64,
                share_pct: *pct,
                us_per_request: pct * cpu_us / 100.0,
            })
            .collect();
        p
    }

    fn names(pairs: &[Pair]) -> Vec<String> {
        pairs.iter().map(|p| format!("{}>{}", p.a, p.b)).collect()
    }

    #[test]
    fn neighbours_first_then_each_event_loop_against_nginx() {
        let all = catalog::all();
        let got = pairs(&all);
        let neighbours = all.len() - 1;
        for (p, w) in got.iter().zip(all.windows(2)) {
            assert_eq!((p.a.as_str(), p.b.as_str()), (w[0], w[1]));
        }
        // The last variant's pair with nginx is already a neighbour pair.
        let last = all[all.len() - 2];
        let loops: Vec<&str> = all
            .iter()
            .copied()
            .filter(|n| catalog::is_event_loop(n) && *n != last)
            .collect();
        assert!(!loops.is_empty());
        assert_eq!(got.len(), neighbours + loops.len(), "{:?}", names(&got));
        for (p, n) in got[neighbours..].iter().zip(&loops) {
            assert_eq!((p.a.as_str(), p.b.as_str()), (*n, catalog::NGINX));
        }
        // A subset: neighbours among the servers given, and an event loop
        // meets nginx only when nginx is there.
        let threads: Vec<&str> = all[..neighbours]
            .iter()
            .copied()
            .filter(|n| !catalog::is_event_loop(n))
            .collect();
        let (t0, t1, l0, l1) = (threads[0], threads[1], loops[0], loops[1]);
        assert_eq!(
            names(&pairs(&[t1, l0, catalog::NGINX])),
            [format!("{t1}>{l0}"), format!("{l0}>{}", catalog::NGINX)]
        );
        assert_eq!(
            names(&pairs(&[t0, l0, l1])),
            [format!("{t0}>{l0}"), format!("{l0}>{l1}")]
        );
        assert!(pairs(&["epoll"]).is_empty());
        assert_eq!(pairs(&["a", "b"])[0].file_name(), "a-vs-b.svg");
    }

    #[test]
    fn stacks_keep_their_kernel_frames_or_user_leaf_under_one_root() {
        let folded = "epoll;main;__send;do_syscall_64_[k];tcp_sendmsg_[k] 3\n\
                      worker-0;start_thread;run;parse 2\n\
                      \n\
                      worker-1;clone3;run;parse 5\n\
                      nginx;[nginx];__GI___writev;do_syscall_64_[k];tcp_sendmsg_[k] 4\n\
                      ksoftirqd/0;run_ksoftirqd_[k] 1\n\
                      nginx 1\n";
        let want: Stacks = [
            ("server;do_syscall_64_[k];tcp_sendmsg_[k]", 7),
            ("server;user space;parse", 7),
            ("server;run_ksoftirqd_[k]", 1),
            ("server", 1),
        ]
        .into_iter()
        .map(|(s, c)| (s.to_string(), c))
        .collect();
        assert_eq!(align(folded).unwrap(), want);
        let err = align("epoll;a 3\nepoll;b three\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn counts_become_nanoseconds_per_request_before_the_diff() {
        // A: 100 samples for 20 µs/request, so one sample is 0.2 µs.
        let a = profile("a", 100, 20.0, &[]);
        // B: 200 samples for 5 µs/request, so one sample is 0.025 µs.
        let b = profile("b", 200, 5.0, &[]);
        let sa = align("a;x 50\na;y 50\n").unwrap();
        let sb = align("b;x 200\n").unwrap();
        let (pa, pb) = (per_request(&sa, &a), per_request(&sb, &b));
        assert_eq!(pa["server;user space;x"], 10_000);
        assert_eq!(pb["server;user space;x"], 5_000);
        let lines = differential_lines(&pa, &pb, false).unwrap();
        // y, which B does not run, is left out of the picture.
        assert_eq!(lines, ["server;user space;x 10000 5000"]);
        // Sample shares instead: inferno scales A's 100 samples to B's 200.
        let lines = differential_lines(&sa, &sb, true).unwrap();
        assert_eq!(lines, ["server;user space;x 100 200"]);
    }

    #[test]
    fn rounding_to_nanoseconds_keeps_the_total() {
        // Three one-sample stacks of 0.6 ns each: 1.8 ns, so 2 in all, the
        // two extra nanoseconds to the first two (equal remainders).
        let p = profile("p", 3, 0.0018, &[]);
        let s = align("p;a 1\np;b 1\np;c 1\n").unwrap();
        let got: Vec<u64> = per_request(&s, &p).into_values().collect();
        assert_eq!(got, [1, 1, 0]);
        // 2.5 + 1.5 ns: the larger remainder is a tie broken by order.
        let p = profile("p", 8, 0.004, &[]);
        let s = align("p;a 5\np;b 3\n").unwrap();
        assert_eq!(per_request(&s, &p).values().sum::<u64>(), 4);
    }

    fn findings_sentence(a: &VariantProfile, b: &VariantProfile, sa: &str, sb: &str) -> String {
        let (sa, sb) = (align(sa).unwrap(), align(sb).unwrap());
        let units = Units::of(a, b);
        let pair = Pair::new(&a.variant, &b.variant);
        let unknown = if units == Units::PerRequest { "" } else { "a" };
        sentence(&Findings {
            pair: &pair,
            units,
            unknown,
            totals: (a.cpu_us_per_request, b.cpu_us_per_request),
            bucket: bucket_change(a, b, units),
            function: function_change(&sa, &sb, units.per_sample(a), units.per_sample(b)),
        })
    }

    #[test]
    fn the_sentence_names_the_biggest_bucket_and_function_with_their_signs() {
        // epoll: 10 µs/request, scheduler 30% (3.0), TCP/IP 50% (5.0), app 20% (2.0).
        let a = profile(
            "epoll",
            100,
            10.0,
            &[("scheduler", 30.0), ("TCP/IP", 50.0), ("app", 20.0)],
        );
        // nginx: 8 µs/request, scheduler 10% (0.8), TCP/IP 70% (5.6), app 20% (1.6).
        let b = profile(
            "nginx",
            100,
            8.0,
            &[("scheduler", 10.0), ("TCP/IP", 70.0), ("app", 20.0)],
        );
        let sa = "epoll;__schedule_[k] 30\nepoll;tcp_sendmsg_[k] 50\nepoll;main 20\n";
        let sb = "nginx;__schedule_[k] 10\nnginx;tcp_sendmsg_[k] 70\nnginx;ngx_main 20\n";
        let s = findings_sentence(&a, &b, sa, sb);
        // scheduler −2.2 beats TCP/IP +0.6; __schedule −2.2 beats main −2.0.
        assert!(
            s.starts_with("nginx spends 2.20 µs/request less in scheduler (3.00 → 0.80;"),
            "{s}"
        );
        assert!(s.contains("all CPU 10.00 → 8.00 µs/request"), "{s}");
        assert!(
            s.ends_with("`__schedule` (kernel, −2.20 µs/request of self time)."),
            "{s}"
        );
        // The other way round: more, and a plus sign.
        let s = findings_sentence(&b, &a, sb, sa);
        assert!(
            s.starts_with("epoll spends 2.20 µs/request more in scheduler"),
            "{s}"
        );
        assert!(s.contains("`__schedule` (kernel, +2.20 µs/request"), "{s}");
    }

    #[test]
    fn without_cpu_per_request_the_sentence_compares_shares_and_says_so() {
        let a = profile("a", 100, 0.0, &[("scheduler", 30.0), ("app", 70.0)]);
        let b = profile("b", 200, 8.0, &[("scheduler", 10.0), ("app", 90.0)]);
        let s = findings_sentence(&a, &b, "a;f 30\na;main 70\n", "b;f 20\nb;main 180\n");
        assert!(
            s.starts_with("(shares of samples: CPU per request unknown for a)"),
            "{s}"
        );
        // app +20 points ties scheduler −20; the first name in order wins.
        assert!(
            s.contains("app takes 20.0 points more of b's samples (70.0% → 90.0%)"),
            "{s}"
        );
        assert!(s.contains("`f` (user, −20.0 points of self time)"), "{s}");
    }

    #[test]
    fn a_pair_with_a_side_missing_is_skipped_and_noted() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let profiles = [
            profile("a", 100, 10.0, &[("scheduler", 30.0), ("app", 70.0)]),
            profile("b", 100, 8.0, &[("scheduler", 10.0), ("app", 90.0)]),
            profile("c", 100, 6.0, &[("app", 100.0)]),
        ];
        for (name, stacks) in [
            ("a", "a;__schedule_[k] 30\na;main 70\n"),
            ("b", "b;__schedule_[k] 10\nb;main 90\n"),
        ] {
            fs::create_dir_all(out.join(name)).unwrap();
            fs::write(out.join(name).join(STACKS_FILE), stacks).unwrap();
        }
        let entries = write_all(out, &profiles).unwrap();
        assert_eq!(
            names(&entries.iter().map(|e| e.pair.clone()).collect::<Vec<_>>()),
            ["a>b", "b>c"]
        );
        let Outcome::Drawn { file, sentence } = &entries[0].outcome else {
            panic!("{:?}", entries[0]);
        };
        assert_eq!(file, &out.join("diff/a-vs-b.svg"));
        let svg = fs::read_to_string(file).unwrap();
        assert!(svg.contains("a → b: differential flame graph"));
        assert!(
            svg.contains("ns/request") && svg.contains("Red: b spends more per request than a")
        );
        // __schedule shrank (blue), main grew (red).
        assert!(svg.contains("fill=\"rgb(100,100,255)\""), "no full blue");
        assert!(svg.contains("fill=\"rgb(255,"), "no red");
        assert!(sentence.contains("less in scheduler"), "{sentence}");
        match &entries[1].outcome {
            Outcome::Skipped(why) => assert!(why.contains("no stacks.folded for c"), "{why}"),
            o => panic!("{o:?}"),
        }
        let md = markdown(&entries, "../profiles/");
        assert!(
            md.contains("- [a vs b](../profiles/diff/a-vs-b.svg): b spends"),
            "{md}"
        );
        assert!(
            md.contains("- b vs c: not drawn: no stacks.folded for c"),
            "{md}"
        );
        assert_eq!(files(&entries).count(), 1);
        assert!(markdown(&[], "x/").is_empty());
    }

    #[test]
    fn signs_use_a_true_minus_and_no_sign_on_zero() {
        assert_eq!(signed(-0.904, 2), "−0.90");
        assert_eq!(signed(1.2, 1), "+1.2");
        assert_eq!(signed(-0.001, 2), "0.00");
    }
}
