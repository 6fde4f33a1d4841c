//! The access log (`--access-log FILE`): one line per response in the
//! combined log format, written by the threads and processes that log, with
//! no background thread (a thread does not survive `fork`, and a pre-forked
//! worker or a forked child must be able to log).
//!
//! **Buffering.** A request thread formats its line into a thread-local
//! buffer (the timestamp formatted once per second per thread) and appends
//! it to one buffer per process under a short lock. One shared buffer
//! rather than one per thread: [`flush`](AccessLog::flush) called from any
//! thread (a driver about to sleep, shutdown) then writes everything logged
//! so far, no buffer is stranded in a thread that ended, and a process's
//! lines keep the order in which they were logged.
//!
//! **When it writes.** The thread whose line brings the buffer past a
//! threshold, or finds its oldest line older than an interval, takes the
//! buffer and writes it (if no other thread of this process is already
//! writing; lines logged meanwhile go into a fresh buffer). A thread that
//! finds the buffer at its cap waits for the disk and writes (backpressure,
//! counted in [`stalls`](AccessLog::stalls): exactly one line per request,
//! and bounded memory, beat a log that silently lies). A quiet server logs
//! no line that would trigger a write, so the servers' drivers call
//! [`flush`](AccessLog::flush) when they go idle and at shutdown.
//!
//! **Several processes, one file.** The file is opened `O_APPEND`, and each
//! `write(2)` carries the whole buffer, which always ends at a line
//! boundary. On a local file system an appending write is placed and copied
//! under the inode's lock, so lines from different processes never
//! interleave and none overwrites another, whatever their length (`PIPE_BUF`
//! limits pipes, not files). Before each batch a process checks that its
//! descriptor is still the file at the path (device and inode) and reopens
//! it if not, so it notices a rotation by another process or by a tool.
//!
//! **Rotation.** Before a write would push the file past `max_bytes`, the
//! file is renamed to `FILE.1` (older ones shift up to `FILE.keep`, the
//! oldest is deleted) and a fresh `FILE` is created. With rotation on, each
//! batch is written under an exclusive `flock` on the log's directory, so
//! one process at a time checks the inode, reads the size (`fstat`, since
//! other processes append too), rotates and writes: no file passes
//! `max_bytes` unless one line alone is longer, and rotation happens only
//! between lines. The lock is taken through a descriptor opened for that
//! batch: a `flock` belongs to the open file description, which `fork`
//! shares, so a descriptor inherited from the parent would not exclude the
//! parent. The directory rather than a lock file is locked so that no extra
//! file appears beside the logs.
//!
//! **After `fork`.** Nothing to call. The child inherits a copy of the
//! parent's unwritten lines; those are the parent's to write, so the
//! child's first use of the log discards them (noticed through a
//! [`ForkDetector`](sys::shm::ForkDetector) page, without a syscall). A
//! child must [`flush`](AccessLog::flush) or [`close`](AccessLog::close)
//! before it exits: `_exit` runs no destructor. Logging allocates and
//! locks, so a child may log only if it may do that: forked from a process
//! with one thread (a pre-forking master before it starts threads), or
//! relying on glibc's `fork`, which leaves malloc usable in the child; and
//! no other thread may be inside `log`, `flush` or `close` at the fork (the
//! child would inherit that lock, or the rotation lock, held forever).
//!
//! Limits: a write cut short (disk full) may leave a partial line, which is
//! cut off again only with rotation on (under the lock nobody else has
//! appended since). External rotation by truncation (logrotate's
//! `copytruncate`) is only noticed through the size; NFS gives `O_APPEND`
//! no atomicity.
//!
//! Format choices: time in UTC (`+0000`); a 0-byte body logs as `-`, as
//! Apache's `%b` in its own combined format does; a missing Referer or
//! User-Agent logs as `"-"`. Quoted fields escape `"`, `\`, control bytes
//! and non-ASCII as `\xHH` (as nginx does), so a client can neither split a
//! line nor forge a field.

use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, TryLockError};

use crate::http::{date, response::push_u64};
use crate::sys;

/// One response to log. Byte-slice fields are header values as received.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The client's address.
    pub remote: Ipv4Addr,
    /// When the response was sent, in seconds since the Unix epoch.
    pub unix_time: i64,
    /// The request method, as received.
    pub method: &'a str,
    /// The request target, as received.
    pub target: &'a str,
    /// The protocol of the request line (`HTTP/1.1`).
    pub protocol: &'a str,
    /// The response status code.
    pub status: u16,
    /// Body bytes sent (0 logs as `-`).
    pub body_bytes: u64,
    /// The Referer header, if any.
    pub referer: Option<&'a [u8]>,
    /// The User-Agent header, if any.
    pub user_agent: Option<&'a [u8]>,
}

/// Permissions of log files (readable by log tooling, as nginx's are).
const FILE_MODE: u32 = 0o644;

/// When a logging thread writes, and how much memory the buffer may hold.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// Write once this much is buffered.
    threshold: usize,
    /// `log` writes (waiting for another writer if need be) at this much.
    cap: usize,
    /// Write when the oldest buffered line is this old (milliseconds).
    interval_ms: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            threshold: 32 * 1024,
            cap: 1024 * 1024,
            interval_ms: 200,
        }
    }
}

/// An open access log. `Send + Sync`: share it by reference or `Arc`, and
/// keep using it in a forked child (see the module docs).
pub struct AccessLog {
    pending: Mutex<Pending>,
    /// The file; held by the one thread of this process that is writing.
    out: Mutex<Output>,
    /// Tells a forked child to drop the parent's unwritten lines.
    fork: sys::shm::ForkDetector,
    tuning: Tuning,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    stalls: AtomicU64,
    path: PathBuf,
}

/// Lines logged in this process and not yet taken by a writer.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// When the oldest line in `buf` was logged (monotonic milliseconds).
    since_ms: u64,
    /// Set by `close`: no more lines are accepted.
    closed: bool,
}

/// Whether a `log` call should write the buffer before returning.
enum Urge {
    /// Not yet.
    No,
    /// Yes, unless another thread of this process is writing already.
    IfIdle,
    /// Yes: the buffer is at its cap.
    Must,
}

impl AccessLog {
    /// Open `path` for appending (creating it). `max_bytes` of 0 never
    /// rotates. `keep` rotated files are kept; with `keep` 0 a full file is
    /// simply deleted and a fresh one started, so only the newest lines (at
    /// most `max_bytes`) remain.
    ///
    /// Opened here, on the caller's thread, so a bad path fails at startup
    /// with a message naming it.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<AccessLog> {
        AccessLog::open_tuned(path, max_bytes, keep, Tuning::default())
    }

    fn open_tuned(
        path: &Path,
        max_bytes: u64,
        keep: usize,
        tuning: Tuning,
    ) -> io::Result<AccessLog> {
        let out = Output::open(path, max_bytes, keep)?;
        Ok(AccessLog {
            pending: Mutex::new(Pending::default()),
            out: Mutex::new(out),
            fork: sys::shm::ForkDetector::new()?,
            tuning,
            dropped: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            path: path.to_path_buf(),
        })
    }

    /// Log one response. Formats the line on the caller's thread and
    /// appends it to the buffer; writes the buffer if it is due (see the
    /// module docs). After [`close`](Self::close) the line is dropped and
    /// counted in [`dropped`](Self::dropped): a request finishing during
    /// shutdown must not panic or block.
    pub fn log(&self, e: &Entry<'_>) {
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            format_line(&mut line, e);
            self.push(&line);
        });
    }

    fn push(&self, line: &[u8]) {
        let now = sys::time::monotonic_ms_coarse();
        let t = self.tuning;
        let urge = {
            let mut p = self.pending();
            if p.closed {
                self.dropped.fetch_add(1, Relaxed);
                return;
            }
            if p.buf.is_empty() {
                p.since_ms = now;
            }
            p.buf.extend_from_slice(line);
            if p.buf.len() >= t.cap {
                Urge::Must
            } else if p.buf.len() >= t.threshold || now.saturating_sub(p.since_ms) >= t.interval_ms
            {
                Urge::IfIdle
            } else {
                Urge::No
            }
        };
        match urge {
            Urge::No => {}
            Urge::IfIdle => {
                let mut out = match self.out.try_lock() {
                    Ok(out) => out,
                    Err(TryLockError::Poisoned(e)) => e.into_inner(),
                    // The writer will not take this line; the next `log`
                    // past the threshold, or a `flush`, will.
                    Err(TryLockError::WouldBlock) => return,
                };
                self.write_pending(&mut out);
            }
            Urge::Must => {
                self.stalls.fetch_add(1, Relaxed);
                self.write_pending(&mut lock(&self.out));
            }
        }
    }

    /// Write every line logged before this call (waiting for a write in
    /// progress on another thread). Cheap when nothing is buffered: one
    /// uncontended lock. Drivers call it before they block waiting for
    /// work, at shutdown, and in a forked child before it exits. Failures
    /// are counted and reported like those of `log`.
    pub fn flush(&self) {
        if self.pending().buf.is_empty() {
            return;
        }
        self.write_pending(&mut lock(&self.out));
    }

    /// Take the buffer and write it; `out` is held throughout, so batches
    /// reach the file in the order they were taken.
    fn write_pending(&self, out: &mut Output) {
        {
            let mut p = self.pending();
            if p.buf.is_empty() {
                return;
            }
            std::mem::swap(&mut p.buf, &mut out.spare);
        }
        let batch = std::mem::take(&mut out.spare);
        out.write_batch(&batch, &self.write_errors);
        out.spare = batch;
        out.spare.clear();
        // Give back what a burst made the buffer grow to.
        out.spare
            .shrink_to(self.tuning.threshold.saturating_mul(2).min(self.tuning.cap));
    }

    /// The pending lines, locked; in a forked child, first emptied of the
    /// copy of the parent's lines, which the parent writes.
    fn pending(&self) -> MutexGuard<'_, Pending> {
        let mut p = lock(&self.pending);
        if self.fork.forked() {
            p.buf.clear();
        }
        p
    }

    /// Write everything logged before this call and stop accepting lines.
    /// Idempotent: later calls (and `Drop`) return `Ok(())`, after waiting
    /// for a close still in progress on another thread.
    /// Returns an error if any write failed during the log's lifetime; the
    /// first one was also reported on stderr when it happened.
    pub fn close(&self) -> io::Result<()> {
        // `out` first, so a second `close` waits until the first has written.
        let mut out = lock(&self.out);
        if std::mem::replace(&mut self.pending().closed, true) {
            return Ok(());
        }
        self.write_pending(&mut out);
        match out.first_error.take() {
            None => Ok(()),
            Some(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "access log {}: {} failed writes, the first: {e}",
                    self.path.display(),
                    self.write_errors()
                ),
            )),
        }
    }

    /// Lines refused because the log was closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Calls to `log` that found the buffer at its cap and had to write it
    /// (or wait for another thread's write) first: a sign the disk cannot
    /// keep up. Counted per process.
    pub fn stalls(&self) -> u64 {
        self.stalls.load(Relaxed)
    }

    /// Failed writes or rotations so far in this process (each reported or
    /// counted, never fatal).
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Relaxed)
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        // Errors were reported on stderr as they happened.
        let _ = self.close();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A file's identity: device and inode.
type FileId = (u64, u64);

/// The open log file and its rotation, used by one thread at a time.
struct Output {
    /// The log's directory: rotation renames relative to it.
    dir: OwnedFd,
    /// The directory's canonical path, to open a descriptor to lock.
    dir_path: PathBuf,
    base: Vec<u8>,
    /// Where the log is (canonical directory), to check its identity.
    path: PathBuf,
    file: File,
    /// `file`'s identity when opened.
    id: FileId,
    /// Bytes in `file`: read under the lock before each batch, then
    /// tracked while writing it.
    size: u64,
    max_bytes: u64,
    keep: usize,
    /// The buffer being written, kept to be swapped in as the next one.
    spare: Vec<u8>,
    first_error: Option<io::Error>,
}

impl Output {
    fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<Output> {
        let context =
            |e: io::Error| io::Error::new(e.kind(), format!("access log {}: {e}", path.display()));
        let base = path
            .file_name()
            .ok_or_else(|| context(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?
            .as_bytes()
            .to_vec();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = sys::fs::open_dir(parent).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    e.kind(),
                    format!(
                        "access log {}: directory {} does not exist",
                        path.display(),
                        parent.display()
                    ),
                )
            } else {
                context(e)
            }
        })?;
        let dir_path = parent.canonicalize().map_err(context)?;
        let file = sys::fs::open_append_at(dir.as_fd(), &sys::fs::cstring(&base)?, FILE_MODE)
            .map_err(context)?;
        let meta = file.metadata().map_err(context)?;
        Ok(Output {
            dir,
            path: dir_path.join(path.file_name().unwrap_or_default()),
            dir_path,
            base,
            file,
            id: (meta.dev(), meta.ino()),
            size: meta.len(),
            max_bytes,
            keep,
            spare: Vec::new(),
            first_error: None,
        })
    }

    /// Write a batch of whole lines. Without rotation: one appending write,
    /// after reopening the file if it was moved. With rotation: the same
    /// under the directory lock, with the size read fresh, splitting the
    /// batch between lines where a rotation is due.
    fn write_batch(&mut self, data: &[u8], errors: &AtomicU64) {
        let locked = if self.max_bytes == 0 {
            None
        } else {
            // Failing to lock (the directory is gone?) loses no line: the
            // batch is written anyway, with only this process's view of
            // the size.
            match lock_dir(&self.dir_path) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    self.failed(e, errors);
                    None
                }
            }
        };
        if let Err(e) = self.reopen_if_moved() {
            self.failed(e, errors);
        }
        if self.max_bytes == 0 {
            if let Err(e) = self.append(data, false) {
                self.failed(e, errors);
            }
            return;
        }
        match self.file.metadata() {
            Ok(m) => self.size = m.len(),
            Err(e) => self.failed(e, errors),
        }
        self.write_lines(data, locked.is_some(), errors);
    }

    /// Reopen the path if it no longer names the file we hold (another
    /// process rotated it, or a tool moved or deleted it).
    fn reopen_if_moved(&mut self) -> io::Result<()> {
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.id => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.reopen()
    }

    fn reopen(&mut self) -> io::Result<()> {
        let file =
            sys::fs::open_append_at(self.dir.as_fd(), &sys::fs::cstring(&self.base)?, FILE_MODE)?;
        let meta = file.metadata()?;
        self.file = file;
        self.id = (meta.dev(), meta.ino());
        self.size = meta.len();
        Ok(())
    }

    /// Write whole lines, rotating between lines so that no file passes
    /// `max_bytes` unless one line alone is longer. `locked`: no other
    /// process writes meanwhile (it may cut off a partial write).
    fn write_lines(&mut self, mut data: &[u8], locked: bool, errors: &AtomicU64) {
        while !data.is_empty() {
            let n = self.fitting(data);
            if n == 0 {
                // The next line does not fit in what is left of a non-empty file.
                if let Err(e) = self.rotate() {
                    self.failed(e, errors);
                }
                // Rotated or not, the file counts as fresh: the line goes
                // out now, and a failed rotation is retried with the next
                // batch.
                self.size = 0;
                continue;
            }
            let (part, rest) = data.split_at(n);
            if let Err(e) = self.append(part, locked) {
                self.failed(e, errors);
            }
            data = rest;
        }
    }

    /// How many leading bytes of `data` (whole lines) to write to the
    /// current file; 0 means rotate first.
    fn fitting(&self, data: &[u8]) -> usize {
        if self.max_bytes == 0 {
            return data.len();
        }
        let room = self.max_bytes.saturating_sub(self.size);
        if data.len() as u64 <= room {
            return data.len();
        }
        let whole = data[..room as usize]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if whole == 0 && self.size == 0 {
            // A single line longer than `max_bytes`: it gets a file of its own.
            return data
                .iter()
                .position(|&b| b == b'\n')
                .map_or(data.len(), |i| i + 1);
        }
        whole
    }

    /// Append `part` in one `write(2)` (a second only if the first is cut
    /// short, which on a local file means the disk is full). On failure
    /// under the lock, cut off what was partially appended so the file
    /// still ends with a whole line (only if the file grew: after an
    /// outside truncation there is nothing of ours to cut).
    fn append(&mut self, part: &[u8], locked: bool) -> io::Result<()> {
        match (&self.file).write_all(part) {
            Ok(()) => {
                self.size += part.len() as u64;
                Ok(())
            }
            Err(e) => {
                if locked && self.file.metadata().is_ok_and(|m| m.len() > self.size) {
                    let _ = self.file.set_len(self.size);
                }
                Err(e)
            }
        }
    }

    /// `FILE.keep` deleted, `FILE.i` → `FILE.i+1`, `FILE` → `FILE.1`, a new
    /// `FILE` opened. With `keep` 0, `FILE` is deleted instead. If the new
    /// file cannot be opened, writing goes on into the old (renamed) one.
    /// Called under the directory lock.
    fn rotate(&mut self) -> io::Result<()> {
        let dir = self.dir.as_fd();
        let current = sys::fs::cstring(&self.base)?;
        if self.keep == 0 {
            ignore_missing(sys::fs::unlink_at(dir, &current))?;
        } else {
            ignore_missing(sys::fs::unlink_at(dir, &self.numbered(self.keep)?))?;
            for i in (1..self.keep).rev() {
                ignore_missing(sys::fs::rename_at(
                    dir,
                    &self.numbered(i)?,
                    &self.numbered(i + 1)?,
                    false,
                ))?;
            }
            sys::fs::rename_at(dir, &current, &self.numbered(1)?, false)?;
        }
        self.reopen()
    }

    fn numbered(&self, i: usize) -> io::Result<CString> {
        let mut name = self.base.clone();
        name.push(b'.');
        name.extend_from_slice(i.to_string().as_bytes());
        sys::fs::cstring(&name)
    }

    /// Count a failure; report the first on stderr (a full disk would
    /// otherwise flood it with one message per batch).
    fn failed(&mut self, e: io::Error, errors: &AtomicU64) {
        errors.fetch_add(1, Relaxed);
        if self.first_error.is_none() {
            eprintln!(
                "access log {}: {e} (lines may be lost; later errors are only counted)",
                self.path.display()
            );
            self.first_error = Some(e);
        }
    }
}

/// An exclusive `flock` on the directory `dir`, through a descriptor of
/// its own (see the module docs); released when it is dropped.
fn lock_dir(dir: &Path) -> io::Result<OwnedFd> {
    let fd = sys::fs::open_dir(dir)?;
    sys::fs::flock(fd.as_fd(), sys::fs::Lock::Exclusive)?;
    Ok(fd)
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Length of `23/Nov/2026:10:00:00 +0000`.
const STAMP_LEN: usize = 26;

thread_local! {
    /// Each logging thread formats into its own buffer, outside the lock.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The last second formatted on this thread, and its text.
    static STAMP: Cell<(i64, [u8; STAMP_LEN])> = const { Cell::new((i64::MIN, [0; STAMP_LEN])) };
}

/// The timestamp for `secs`, formatted at most once per second per thread.
fn stamp(secs: i64) -> [u8; STAMP_LEN] {
    STAMP.with(|c| {
        let (cached, text) = c.get();
        if cached == secs {
            return text;
        }
        let text = format_stamp(secs);
        c.set((secs, text));
        text
    })
}

/// `dd/Mon/yyyy:HH:MM:SS +0000`, rearranged from the HTTP date
/// (`Sun, 06 Nov 1994 08:49:37 GMT`) so the calendar math lives in one place.
fn format_stamp(secs: i64) -> [u8; STAMP_LEN] {
    let d = date::format(secs);
    let mut out = *b"01/Jan/1970:00:00:00 +0000";
    out[0..2].copy_from_slice(&d[5..7]);
    out[3..6].copy_from_slice(&d[8..11]);
    out[7..11].copy_from_slice(&d[12..16]);
    out[12..20].copy_from_slice(&d[17..25]);
    out
}

/// One combined-format line, newline included.
fn format_line(out: &mut Vec<u8>, e: &Entry<'_>) {
    for (i, octet) in e.remote.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_u64(out, u64::from(octet));
    }
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(&stamp(e.unix_time));
    out.extend_from_slice(b"] \"");
    escape(out, e.method.as_bytes());
    out.push(b' ');
    escape(out, e.target.as_bytes());
    out.push(b' ');
    escape(out, e.protocol.as_bytes());
    out.extend_from_slice(b"\" ");
    push_u64(out, u64::from(e.status));
    out.push(b' ');
    if e.body_bytes == 0 {
        out.push(b'-');
    } else {
        push_u64(out, e.body_bytes);
    }
    for field in [e.referer, e.user_agent] {
        out.extend_from_slice(b" \"");
        match field {
            Some(v) => escape(out, v),
            None => out.push(b'-'),
        }
        out.push(b'"');
    }
    out.push(b'\n');
}

/// Copy `v`, writing `"`, `\`, control bytes and non-ASCII as `\xHH`.
fn escape(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in v {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(target: &'a str, ua: Option<&'a [u8]>) -> Entry<'a> {
        Entry {
            remote: Ipv4Addr::new(127, 0, 0, 1),
            unix_time: 1_795_428_000, // 2026-11-23 10:00:00 UTC
            method: "GET",
            target,
            protocol: "HTTP/1.1",
            status: 200,
            body_bytes: 13,
            referer: None,
            user_agent: ua,
        }
    }

    fn line(e: &Entry<'_>) -> String {
        let mut out = Vec::new();
        format_line(&mut out, e);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn combined_format() {
        assert_eq!(
            line(&entry("/plaintext", Some(b"loadgen/0.1"))),
            "127.0.0.1 - - [23/Nov/2026:10:00:00 +0000] \"GET /plaintext HTTP/1.1\" 200 13 \"-\" \"loadgen/0.1\"\n"
        );
        let mut e = entry("/", None);
        e.body_bytes = 0;
        e.status = 304;
        e.referer = Some(b"http://a/");
        e.remote = Ipv4Addr::new(10, 200, 0, 9);
        assert_eq!(
            line(&e),
            "10.200.0.9 - - [23/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 304 - \"http://a/\" \"-\"\n"
        );
    }

    #[test]
    fn stamps() {
        assert_eq!(&format_stamp(0), b"01/Jan/1970:00:00:00 +0000");
        assert_eq!(&stamp(951_782_399), b"28/Feb/2000:23:59:59 +0000");
        assert_eq!(&stamp(951_782_400), b"29/Feb/2000:00:00:00 +0000");
    }

    #[test]
    fn escaping() {
        let mut out = Vec::new();
        escape(&mut out, "a\"b\\c\r\n\t\x7f é ok".as_bytes());
        assert_eq!(out, b"a\\x22b\\x5Cc\\x0D\\x0A\\x09\\x7F \\xC3\\xA9 ok");
    }

    fn output(dir: &Path, max_bytes: u64, keep: usize) -> Output {
        Output::open(&dir.join("log"), max_bytes, keep).unwrap()
    }

    #[test]
    fn splits_only_at_line_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = output(dir.path(), 10, 5);
        let errors = AtomicU64::new(0);
        // 4 + 4 fit in 10; the third line starts a new file; the long line
        // gets a file of its own.
        out.write_batch(b"aaa\nbbb\nccc\n", &errors);
        out.write_batch(b"0123456789abcdef\nz\n", &errors);
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("log.3"), "aaa\nbbb\n");
        assert_eq!(read("log.2"), "ccc\n");
        assert_eq!(read("log.1"), "0123456789abcdef\n");
        assert_eq!(read("log"), "z\n");
        assert_eq!(errors.load(Relaxed), 0);
    }

    #[test]
    fn existing_size_counts_toward_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("log"), b"old line\n").unwrap();
        let mut out = output(dir.path(), 12, 1);
        out.write_batch(b"new\n", &AtomicU64::new(0));
        assert_eq!(
            std::fs::read(dir.path().join("log.1")).unwrap(),
            b"old line\n"
        );
        assert_eq!(std::fs::read(dir.path().join("log")).unwrap(), b"new\n");
    }

    #[test]
    fn backpressure_keeps_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        // Nothing is written by threshold or age here: only loggers that
        // find the buffer at its cap write, so stalls are certain and the
        // buffer never holds much more than the cap.
        let tuning = Tuning {
            threshold: usize::MAX,
            cap: 1024,
            interval_ms: u64::MAX,
        };
        let log = AccessLog::open_tuned(&path, 0, 0, tuning).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        log.log(&entry("/plaintext", Some(b"t")));
                        let held = lock(&log.pending).buf.capacity();
                        assert!(held < 64 * 1024, "buffer grew to {held}");
                    }
                });
            }
        });
        // Lines below the cap wait for a flush. (The last logger may have
        // found the buffer at its cap and written everything: then one more
        // line, far below the cap, must stay buffered.)
        let mut total = 8_000;
        if lock(&log.pending).buf.is_empty() {
            log.log(&entry("/plaintext", Some(b"t")));
            total += 1;
        }
        let buffered = lock(&log.pending)
            .buf
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        let before = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(buffered > 0, "nothing waits in the buffer");
        assert_eq!(
            before + buffered,
            total,
            "{before} written, {buffered} buffered"
        );
        log.flush();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            total
        );
        log.close().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), total);
        assert!(text.ends_with('\n'));
        assert_eq!(log.dropped(), 0);
        assert!(log.stalls() > 0);
    }

    #[test]
    fn an_old_line_is_written_by_the_next_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let tuning = Tuning {
            threshold: usize::MAX,
            cap: usize::MAX,
            interval_ms: 50,
        };
        let log = AccessLog::open_tuned(&path, 0, 0, tuning).unwrap();
        log.log(&entry("/1", None));
        assert_eq!(std::fs::read(&path).unwrap().len(), 0, "held back");
        std::thread::sleep(std::time::Duration::from_millis(80));
        log.log(&entry("/2", None));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        log.close().unwrap();
    }

    #[test]
    fn a_threshold_batch_goes_out_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let tuning = Tuning {
            threshold: 1000,
            cap: usize::MAX,
            interval_ms: u64::MAX,
        };
        let log = AccessLog::open_tuned(&path, 0, 0, tuning).unwrap();
        let len = line(&entry("/x", None)).len();
        let mut logged = 0;
        while std::fs::metadata(&path).unwrap().len() == 0 {
            log.log(&entry("/x", None));
            logged += 1;
        }
        assert_eq!(logged, 1000usize.div_ceil(len));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() as usize,
            logged * len
        );
        log.close().unwrap();
    }

    #[test]
    fn a_moved_file_is_noticed_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = AccessLog::open(&path, 0, 0).unwrap();
        log.log(&entry("/before", None));
        log.flush();
        std::fs::rename(&path, dir.path().join("log.old")).unwrap();
        log.log(&entry("/after", None));
        log.close().unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(read("log.old").contains("/before") && !read("log.old").contains("/after"));
        assert!(read("log").contains("/after") && !read("log").contains("/before"));
    }

    #[test]
    fn a_forked_child_writes_its_own_lines_not_the_parents() {
        use crate::sys::process::{exit_immediately, fork, waitpid, Fork, WaitStatus};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = AccessLog::open(&path, 0, 0).unwrap();
        log.log(&entry("/parent-before", None));
        // SAFETY: the child logs (allocating, locking `log`'s own mutexes,
        // which no other thread holds) and `_exit`s; glibc's fork leaves
        // malloc usable in the child, and no other thread uses `log`.
        match unsafe { fork() }.unwrap() {
            Fork::Child => {
                log.log(&entry("/child", None));
                log.flush();
                exit_immediately(if log.write_errors() == 0 { 0 } else { 1 });
            }
            Fork::Parent(pid) => {
                assert_eq!(waitpid(pid).unwrap(), WaitStatus::Exited(0));
            }
        }
        log.log(&entry("/parent-after", None));
        log.close().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let targets: Vec<&str> = text.lines().map(|l| l.split(' ').nth(6).unwrap()).collect();
        assert_eq!(targets, ["/child", "/parent-before", "/parent-after"]);
    }
}
