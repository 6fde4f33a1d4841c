//! Static files: safe path resolution, MIME types, ranges, conditional GET.
//!
//! Resolution never trusts the path: it is percent-decoded once, any `..`
//! segment is refused outright (plain or encoded — decoding happens before
//! the check), and the open itself is confined to the root by the kernel
//! (`openat2` + `RESOLVE_BENEATH`), which also refuses symlinks leading out.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;

use crate::sys;

/// What a request path resolves to.
#[derive(Debug)]
pub enum Resolved {
    /// A regular file, its size, modification time (Unix seconds), and
    /// Content-Type (from the name of the file actually opened, so a
    /// directory's index.html is text/html).
    File {
        /// The file opened beneath the root (kept open to be sent from).
        file: File,
        /// Its size in bytes, from the same `fstat` as the rest.
        size: u64,
        /// Last modification, Unix seconds (Last-Modified, conditional GET).
        mtime: i64,
        /// The Content-Type.
        mime: &'static str,
        /// Device, inode and nanosecond mtime: what tells a cached copy
        /// that the file on disk changed even within one second.
        identity: (u64, u64, i64),
    },
    /// A directory named without its trailing slash: redirect to this path.
    Redirect(String),
    /// Bad percent-encoding, an encoded NUL, or a `..` segment (400).
    BadPath,
    /// Escapes the root through a symlink, not a regular file, or not
    /// readable by the server (403).
    Forbidden,
    /// Nothing there (404).
    NotFound,
    /// The server is short of descriptors or kernel memory right now
    /// (EMFILE, ENFILE, ENOMEM, ENOBUFS): the file may well exist, so 503
    /// with `Retry-After`, never 404.
    Unavailable,
    /// Opening or inspecting it failed otherwise (EIO, ...): 500.
    Failed,
}

/// Decode `%XX` escapes. `None` for a malformed escape or a NUL byte.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = if b[i] == b'%' {
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            i += 3;
            hi << 4 | lo
        } else {
            i += 1;
            b[i - 1]
        };
        if c == 0 {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The virtual hosts: every directory `ROOT/<name>/` whose name is a
/// normalised host name (see [`vhost_name`]), opened beneath the root (a
/// symlink leading outside is skipped). Read once at start-up, as nginx
/// reads its server blocks, so a request costs a map lookup rather than an
/// `openat2` on every static file; adding a host takes a restart.
pub fn vhost_dirs(
    root_path: &std::path::Path,
    root: BorrowedFd<'_>,
) -> io::Result<HashMap<String, File>> {
    let mut hosts = HashMap::new();
    for entry in std::fs::read_dir(root_path)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if vhost_name(&name).as_deref() != Some(name.as_str()) {
            continue;
        }
        let Ok(c) = CString::new(name.as_bytes()) else {
            continue;
        };
        let Ok(dir) = sys::fs::open_beneath(root, &c) else {
            continue;
        };
        if dir.metadata().is_ok_and(|m| m.is_dir()) {
            hosts.insert(name, dir);
        }
    }
    Ok(hosts)
}

/// `Example.COM:8080` → `example.com`; `None` for anything that cannot be a
/// plain host name (IPv6 literals included: they never name a vhost here).
pub fn vhost_name(host: &str) -> Option<String> {
    let name = match host.rsplit_once(':') {
        Some((n, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => n,
        Some(_) => return None,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then(|| name.to_ascii_lowercase())
}

/// A request path decoded and checked, before any lookup: what a file
/// cache may key on (two spellings of one path are one key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Normal {
    /// The path relative to the root, segments joined by `/` (`.` for the
    /// root itself).
    pub rel: Vec<u8>,
    /// The request ended in `/`: a directory's index is wanted.
    pub wants_dir: bool,
}

/// Decode `path` (still percent-encoded, starting with `/`) and refuse `..`
/// segments; `None` for a path that is answered 400.
pub fn normalize(path: &str) -> Option<Normal> {
    let decoded = percent_decode(path)?;
    let mut rel: Vec<u8> = Vec::with_capacity(decoded.len() + 11);
    for seg in decoded.split(|&c| c == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => return None,
            seg => {
                if !rel.is_empty() {
                    rel.push(b'/');
                }
                rel.extend_from_slice(seg);
            }
        }
    }
    if rel.is_empty() {
        rel.push(b'.');
    }
    Some(Normal {
        rel,
        wants_dir: decoded.last() == Some(&b'/'),
    })
}

/// Resolve a request path (still percent-encoded, starting with `/`) to a
/// file under the directory `root`.
pub fn resolve(root: BorrowedFd<'_>, path: &str) -> Resolved {
    match normalize(path) {
        Some(normal) => resolve_normal(root, &normal, path),
        None => Resolved::BadPath,
    }
}

/// [`resolve`] for a path already normalised; `path` is the request's own
/// spelling, for a redirect's Location.
pub fn resolve_normal(root: BorrowedFd<'_>, normal: &Normal, path: &str) -> Resolved {
    let mut rel = normal.rel.clone();
    let (file, meta) = match open_with_meta(root, &rel) {
        Ok(opened) => opened,
        Err(r) => return r,
    };
    if meta.is_dir() {
        if !normal.wants_dir {
            return Resolved::Redirect(format!("{path}/"));
        }
        rel.extend_from_slice(b"/index.html");
        let (file, meta) = match open_with_meta(root, &rel) {
            Ok(opened) => opened,
            Err(r) => return r,
        };
        return regular(file, &meta, &rel);
    }
    regular(file, &meta, &rel)
}

/// Open `rel` beneath `root` and `fstat` it; a failure of either is
/// already the answer.
fn open_with_meta(root: BorrowedFd<'_>, rel: &[u8]) -> Result<(File, std::fs::Metadata), Resolved> {
    let file = open(root, rel)?;
    let meta = file.metadata().map_err(|e| failure(&e))?;
    Ok((file, meta))
}

fn regular(file: File, meta: &std::fs::Metadata, rel: &[u8]) -> Resolved {
    if meta.is_file() {
        Resolved::File {
            size: meta.len(),
            mtime: meta.mtime(),
            mime: mime(&String::from_utf8_lossy(rel)),
            identity: (meta.dev(), meta.ino(), meta.mtime_nsec()),
            file,
        }
    } else {
        Resolved::Forbidden
    }
}

fn open(root: BorrowedFd<'_>, rel: &[u8]) -> Result<File, Resolved> {
    let Ok(c) = CString::new(rel) else {
        return Err(Resolved::BadPath);
    };
    sys::fs::open_beneath(root, &c).map_err(|e| failure(&e))
}

/// What a failed open or `fstat` means for the client. Only a missing path
/// is 404: a server out of descriptors must not tell a client that an
/// existing file is gone.
fn failure(e: &io::Error) -> Resolved {
    use io::ErrorKind as Kind;
    match (e.kind(), e.raw_os_error()) {
        // ENOENT; ENOTDIR (a file used as a directory); ENAMETOOLONG.
        (Kind::NotFound, _) | (_, Some(libc::ENOTDIR | libc::ENAMETOOLONG)) => Resolved::NotFound,
        // EACCES, EPERM; EXDEV and ELOOP are how RESOLVE_BENEATH refuses a
        // path (or symlink) leading out of the root.
        (Kind::PermissionDenied, _) | (_, Some(libc::EXDEV | libc::ELOOP)) => Resolved::Forbidden,
        (Kind::OutOfMemory, _) | (_, Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS)) => {
            Resolved::Unavailable
        }
        _ => Resolved::Failed,
    }
}

/// Content-Type by file extension.
pub fn mime(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    let ext = ext.to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        "csv" => "text/csv; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

/// A `Range` header evaluated against a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// No usable range (absent, malformed, or several ranges): send it all.
    Full,
    /// Send bytes `start..=end`.
    Part {
        /// First byte sent.
        start: u64,
        /// Last byte sent (inclusive, as in `Content-Range`).
        end: u64,
    },
    /// Nothing of the file matches (416).
    Unsatisfiable,
}

/// Evaluate a single `bytes=` range (RFC 9110 §14.1.2). Multiple ranges are
/// answered with the whole file, which the RFC allows.
pub fn range(header: Option<&[u8]>, size: u64) -> Range {
    let Some(h) = header else { return Range::Full };
    let Ok(h) = std::str::from_utf8(h) else {
        return Range::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Range::Full,
        (true, false) => match num(b) {
            None => Range::Full,
            Some(0) => Range::Unsatisfiable,
            Some(_) if size == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return Range::Full;
            };
            let end = if b.is_empty() {
                u64::MAX
            } else {
                match num(b) {
                    Some(e) if e >= start => e,
                    _ => return Range::Full,
                }
            };
            if start >= size {
                Range::Unsatisfiable
            } else {
                Range::Part {
                    start,
                    end: end.min(size - 1),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhost_names() {
        assert_eq!(
            vhost_name("Example.COM:8080").as_deref(),
            Some("example.com")
        );
        assert_eq!(vhost_name("a.example.").as_deref(), Some("a.example"));
        assert_eq!(vhost_name("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        for bad in [
            "", "..", ".hidden", "a..b", "a/b", "[::1]:80", "x:", "x:8a", "a b", "%2e%2e",
        ] {
            assert_eq!(vhost_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn open_failures() {
        let cases = [
            (libc::ENOENT, "NotFound"),
            (libc::ENOTDIR, "NotFound"),
            (libc::ENAMETOOLONG, "NotFound"),
            (libc::EACCES, "Forbidden"),
            (libc::EPERM, "Forbidden"),
            (libc::EXDEV, "Forbidden"),
            (libc::ELOOP, "Forbidden"),
            (libc::EMFILE, "Unavailable"),
            (libc::ENFILE, "Unavailable"),
            (libc::ENOMEM, "Unavailable"),
            (libc::ENOBUFS, "Unavailable"),
            (libc::EIO, "Failed"),
            (libc::EOVERFLOW, "Failed"),
        ];
        for (errno, want) in cases {
            let got = failure(&io::Error::from_raw_os_error(errno));
            assert_eq!(format!("{got:?}"), want, "errno {errno}");
        }
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("/a%20b").unwrap(), b"/a b");
        assert_eq!(percent_decode("/%2e%2E/x").unwrap(), b"/../x");
        assert!(percent_decode("/%zz").is_none());
        assert!(percent_decode("/%2").is_none());
        assert!(percent_decode("/%00").is_none());
    }

    #[test]
    fn ranges() {
        let r = |h: &str| range(Some(h.as_bytes()), 100);
        assert_eq!(r("bytes=0-9"), Range::Part { start: 0, end: 9 });
        assert_eq!(r("bytes=90-"), Range::Part { start: 90, end: 99 });
        assert_eq!(r("bytes=90-500"), Range::Part { start: 90, end: 99 });
        assert_eq!(r("bytes=-10"), Range::Part { start: 90, end: 99 });
        assert_eq!(r("bytes=-500"), Range::Part { start: 0, end: 99 });
        assert_eq!(r("bytes=100-"), Range::Unsatisfiable);
        assert_eq!(r("bytes=-0"), Range::Unsatisfiable);
        assert_eq!(r("bytes=5-1"), Range::Full);
        assert_eq!(r("bytes=0-1,5-6"), Range::Full);
        assert_eq!(r("items=0-1"), Range::Full);
        assert_eq!(range(None, 100), Range::Full);
    }

    #[test]
    fn mime_types() {
        assert_eq!(mime("/a/index.HTML"), "text/html; charset=utf-8");
        assert_eq!(mime("/x.png"), "image/png");
        assert_eq!(mime("/noext"), "application/octet-stream");
    }
}
