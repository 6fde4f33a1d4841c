//! From `perf script` text to collapsed stacks (inferno's perf collapser)
//! and from collapsed stacks to a flame graph SVG (inferno's renderer).
//!
//! Collapsed form (`comm;root;...;leaf COUNT`, kernel frames suffixed
//! `_[k]`) is the one representation both the flame graph and the bucket
//! classifier read, so the picture and the numbers come from the same
//! stacks.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};

use inferno::collapse::perf::{Folder, Options as CollapseOptions};
use inferno::collapse::Collapse;
use inferno::flamegraph::color::{BasicPalette, Color, PaletteMap};
use inferno::flamegraph::{self, Options as FlameOptions, Palette};

use super::classify::{parse_collapsed_line, split_annotation};
use super::Owner;

/// The fields `perf script` is asked for. No `period`: with it, inferno
/// weighs each stack by the sample's period (250000 ns for cpu-clock at
/// 4 kHz) instead of counting it once, and the counts would no longer be
/// samples.
pub const SCRIPT_FIELDS: &str = "comm,pid,tid,time,event,ip,sym,dso";

/// Collapse `perf script -F SCRIPT_FIELDS` output read from `input`:
/// one line per distinct stack, kernel frames annotated `_[k]`, the process
/// name as the root frame.
pub fn collapse(input: impl BufRead) -> io::Result<String> {
    collapse_opts(input, false)
}

/// [`collapse`] with the process id in the root frame (`comm-PID`, spaces
/// in the name as `_`), so a CPU-wide recording can be narrowed to the
/// server's processes ([`keep_owned`]).
pub fn collapse_with_pids(input: impl BufRead) -> io::Result<String> {
    collapse_opts(input, true)
}

fn collapse_opts(input: impl BufRead, include_pid: bool) -> io::Result<String> {
    let mut opts = CollapseOptions::default();
    opts.annotate_kernel = true;
    opts.include_pid = include_pid;
    opts.nthreads = 1;
    let mut folder = Folder::from(opts);
    let mut out = Vec::new();
    folder.collapse(VdsoAsUser::new(input), &mut out)?;
    String::from_utf8(out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The stacks of [`collapse_with_pids`] that `owner` owns, with the
/// process id taken off their root frame again (`comm`), and the share of
/// all samples they hold (0..=1).
pub fn keep_owned(collapsed: &str, owner: &Owner) -> (String, f64) {
    let (mut all, mut kept) = (0u64, 0u64);
    let mut out = String::with_capacity(collapsed.len());
    for line in collapsed.lines() {
        let Some((stack, count)) = parse_collapsed_line(line) else {
            continue;
        };
        all += count;
        let (root, rest) = stack.split_once(';').unwrap_or((stack, ""));
        let Some((comm, pid)) = root.rsplit_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if owner.owns(comm, pid) {
            kept += count;
            out.push_str(comm);
            if !rest.is_empty() {
                out.push(';');
                out.push_str(rest);
            }
            out.push_str(&format!(" {count}\n"));
        }
    }
    (
        out,
        if all == 0 {
            0.0
        } else {
            kept as f64 / all as f64
        },
    )
}

/// The heaviest root frames (process names) of `collapsed` with their
/// share of the samples, for saying what ran instead of the server.
pub fn top_roots(collapsed: &str, n: usize) -> Vec<(String, f64)> {
    let mut by: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut all = 0u64;
    for line in collapsed.lines() {
        if let Some((stack, count)) = parse_collapsed_line(line) {
            let root = stack.split(';').next().unwrap_or("");
            let comm = root.rsplit_once('-').map_or(root, |(c, _)| c);
            *by.entry(comm).or_default() += count;
            all += count;
        }
    }
    let mut top: Vec<(String, f64)> = by
        .into_iter()
        .map(|(c, n)| (c.to_string(), 100.0 * n as f64 / all.max(1) as f64))
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(n);
    top
}

/// inferno counts every bracketed module as the kernel's, `[vdso]` included,
/// but the vDSO (clock_gettime without a syscall) runs in user mode. This
/// reader renames the module on the way in (`([vdso])` → `(vdso)`), so its
/// frames stay user frames in the flame graph and the buckets alike. It also
/// drops blank and `#` lines before the first sample: inferno's collapser
/// asserts (panics) on input that starts with a blank line.
struct VdsoAsUser<R> {
    inner: R,
    line: Vec<u8>,
    pos: usize,
    started: bool,
}

impl<R: BufRead> VdsoAsUser<R> {
    fn new(inner: R) -> Self {
        VdsoAsUser {
            inner,
            line: Vec::new(),
            pos: 0,
            started: false,
        }
    }
}

const VDSO_KERNELISH: &[u8] = b"([vdso])";
const VDSO_USER: &[u8] = b"(vdso)";

impl<R: BufRead> io::Read for VdsoAsUser<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for VdsoAsUser<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.line.len() {
            self.line.clear();
            self.pos = 0;
            if self.inner.read_until(b'\n', &mut self.line)? == 0 {
                break;
            }
            if !self.started {
                let t = self.line.trim_ascii();
                if t.is_empty() || t.starts_with(b"#") {
                    self.line.clear();
                    continue;
                }
                self.started = true;
            }
            if let Some(at) = self
                .line
                .windows(VDSO_KERNELISH.len())
                .position(|w| w == VDSO_KERNELISH)
            {
                self.line
                    .splice(at..at + VDSO_KERNELISH.len(), VDSO_USER.iter().copied());
            }
        }
        Ok(&self.line[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.line.len());
    }
}

/// Kernel frames in cool colours (blues, teals), so a flame graph reads
/// like the bucket chart: warm is user space, cool is the kernel. User
/// frames keep inferno's "hot" palette.
fn kernel_palette(collapsed: &str) -> PaletteMap {
    let mut names = BTreeSet::new();
    for line in collapsed.lines() {
        let stack = line.rsplit_once(' ').map_or(line, |(s, _)| s);
        for frame in stack.split(';') {
            if split_annotation(frame).1 {
                names.insert(frame);
            }
        }
    }
    let mut map = PaletteMap::default();
    for name in names {
        // FNV-1a: stable across runs and machines, so the same function
        // keeps its shade.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let v = |shift: u32| ((h >> shift) & 0xff) as f32 / 255.0;
        map.insert(
            name,
            Color {
                r: 40 + (70.0 * v(0)) as u8,
                g: 110 + (90.0 * v(8)) as u8,
                b: 190 + (60.0 * v(16)) as u8,
            },
        );
    }
    map
}

/// Render `collapsed` as an interactive flame graph SVG. Frames narrower
/// than `min_width_px` are left out, which keeps the file to a few hundred
/// KiB without losing anything visible.
pub fn flamegraph(
    collapsed: &str,
    title: &str,
    subtitle: &str,
    min_width_px: f64,
    out: impl Write,
) -> io::Result<()> {
    flamegraph_of(collapsed, title, subtitle, min_width_px, "samples", out)
}

/// [`flamegraph`] of stacks counted in `count_name` (e.g. `µs` for
/// off-CPU time).
pub fn flamegraph_of(
    collapsed: &str,
    title: &str,
    subtitle: &str,
    min_width_px: f64,
    count_name: &str,
    out: impl Write,
) -> io::Result<()> {
    let mut palette = kernel_palette(collapsed);
    let mut opts = FlameOptions::default();
    opts.title = title.to_string();
    opts.subtitle = Some(subtitle.to_string());
    opts.colors = Palette::Basic(BasicPalette::Hot);
    opts.deterministic = true;
    opts.palette_map = Some(&mut palette);
    opts.count_name = count_name.to_string();
    opts.min_width = min_width_px;
    opts.image_width = Some(1200);
    flamegraph::from_lines(&mut opts, collapsed.lines(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "epoll 100/100 10.000001: cpu-clock: \n\
\tffffffff8206e58b tcp_sendmsg+0x2b ([kernel.kallsyms])\n\
\tffffffff8225a6c1 do_syscall_64+0x71 ([kernel.kallsyms])\n\
\t          10aba4 __send+0x64 (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\
\n\
epoll 100/100 10.000251: cpu-clock: \n\
\tffffffff8206e58b tcp_sendmsg+0x2b ([kernel.kallsyms])\n\
\tffffffff8225a6c1 do_syscall_64+0x71 ([kernel.kallsyms])\n\
\t          10aba4 __send+0x64 (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\
\n";

    #[test]
    fn a_cpu_wide_recording_is_kept_to_the_servers_processes() {
        let c = "worker-0-100;read;tcp_recvmsg_[k] 6\nnginx-7;[nginx] 3\nchild-200;main 1\n\
                 swapper-0;default_idle_[k] 10\n";
        let (kept, share) = keep_owned(c, &Owner::Pids(&[100, 7]));
        assert_eq!(kept, "worker-0;read;tcp_recvmsg_[k] 6\nnginx;[nginx] 3\n");
        assert!((share - 0.45).abs() < 1e-9, "{share}");
        let (kept, share) = keep_owned(c, &Owner::Comm("child"));
        assert_eq!(kept, "child;main 1\n");
        assert!((share - 0.05).abs() < 1e-9, "{share}");
        let top = top_roots(c, 2);
        assert_eq!(top[0], ("swapper".to_string(), 50.0));
        assert_eq!(top[1].0, "worker-0");
    }

    #[test]
    fn collapses_and_counts_samples_not_periods() {
        let c = collapse(SCRIPT.as_bytes()).unwrap();
        assert_eq!(c.trim(), "epoll;__send;do_syscall_64_[k];tcp_sendmsg_[k] 2");
    }

    #[test]
    fn leading_blank_and_comment_lines_are_skipped() {
        let c = collapse(format!("# a comment\n\n\n{SCRIPT}").as_bytes()).unwrap();
        assert_eq!(c.trim(), "epoll;__send;do_syscall_64_[k];tcp_sendmsg_[k] 2");
        assert_eq!(collapse("\n\n".as_bytes()).unwrap(), "");
    }

    #[test]
    fn the_vdso_stays_in_user_space() {
        let script = "epoll 100/100 10.000001: cpu-clock: \n\
\t    7ffc3a1f0a3d __vdso_clock_gettime+0xcd ([vdso])\n\
\t           e3d1d clock_gettime@@GLIBC_2.17+0x1d (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\
\n";
        let c = collapse(script.as_bytes()).unwrap();
        assert_eq!(
            c.trim(),
            "epoll;clock_gettime@@GLIBC_2.17;__vdso_clock_gettime 1"
        );
    }

    #[test]
    fn renders_an_svg_with_cool_kernel_frames() {
        let c = collapse(SCRIPT.as_bytes()).unwrap();
        let mut svg = Vec::new();
        flamegraph(&c, "t", "s", 0.1, &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..100]);
        assert!(svg.contains("tcp_sendmsg"));
        let map = kernel_palette(&c);
        let k = map.get("tcp_sendmsg_[k]").unwrap();
        assert!(k.b > k.r, "{k:?}");
        assert!(map.get("__send").is_none());
    }
}
