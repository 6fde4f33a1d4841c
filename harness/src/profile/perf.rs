//! Finding `perf` and making sure it may do what a profile needs, before
//! any server is started: sample kernel stacks (`cpu-clock` with kernel
//! frames) and count syscall tracepoints.
//!
//! The check matters because perf does not always fail: unprivileged with
//! `kernel.perf_event_paranoid` at 2 (Debian's default), `perf record -e
//! cpu-clock` quietly becomes `cpu-clock:u` and records user space only, so
//! the kernel (where most of a server's time goes) would simply vanish from
//! the profile. Hence a static check of the privileges first, then a tiny
//! real recording whose event list is read back.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::rig::process::find_on_path;

/// What to install when perf is missing.
pub const INSTALL_HINT: &str =
    "install it with `apt-get install linux-perf` (Debian; on Ubuntu: linux-tools-generic)";

/// Why perf cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum PerfError {
    /// Not installed, or installed but not runnable (e.g. a wrapper that
    /// finds no perf for the running kernel).
    Missing(String),
    /// Installed, but the kernel refuses what a profile needs.
    NotPermitted(String),
    /// Anything else: perf's own words.
    Broken(String),
}

impl fmt::Display for PerfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PerfError::Missing(m) | PerfError::NotPermitted(m) | PerfError::Broken(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for PerfError {}

/// A usable perf.
#[derive(Debug, Clone)]
pub struct Perf {
    /// The perf binary.
    pub program: PathBuf,
    /// `perf version 6.1.192`
    pub version: String,
}

impl Perf {
    /// `perf` on PATH, checked to run.
    pub fn locate() -> Result<Perf, PerfError> {
        let program = find_on_path("perf")
            .ok_or_else(|| PerfError::Missing(format!("perf not found: {INSTALL_HINT}")))?;
        let out = Command::new(&program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                PerfError::Missing(format!(
                    "{} does not run ({e}): {INSTALL_HINT}",
                    program.display()
                ))
            })?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || !text.starts_with("perf version") {
            return Err(PerfError::Missing(format!(
                "{} does not run ({}): {}\n{INSTALL_HINT}, matching the running kernel",
                program.display(),
                out.status,
                first_lines(&String::from_utf8_lossy(&out.stderr), 3)
            )));
        }
        Ok(Perf {
            program,
            version: text,
        })
    }

    /// A perf command line to add arguments to.
    pub fn command(&self) -> Command {
        Command::new(&self.program)
    }

    /// Check that a profile can be taken: the privileges first (see the
    /// module docs), then a real `perf record` of `true` whose event must
    /// have kept its kernel half, and a real syscall count.
    pub fn check(&self, scratch: &Path) -> Result<(), PerfError> {
        let privileges = Privileges::detect();
        precheck(&privileges)?;

        let data = scratch.join("probe.perf.data");
        let out = self.run(&[
            "record",
            "-e",
            "cpu-clock",
            "-g",
            "-o",
            path_str(&data)?,
            "--",
            "true",
        ])?;
        if !out.status.success() {
            return Err(diagnose("perf record", &stderr_of(&out), &privileges));
        }
        let out = self.run(&["evlist", "-i", path_str(&data)?])?;
        let evlist = String::from_utf8_lossy(&out.stdout).to_string();
        let _ = fs::remove_file(&data);
        if !out.status.success() {
            return Err(diagnose("perf evlist", &stderr_of(&out), &privileges));
        }
        if evlist.lines().any(|l| l.trim().ends_with(":u")) {
            return Err(not_permitted_kernel(&privileges));
        }
        let out = self.run(&[
            "stat",
            "-x,",
            "-e",
            crate::profile::syscalls::TOTAL_EVENT,
            "--",
            "true",
        ])?;
        if !out.status.success() {
            return Err(diagnose(
                "perf stat -e raw_syscalls:sys_enter",
                &stderr_of(&out),
                &privileges,
            ));
        }
        Ok(())
    }

    fn run(&self, args: &[&str]) -> Result<Output, PerfError> {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| PerfError::Broken(format!("running perf {}: {e}", args.join(" "))))
    }
}

fn path_str(p: &Path) -> Result<&str, PerfError> {
    p.to_str()
        .ok_or_else(|| PerfError::Broken(format!("{} is not UTF-8", p.display())))
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// What decides whether perf may profile the kernel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Privileges {
    /// The effective uid.
    pub uid: u32,
    /// Root, or CAP_PERFMON / CAP_SYS_ADMIN in the effective set.
    pub privileged: bool,
    /// /proc/sys/kernel/perf_event_paranoid.
    pub paranoid: Option<i64>,
    /// /proc/sys/kernel/kptr_restrict.
    pub kptr_restrict: Option<i64>,
    /// Whether the syscall tracepoints can be read (tracefs is root-only
    /// on most systems).
    pub tracefs_readable: bool,
}

impl Privileges {
    /// Read the privileges of this process.
    pub fn detect() -> Privileges {
        let read = |p: &str| {
            fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
        };
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let caps = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        const CAP_SYS_ADMIN: u32 = 21;
        const CAP_PERFMON: u32 = 38;
        let privileged =
            uid == 0 || caps & (1 << CAP_SYS_ADMIN) != 0 || caps & (1 << CAP_PERFMON) != 0;
        let tracefs_readable = crate::profile::syscalls::tracefs()
            .map(|t| fs::read_dir(t.join("events/raw_syscalls")).is_ok())
            .unwrap_or(false);
        Privileges {
            uid,
            privileged,
            paranoid: read("/proc/sys/kernel/perf_event_paranoid"),
            kptr_restrict: read("/proc/sys/kernel/kptr_restrict"),
            tracefs_readable,
        }
    }

    fn paranoid_text(&self) -> String {
        match self.paranoid {
            Some(v) => format!("kernel.perf_event_paranoid is {v}"),
            None => "kernel.perf_event_paranoid could not be read".to_string(),
        }
    }
}

/// The check that needs no perf run: unprivileged, a paranoid level above 1
/// excludes the kernel; kernel symbols hidden by kptr_restrict would leave
/// every kernel frame unnamed; an unreadable tracefs stops the syscall count.
pub fn precheck(p: &Privileges) -> Result<(), PerfError> {
    if p.privileged {
        return Ok(());
    }
    if p.paranoid.is_some_and(|v| v > 1) {
        return Err(not_permitted_kernel(p));
    }
    if p.kptr_restrict.is_some_and(|v| v > 0) {
        return Err(PerfError::NotPermitted(format!(
            "kernel symbols are hidden from uid {}: kernel.kptr_restrict is {} ({}), so every \
             kernel frame would be unnamed; allow it with `sudo sysctl kernel.kptr_restrict=0`, \
             or run as root",
            p.uid,
            p.kptr_restrict.unwrap_or(0),
            p.paranoid_text()
        )));
    }
    if !p.tracefs_readable {
        return Err(not_permitted_tracepoints(p));
    }
    Ok(())
}

fn not_permitted_kernel(p: &Privileges) -> PerfError {
    PerfError::NotPermitted(format!(
        "perf may not sample the kernel: {} and uid {} has neither root nor CAP_PERFMON, so \
         `perf record -e cpu-clock` would record user space only; allow it with \
         `sudo sysctl kernel.perf_event_paranoid=-1` (1 is enough for the recording, the \
         syscall tracepoints want -1), or run as root",
        p.paranoid_text(),
        p.uid
    ))
}

fn not_permitted_tracepoints(p: &Privileges) -> PerfError {
    PerfError::NotPermitted(format!(
        "perf may not count syscalls: the tracepoints under /sys/kernel/tracing are not \
         readable by uid {} ({}); run as root, or `sudo mount -o remount,mode=755 \
         /sys/kernel/tracing` and `sudo sysctl kernel.perf_event_paranoid=-1`",
        p.uid,
        p.paranoid_text()
    ))
}

/// Turn a failed perf run into the error to show: permission problems name
/// the sysctl and its value; anything else quotes perf.
pub fn diagnose(what: &str, stderr: &str, p: &Privileges) -> PerfError {
    let lower = stderr.to_lowercase();
    if lower.contains("trace events") || lower.contains("/sys/kernel/tracing") {
        return not_permitted_tracepoints(p);
    }
    if lower.contains("perf_event_paranoid")
        || lower.contains("permission denied")
        || lower.contains("no permission")
        || lower.contains("operation not permitted")
        || lower.contains("access to performance monitoring")
    {
        return not_permitted_kernel(p);
    }
    PerfError::Broken(format!(
        "{what} failed:\n{}",
        first_lines(stderr.trim_end(), 12)
    ))
}

fn first_lines(text: &str, n: usize) -> String {
    text.lines()
        .take(n)
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Make a FIFO at `path` (for perf's `--control`).
pub fn mkfifo(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unprivileged(paranoid: i64) -> Privileges {
        Privileges {
            uid: 1000,
            privileged: false,
            paranoid: Some(paranoid),
            kptr_restrict: Some(0),
            tracefs_readable: true,
        }
    }

    #[test]
    fn paranoid_2_is_refused_with_the_sysctl_and_its_value() {
        let e = precheck(&unprivileged(2)).unwrap_err();
        let PerfError::NotPermitted(m) = &e else {
            panic!("{e:?}")
        };
        assert!(m.contains("kernel.perf_event_paranoid is 2"), "{m}");
        assert!(m.contains("sysctl kernel.perf_event_paranoid=-1"), "{m}");
        assert!(precheck(&unprivileged(1)).is_ok());
        let root = Privileges {
            privileged: true,
            ..unprivileged(3)
        };
        assert!(precheck(&root).is_ok());
    }

    #[test]
    fn hidden_kernel_symbols_and_tracefs_are_named() {
        let p = Privileges {
            kptr_restrict: Some(1),
            ..unprivileged(-1)
        };
        assert!(precheck(&p)
            .unwrap_err()
            .to_string()
            .contains("kernel.kptr_restrict=0"));
        let p = Privileges {
            tracefs_readable: false,
            ..unprivileged(-1)
        };
        let m = precheck(&p).unwrap_err().to_string();
        assert!(
            m.contains("/sys/kernel/tracing") && m.contains("is -1"),
            "{m}"
        );
    }

    #[test]
    fn perf_failures_are_diagnosed() {
        let p = unprivileged(2);
        let e = diagnose(
            "perf record",
            "Error:\nAccess to performance monitoring and observability operations is limited.\n",
            &p,
        );
        assert!(matches!(e, PerfError::NotPermitted(_)), "{e:?}");
        assert!(e.to_string().contains("is 2"));
        let e = diagnose(
            "perf stat",
            "event syntax error: 'raw_syscalls:sys_enter'\n  can't access trace events\n",
            &p,
        );
        assert!(e.to_string().contains("/sys/kernel/tracing"), "{e}");
        let e = diagnose("perf record", "something odd\n", &p);
        assert!(matches!(e, PerfError::Broken(ref m) if m.contains("something odd")));
    }
}
