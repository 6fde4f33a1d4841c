//! What the load asks for, and the docroot every server (variants and
//! nginx alike) serves its static files from.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::TempDir;

/// Requests written back to back per connection in the `pipelined` workload.
pub const PIPELINE_DEPTH: usize = 16;

/// One kind of request the sweep measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Workload {
    /// GET /plaintext: 13 bytes from a handler (the main workload).
    Plaintext,
    /// GET /json: a 27-byte JSON body from a handler.
    Json,
    /// GET a 1 KiB static file.
    #[value(name = "static-1k")]
    Static1k,
    /// GET the 1 KiB static file with file caches on: the variants with
    /// `--file-cache 64m`, nginx with `open_file_cache`.
    #[value(name = "static-1k-cached")]
    Static1kCached,
    /// GET a 1 MiB static file (served with sendfile).
    #[value(name = "static-1m")]
    Static1m,
    /// GET /plaintext, 16 requests written back to back per connection.
    Pipelined,
    /// GET /plaintext with `Connection: close`: a new connection per
    /// request, so what is measured is the model's cost per connection.
    #[value(name = "plaintext-close")]
    PlaintextClose,
}

impl Workload {
    /// Every workload, in the order `--help` lists them.
    pub const ALL: [Workload; 7] = [
        Workload::Plaintext,
        Workload::Json,
        Workload::Static1k,
        Workload::Static1kCached,
        Workload::Static1m,
        Workload::Pipelined,
        Workload::PlaintextClose,
    ];

    /// The name used on the command line and in the CSV.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Plaintext => "plaintext",
            Workload::Json => "json",
            Workload::Static1k => "static-1k",
            Workload::Static1kCached => "static-1k-cached",
            Workload::Static1m => "static-1m",
            Workload::Pipelined => "pipelined",
            Workload::PlaintextClose => "plaintext-close",
        }
    }

    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Workload::Plaintext | Workload::Pipelined | Workload::PlaintextClose => "/plaintext",
            Workload::Json => "/json",
            Workload::Static1k | Workload::Static1kCached => "/static-1k.bin",
            Workload::Static1m => "/static-1m.bin",
        }
    }

    /// Requests per connection written back to back (1 = no pipelining).
    pub fn pipeline(self) -> usize {
        match self {
            Workload::Pipelined => PIPELINE_DEPTH,
            _ => 1,
        }
    }

    /// The body length every server must answer with (checked once per
    /// server before measuring, so a broken route is not benchmarked).
    pub fn body_len(self) -> usize {
        match self {
            Workload::Plaintext | Workload::Pipelined | Workload::PlaintextClose => {
                "Hello, World!".len()
            }
            Workload::Json => r#"{"message":"Hello, World!"}"#.len(),
            Workload::Static1k | Workload::Static1kCached => 1024,
            Workload::Static1m => 1024 * 1024,
        }
    }
}

impl Workload {
    /// Whether every request asks for `Connection: close`.
    pub fn closes(self) -> bool {
        self == Workload::PlaintextClose
    }

    /// Whether servers run with their file caches on for this workload.
    pub fn file_cache(self) -> bool {
        self == Workload::Static1kCached
    }
}

/// The variants' flags when a workload caches files.
pub const VARIANT_FILE_CACHE: [&str; 2] = ["--file-cache", "64m"];

/// What the reports say about file caching.
pub fn file_cache_note(workloads: &[Workload]) -> String {
    let none = "none: variants open each file per request (openat2); nginx open_file_cache off";
    if workloads.iter().any(|w| w.file_cache()) {
        format!(
            "static-1k-cached: variants {} (files in memory), nginx {} (descriptors and \
             metadata cached); other workloads {none}",
            VARIANT_FILE_CACHE.join(" "),
            crate::rig::nginx::OPEN_FILE_CACHE.trim_end_matches(';')
        )
    } else {
        none.to_string()
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A temporary docroot with the static workloads' files (and an index.html),
/// shared by every server of a run so they all serve the same bytes. Removed
/// when dropped.
pub struct Docroot {
    dir: TempDir,
}

impl Docroot {
    /// Create the docroot and its files.
    pub fn create() -> io::Result<Docroot> {
        let dir = tempfile::Builder::new().prefix("bench-www.").tempdir()?;
        let write = |name: &str, data: &[u8]| -> io::Result<()> {
            let path = dir.path().join(name);
            fs::write(&path, data)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
        };
        write(
            "index.html",
            b"<!doctype html>\n<html><head><title>bench</title></head><body><p>Hello, World!</p></body></html>\n",
        )?;
        write(&Workload::Static1k.path()[1..], &file_bytes(1024))?;
        write(&Workload::Static1m.path()[1..], &file_bytes(1024 * 1024))?;
        // TempDir makes 0700 directories; nginx workers that are not the
        // owner must still be able to read the files.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        Ok(Docroot { dir })
    }

    /// The docroot's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Deterministic, incompressible-looking bytes (an LCG), so every run
/// serves the same content.
fn file_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docroot_has_the_static_files() {
        let root = Docroot::create().unwrap();
        for w in [Workload::Static1k, Workload::Static1m] {
            let meta = fs::metadata(root.path().join(&w.path()[1..])).unwrap();
            assert_eq!(meta.len() as usize, w.body_len(), "{w}");
        }
        let mode = fs::metadata(root.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn names_round_trip_through_clap() {
        use clap::ValueEnum;
        for w in Workload::ALL {
            assert_eq!(Workload::from_str(w.name(), false), Ok(w));
        }
    }
}
