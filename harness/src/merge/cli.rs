//! `harness merge` options.

use std::path::PathBuf;

const AFTER_HELP: &str = "\
Each FILE is what `loadgen --json FILE` wrote: one process's result, from this machine or
another. Several loadgens driving one server at the same time are merged into one result, as
if one loadgen had held all their threads and connections:

  - requests, batches, bytes, reconnects, requests in flight at the end and every error
    counter (connect, read, write, timeout, status and status_by_code per code, idle_close)
    are summed.
  - settings: the first input's url, method, headers and pipeline; threads, connections,
    -R and -n summed; the longest -d, --timeout and --coalesce.
  - latency: the HdrHistograms (histogram, histogram_uncorrected) are decoded and added,
    and every percentile is computed from the sum: exact, never an average of percentiles.
  - req/s: the sum of the inputs' req/s, which is the combined rate when the runs
    overlapped in time. duration_s is requests / that sum (the common duration when the runs
    were equally long), so `N requests in D` and Requests/sec agree.
  - Req/Sec (per-thread rates): every thread's samples pooled.

The report is loadgen's (with --latency its distribution and spectrum), under a header
saying how many runs were merged; --json OUT writes loadgen's JSON layout with
merged_from (the number of loadgen runs in it) added, so merged files can be merged again.

Refused (exit 1): a file that is not loadgen JSON or whose histogram does not decode (the
message names the file and the key), and inputs that measured different loads: another
settings.url, method, headers, pipeline, or -R in some but not all. --allow-mixed merges
those anyway, with the first input's settings.

Warned about (the clock caveat): durations more than 10% apart, and starts (started_unix_ms,
each machine's wall clock) further apart than 10% of the shortest run: the runs then
overlapped only in part and the summed req/s overstates the combined rate. Start every
loadgen at one wall-clock time, on clocks kept in step by NTP or chrony.

Example (two machines, one common start; see the README):
  t=$(( $(date +%s) + 10 ))
  for h in client1 client2; do
    ssh $h \"sleep \\$(( $t - \\$(date +%s) )); loadgen -t2 -c100 -d30s --json /tmp/lg.json URL\" &
  done; wait
  for h in client1 client2; do scp $h:/tmp/lg.json $h.json; done
  harness merge client1.json client2.json --json all.json";

/// Merge loadgen `--json` results into one.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct MergeArgs {
    /// loadgen --json outputs (or earlier merges) to combine
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Also write the merged result as JSON, in loadgen's layout
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// Print the latency distribution and the full percentile spectrum
    #[arg(short = 'L', long)]
    pub latency: bool,
    /// Merge inputs even when their URL, method, headers, pipeline or -R differ
    #[arg(long)]
    pub allow_mixed: bool,
}
