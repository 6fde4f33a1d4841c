//! nginx as the reference: find it, render `servers/nginx/nginx.conf.template`
//! into a throwaway prefix, and build its command lines (DESIGN §6).
//!
//! The template's placeholders (`@PREFIX@`, `@PORT@`, `@ROOT@`, `@WORKERS@`,
//! `@USER@`) are the template's own contract; what only this runner
//! needs is done by editing the rendered lines instead (CPU affinity, the
//! connection and file limits), so the template stays valid for both.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// The template, compiled in so the runner works from any directory
/// (cargo rebuilds the runner when it changes).
pub const TEMPLATE: &str = include_str!("../../../servers/nginx/nginx.conf.template");

/// Shown when nginx is not installed.
pub const INSTALL_HINT: &str =
    "nginx not found: install it with `apt-get install nginx-light` (or nginx), or pass --no-nginx";

/// Where nginx usually lives when it is not on a non-root PATH.
const USUAL_PLACES: [&str; 3] = [
    "/usr/sbin/nginx",
    "/usr/local/sbin/nginx",
    "/usr/local/nginx/sbin/nginx",
];

/// The nginx binary: on PATH, else in the usual sbin directories.
pub fn find() -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).map(|d| d.join("nginx")).collect())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(USUAL_PLACES.iter().map(PathBuf::from))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `nginx/1.22.1` (from `nginx -v`), or None.
pub fn version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("-v").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split_once("nginx version:"))
        .map(|(_, v)| v.trim().to_string())
}

/// What a rendered configuration needs to know.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// The port to listen on (127.0.0.1 only).
    pub port: u16,
    /// The shared docroot, so nginx serves the same bytes as the variants.
    pub root: &'a Path,
    /// worker_processes.
    pub workers: usize,
    /// Worker i is pinned to `cpus[i % len]` (worker_cpu_affinity).
    pub cpus: &'a [usize],
    /// worker_connections is raised to at least this (the sweep's highest
    /// connection count plus headroom) if the template has fewer.
    pub min_connections: u64,
    /// The hard open-files limit when unprivileged (worker_rlimit_nofile is
    /// lowered to it: nginx cannot raise it past that and would log an
    /// alert); None when root.
    pub max_nofile: Option<u64>,
    /// Adds `user root;` (workers would otherwise drop to nobody).
    pub as_root: bool,
    /// Turns `open_file_cache` on ([`OPEN_FILE_CACHE`]) in place of the
    /// template's `open_file_cache off;`.
    pub open_file_cache: bool,
}

/// nginx's file cache when a workload asks for caching: descriptors and
/// metadata kept, checked once a second as the variants' `--file-cache-valid`.
pub const OPEN_FILE_CACHE: &str =
    "open_file_cache max=1000 inactive=60s; open_file_cache_valid 1s;";

/// Render `template` for a prefix directory. Errors name an unsubstituted
/// placeholder.
pub fn render(template: &str, prefix: &Path, s: &Settings) -> Result<String, String> {
    let prefix_s = prefix
        .to_str()
        .ok_or("the nginx prefix path is not UTF-8")?;
    let root_s = s.root.to_str().ok_or("the docroot path is not UTF-8")?;
    let text = template
        .replace("@PREFIX@", prefix_s.trim_end_matches('/'))
        .replace("@PORT@", &s.port.to_string())
        .replace("@ROOT@", root_s)
        .replace("@WORKERS@", &s.workers.to_string())
        .replace("@USER@", if s.as_root { "user root;" } else { "" });

    let mut out = String::with_capacity(text.len() + 128);
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = words
            .get(1)
            .and_then(|w| w.strip_suffix(';'))
            .and_then(|n| n.parse::<u64>().ok());
        let indent = &line[..line.len() - line.trim_start().len()];
        match (words.first().copied(), number) {
            (Some("worker_connections"), Some(n)) => {
                let mut want = n.max(s.min_connections);
                // Unprivileged, more than the fd limit only earns a warning.
                if let Some(max) = s.max_nofile {
                    want = want.min(max.saturating_sub(64)).max(s.min_connections);
                }
                out.push_str(&format!("{indent}worker_connections {want};"));
            }
            (Some("worker_rlimit_nofile"), Some(n)) => {
                let mut want = n.max(s.min_connections + 100);
                if let Some(max) = s.max_nofile {
                    want = want.min(max);
                }
                out.push_str(&format!("{indent}worker_rlimit_nofile {want};"));
            }
            (Some("worker_processes"), _) => {
                out.push_str(line);
                out.push('\n');
                out.push_str(&format!(
                    "{indent}worker_cpu_affinity {};",
                    affinity_masks(s.workers, s.cpus)
                ));
            }
            (Some("open_file_cache"), _) if s.open_file_cache => {
                out.push_str(&format!("{indent}{OPEN_FILE_CACHE}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    if let Some(pos) = find_placeholder(&out) {
        let line = out[..pos].matches('\n').count() + 1;
        return Err(format!(
            "unsubstituted placeholder on line {line} of the rendered nginx.conf: {}",
            out.lines().nth(line - 1).unwrap_or("").trim()
        ));
    }
    Ok(out)
}

/// Byte offset of an `@NAME@` left in `text`, if any.
fn find_placeholder(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'@' {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_uppercase() || b[j] == b'_') {
                j += 1;
            }
            if j > i + 1 && j < b.len() && b[j] == b'@' {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// worker_cpu_affinity masks: worker i on `cpus[i % len]`, e.g. two
/// workers on CPUs 0 and 2 → `001 100` (rightmost digit = CPU 0).
fn affinity_masks(workers: usize, cpus: &[usize]) -> String {
    let width = cpus.iter().max().map_or(1, |m| m + 1);
    (0..workers.max(1))
        .map(|i| {
            let cpu = cpus.get(i % cpus.len().max(1)).copied().unwrap_or(0);
            (0..width)
                .rev()
                .map(|bit| if bit == cpu { '1' } else { '0' })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A rendered configuration in its own temporary prefix directory (logs,
/// pid, lock and temp paths all inside); removed when dropped.
pub struct Prefix {
    dir: TempDir,
    /// The rendered nginx.conf.
    pub conf: PathBuf,
    /// nginx's error log, shown when it fails.
    pub error_log: PathBuf,
}

impl Prefix {
    /// Render the template into a fresh prefix.
    pub fn create(template: &str, s: &Settings) -> io::Result<Prefix> {
        let dir = tempfile::Builder::new().prefix("bench-nginx.").tempdir()?;
        let text = render(template, dir.path(), s)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let conf = dir.path().join("nginx.conf");
        fs::write(&conf, text)?;
        let error_log = dir.path().join("error.log");
        Ok(Prefix {
            dir,
            conf,
            error_log,
        })
    }

    /// The prefix directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `-p PREFIX/ -c CONF -e ERRLOG`: what both `nginx -t` and the start
    /// need (`-e` so nginx never opens its compiled-in log path).
    pub fn args(&self) -> Vec<OsString> {
        let mut prefix = self.dir.path().as_os_str().to_owned();
        prefix.push("/");
        vec![
            "-p".into(),
            prefix,
            "-c".into(),
            self.conf.clone().into_os_string(),
            "-e".into(),
            self.error_log.clone().into_os_string(),
        ]
    }

    /// The foreground start: [`Prefix::args`] + `-g 'daemon off;'`.
    pub fn start_args(&self) -> Vec<OsString> {
        let mut a = self.args();
        a.push("-g".into());
        a.push("daemon off;".into());
        a
    }

    /// Run `nginx -t` on the configuration; Err carries nginx's output.
    pub fn test(&self, nginx: &Path) -> Result<(), String> {
        let out = Command::new(nginx)
            .arg("-t")
            .args(self.args())
            .output()
            .map_err(|e| format!("running {} -t: {e}", nginx.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`nginx -t` rejected {} ({}):\n{}{}",
                self.conf.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(root: &Path) -> Settings<'_> {
        Settings {
            port: 8081,
            root,
            workers: 2,
            cpus: &[0, 2],
            min_connections: 1300,
            max_nofile: Some(20000),
            as_root: true,
            open_file_cache: false,
        }
    }

    #[test]
    fn open_file_cache_on_when_asked() {
        let root = Path::new("/tmp/www");
        let mut s = settings(root);
        s.open_file_cache = true;
        let text = render(TEMPLATE, Path::new("/tmp/prefix"), &s).unwrap();
        assert!(text.contains(OPEN_FILE_CACHE), "{text}");
        assert!(!text.contains("open_file_cache off;"), "{text}");
    }

    #[test]
    fn renders_every_placeholder_and_the_fairness_settings() {
        let root = Path::new("/tmp/www");
        let text = render(TEMPLATE, Path::new("/tmp/prefix"), &settings(root)).unwrap();
        assert!(find_placeholder(&text).is_none(), "{text}");
        for want in [
            "user root;",
            "worker_processes 2;",
            "worker_cpu_affinity 001 100;",
            "worker_rlimit_nofile 20000;",
            "listen 127.0.0.1:8081;",
            "root /tmp/www;",
            "access_log off;",
            "sendfile on;",
            "tcp_nopush on;",
            "keepalive_requests 1000000;",
            "open_file_cache off;",
            "pid /tmp/prefix/nginx.pid;",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        // Every *_temp_path lives in the prefix.
        let temps: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.ends_with("_temp_path"))
            })
            .collect();
        assert!(temps.len() >= 5, "{temps:?}");
        assert!(
            temps.iter().all(|l| l.contains("/tmp/prefix/")),
            "{temps:?}"
        );
        // worker_connections well above the sweep's highest count.
        let wc: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("worker_connections "))
            .and_then(|v| v.trim_end_matches(';').parse().ok())
            .unwrap();
        assert!(wc >= 1300);
    }

    #[test]
    fn raises_worker_connections_when_needed() {
        let root = Path::new("/r");
        let mut s = settings(root);
        s.min_connections = 50_000;
        s.max_nofile = None;
        s.as_root = false;
        let text = render(TEMPLATE, Path::new("/p"), &s).unwrap();
        assert!(text.contains("worker_connections 50000;"), "{text}");
        assert!(text.contains("worker_rlimit_nofile 65536;"), "{text}");
        assert!(!text.lines().any(|l| l.trim() == "user root;"), "{text}");
        // An unprivileged low fd limit caps worker_connections (not below
        // what the sweep needs).
        s.min_connections = 500;
        s.max_nofile = Some(1024);
        let text = render(TEMPLATE, Path::new("/p"), &s).unwrap();
        assert!(text.contains("worker_connections 960;"), "{text}");
        assert!(text.contains("worker_rlimit_nofile 1024;"), "{text}");
    }

    #[test]
    fn leftover_placeholders_are_reported() {
        let err = render(
            "a\nlisten @NEW_THING@;\n",
            Path::new("/p"),
            &settings(Path::new("/r")),
        )
        .unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn affinity_masks_follow_the_cpu_list() {
        assert_eq!(affinity_masks(1, &[0]), "1");
        assert_eq!(affinity_masks(2, &[0, 1]), "01 10");
        assert_eq!(affinity_masks(3, &[1]), "10 10 10");
    }
}
