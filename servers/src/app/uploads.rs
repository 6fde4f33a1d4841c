//! The upload store behind `POST /upload`, `GET /files/NAME` and
//! `DELETE /files/NAME`: one directory (`--data-dir`) of files whose names
//! the server chooses.
//!
//! Durability follows the classic recipe: the body goes into a temporary
//! file, which is `fsync`ed, renamed to its final name, and then the
//! directory is `fsync`ed so the rename itself survives a crash. Until the
//! rename, the file carries a reserved prefix ([`TEMP_PREFIX`]), and every
//! way an upload can end early (a client that disconnects, a body over the
//! limit, a full disk, a panic) drops the [`Upload`], whose `Drop` removes the
//! temporary file. A crash leaves temporaries behind; [`Uploads::open`]
//! removes them at the next start.
//!
//! Names are 128 random bits in lower-case hex ([`sys::random::token`]). A
//! lookup accepts only that exact shape, so `..`, `/`, NUL or the temporary
//! prefix are refused before any system call: traversal is impossible by
//! construction. Files are still opened with `RESOLVE_BENEATH`, so even a
//! symlink planted in the directory cannot lead outside it.
//!
//! Every path operation is relative to the directory descriptor opened once
//! in [`Uploads::open`], so renaming or replacing the directory's path while
//! the server runs cannot redirect writes elsewhere.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sys;
use crate::sys::fs::Lock;

/// Prefix of temporary files. It starts with a dot, which no final name
/// contains, so a temporary file can never be looked up or served.
pub const TEMP_PREFIX: &str = ".upload-";

/// Permissions of stored files: only the server's user reads them directly;
/// clients get them through HTTP.
const FILE_MODE: u32 = 0o600;

/// How many fresh random names to try when one is taken. With 128-bit names
/// a collision never happens in practice; the bound only keeps a broken
/// random source from looping forever.
const NAME_ATTEMPTS: usize = 4;

/// Why a lookup by name failed.
#[derive(Debug)]
pub enum Lookup {
    /// Not a name the server could have issued. Recommended answer: 404,
    /// like any other unknown name. It names no resource, and a distinct 400
    /// would only tell a prober which names are worth trying.
    BadName,
    /// A well-formed name with no file behind it (never uploaded, deleted,
    /// or not a regular file).
    NotFound,
    /// The file system failed (EIO, EACCES, ...): a 500, not a 404, so an
    /// operator sees the fault instead of a missing file.
    Io(io::Error),
}

/// The data directory, opened once.
#[derive(Debug)]
pub struct Uploads {
    dir: OwnedFd,
    path: PathBuf,
}

impl Uploads {
    /// Open (creating if missing) the data directory, remove temporary files
    /// left by a crash, and prove the directory writable by creating and
    /// removing one temporary file, so a misconfigured `--data-dir` fails at
    /// startup rather than on the first upload.
    ///
    /// Cleanup is skipped while another `Uploads` (in this or another
    /// process) has the same directory open: every instance holds a shared
    /// `flock` on it for its lifetime, and only an instance that can first
    /// take the lock exclusively, which means no other is alive, removes
    /// temporaries. Otherwise a second server or a freshly started
    /// worker process would delete uploads in flight. Children that inherit
    /// the descriptor through `fork` share the lock.
    pub fn open(dir: &Path) -> io::Result<Uploads> {
        let context = |what: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("data dir {}: {what}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| context("cannot create", e))?;
        let fd = sys::fs::open_dir(dir).map_err(|e| context("cannot open as a directory", e))?;
        let store = Uploads {
            dir: fd,
            path: dir.to_path_buf(),
        };
        let alone = sys::fs::try_flock(store.fd(), Lock::Exclusive)
            .map_err(|e| context("cannot lock", e))?;
        if alone {
            store
                .remove_stale()
                .map_err(|e| context("cannot remove stale temporary files", e))?;
        }
        sys::fs::flock(store.fd(), Lock::Shared).map_err(|e| context("cannot lock", e))?;
        drop(store.begin().map_err(|e| context("not writable", e))?);
        Ok(store)
    }

    /// The directory's path as given to [`Uploads::open`] (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Start an upload: a new temporary file with a random name, created
    /// with `O_CREAT|O_EXCL` beneath the directory descriptor.
    pub fn begin(&self) -> io::Result<Upload<'_>> {
        self.begin_with(StoreRef::Borrowed(self))
    }

    /// [`begin`](Self::begin) for an upload that outlives the borrow: a
    /// body streamed to disk across many reads of its connection.
    pub fn begin_shared(self: &Arc<Self>) -> io::Result<Upload<'static>> {
        self.begin_with(StoreRef::Shared(self.clone()))
    }

    fn begin_with<'a>(&self, store: StoreRef<'a>) -> io::Result<Upload<'a>> {
        let mut last = None;
        for _ in 0..NAME_ATTEMPTS {
            let temp =
                sys::fs::cstring(format!("{TEMP_PREFIX}{}", sys::random::token()?).as_bytes())?;
            match sys::fs::create_excl_at(self.fd(), &temp, FILE_MODE) {
                Ok(file) => {
                    return Ok(Upload {
                        store,
                        file,
                        temp,
                        written: 0,
                        committed: false,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("NAME_ATTEMPTS > 0"))
    }

    /// Store a whole body: [`begin`](Self::begin), write, [`commit`](Upload::commit).
    pub fn save(&self, body: &[u8]) -> io::Result<String> {
        let mut up = self.begin()?;
        up.write(body)?;
        up.commit()
    }

    /// Open a stored file for reading: the file, its size and its
    /// modification time (Unix seconds, for `Last-Modified`).
    pub fn open_file(&self, name: &str) -> Result<(File, u64, i64), Lookup> {
        let name = checked(name)?;
        let file = sys::fs::open_beneath(self.fd(), &name).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EXDEV) => Lookup::NotFound,
            _ => Lookup::Io(e),
        })?;
        let meta = file.metadata().map_err(Lookup::Io)?;
        if !meta.is_file() {
            return Err(Lookup::NotFound);
        }
        Ok((file, meta.len(), meta.mtime()))
    }

    /// Remove a stored file, durably (the directory is `fsync`ed, so the
    /// file does not come back after a crash). A reader that already has it
    /// open keeps reading its bytes.
    pub fn delete(&self, name: &str) -> Result<(), Lookup> {
        let name = checked(name)?;
        sys::fs::unlink_at(self.fd(), &name).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Lookup::NotFound
            } else {
                Lookup::Io(e)
            }
        })?;
        sys::fs::fsync(self.fd()).map_err(Lookup::Io)
    }

    /// Whether `name` has the shape of a name this store issues.
    pub fn valid_name(name: &str) -> bool {
        sys::random::is_token(name.as_bytes())
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Remove every temporary file: only called while no other instance has
    /// the directory open, so each one is a leftover of a crash.
    fn remove_stale(&self) -> io::Result<()> {
        for entry in std::fs::read_dir(&self.path)? {
            let name = entry?.file_name();
            if name.as_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
                match sys::fs::unlink_at(self.fd(), &sys::fs::cstring(name.as_bytes())?) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Whether an I/O error means the disk (or the user's quota) is full: the
/// caller answers 507 Insufficient Storage rather than 500. `EFBIG` (a file
/// size limit) is not included: it concerns one file, not the store.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

fn checked(name: &str) -> Result<CString, Lookup> {
    if !Uploads::valid_name(name) {
        return Err(Lookup::BadName);
    }
    sys::fs::cstring(name.as_bytes()).map_err(|_| Lookup::BadName)
}

/// An upload in progress: a temporary file that becomes visible under its
/// final name only on [`commit`](Upload::commit). Dropping it uncommitted
/// (the client went away, the body was too large, a write failed) removes
/// the temporary file, so aborted uploads leave nothing behind.
///
/// It borrows the store ([`Uploads::begin`]) or shares it
/// ([`Uploads::begin_shared`], for a body streamed over many reads).
#[derive(Debug)]
pub struct Upload<'a> {
    store: StoreRef<'a>,
    file: File,
    temp: CString,
    written: u64,
    committed: bool,
}

/// How an [`Upload`] holds its store.
#[derive(Debug)]
enum StoreRef<'a> {
    Borrowed(&'a Uploads),
    Shared(Arc<Uploads>),
}

impl StoreRef<'_> {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            StoreRef::Borrowed(s) => s.fd(),
            StoreRef::Shared(s) => s.fd(),
        }
    }
}

impl Upload<'_> {
    /// Append `chunk`. Errors (`ENOSPC`, `EDQUOT`: see [`is_disk_full`])
    /// are returned as they are; the caller then drops the upload.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.file.write_all(chunk)?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Bytes written so far, for the caller's body limit (413).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Make the upload durable and visible; returns its name.
    ///
    /// `fsync` the file, rename it to a fresh random name, `fsync` the
    /// directory. The rename uses `RENAME_NOREPLACE`, so even a (never seen)
    /// name collision cannot overwrite another upload; a file system without
    /// it falls back to a plain rename. If the directory `fsync` fails, the
    /// file is removed again: an error always means "nothing stored".
    pub fn commit(mut self) -> io::Result<String> {
        let dir = self.store.fd();
        sys::fs::fsync(self.file.as_fd())?;
        let mut no_replace = true;
        let mut attempts = 0;
        let (name, cname) = loop {
            let name = sys::random::token()?;
            let cname = sys::fs::cstring(name.as_bytes())?;
            match sys::fs::rename_at(dir, &self.temp, &cname, no_replace) {
                Ok(()) => break (name, cname),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && no_replace => {
                    no_replace = false;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    attempts += 1;
                    if attempts >= NAME_ATTEMPTS {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        };
        self.committed = true;
        if let Err(e) = sys::fs::fsync(dir) {
            let _ = sys::fs::unlink_at(dir, &cname);
            return Err(e);
        }
        Ok(name)
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // Nothing useful to do on failure: the next start removes it.
            let _ = sys::fs::unlink_at(self.store.fd(), &self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_never_pass_the_lookup_shape() {
        let dir = tempfile::tempdir().unwrap();
        let store = Uploads::open(dir.path()).unwrap();
        let up = store.begin().unwrap();
        let temp = up.temp.to_str().unwrap().to_owned();
        assert!(temp.starts_with(TEMP_PREFIX));
        assert!(!Uploads::valid_name(&temp));
        assert!(matches!(store.open_file(&temp), Err(Lookup::BadName)));
    }

    #[test]
    fn disk_full_errors() {
        assert!(is_disk_full(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_disk_full(&io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(!is_disk_full(&io::Error::from_raw_os_error(libc::EFBIG)));
        assert!(!is_disk_full(&io::Error::from_raw_os_error(libc::EIO)));
    }

    #[test]
    fn open_refuses_a_file_as_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let err = Uploads::open(&file).unwrap_err();
        assert!(err.to_string().contains("data dir"), "{err}");
    }
}
