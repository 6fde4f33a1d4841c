//! Memory that processes share across `fork`, and a way to notice a fork.
//!
//! A forked child gets a *copy* of its parent's memory: a counter it
//! increments in ordinary memory changes only its own copy, and the parent
//! never sees it. Server statistics must add up across worker processes, so
//! they live in a `MAP_SHARED | MAP_ANONYMOUS` mapping instead, which
//! `fork` does not copy: parent and children see the same pages. That is
//! [`SharedSlice`].
//!
//! Only some types make sense there, hence the `unsafe` marker trait
//! [`Zeroable`]: a fresh mapping is all zero bytes, so the type must be
//! valid when zeroed; and it is shared by processes, so it must hold no
//! pointer (another process's copy of the heap is not this one's) and no
//! process-private handle. std's `Mutex` is *not* such a type: it uses
//! process-private futexes, which do not wake a waiter in another process.
//! Atomics are, and so are `#[repr(C)]` structs and arrays of them.
//!
//! [`ForkDetector`] is the opposite: one private page the kernel zeroes in
//! every child (`MADV_WIPEONFORK`), so code holding buffered state (the
//! access log's unwritten lines) can tell, with one atomic load and no
//! syscall, that it now runs in a child that must not write its parent's
//! copy of that state a second time.

use std::io;
use std::marker::PhantomData;
use std::mem;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::sync::atomic::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicIsize, AtomicU16, AtomicU32,
    AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

/// Types that may live in memory shared between processes.
///
/// # Safety
///
/// An implementor promises that:
/// - a value whose bytes are all zero is a valid value of the type (a fresh
///   anonymous mapping is zero-filled, and nothing else initialises it);
/// - the type holds no pointer, reference or process-private handle (a
///   private futex, a descriptor number, a `Box`): its meaning must not
///   depend on which process reads it;
/// - it is safe to share between threads (`Sync`), since processes sharing
///   the memory are at least as concurrent as threads;
/// - dropping it is unnecessary: the mapping is unmapped without running
///   destructors.
///
/// Atomics of every width, and arrays of `Zeroable` types, qualify. A
/// `#[repr(C)]` struct whose fields all are `Zeroable` may implement it.
pub unsafe trait Zeroable: Sync {}

macro_rules! zeroable {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: an atomic integer or bool is its plain value in an
            // `UnsafeCell`: zero bytes are the value 0 (false), it holds no
            // pointer, it is `Sync`, and it has no destructor.
            unsafe impl Zeroable for $t {}
        )*
    };
}

zeroable!(
    AtomicBool,
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize,
);

// SAFETY: an array is its elements laid out one after another, so all-zero
// bytes are N valid all-zero elements, and the other properties carry over.
unsafe impl<T: Zeroable, const N: usize> Zeroable for [T; N] {}

/// The smallest page size Linux uses; `mmap` returns addresses aligned to
/// (at least) it, which is what lets [`SharedSlice`] promise alignment.
const MIN_PAGE: usize = 4096;

/// `[T; len]` in a `MAP_SHARED | MAP_ANONYMOUS` mapping: after `fork`,
/// parent and child read and write the same memory (that is the point),
/// so an atomic increment in one is seen exactly by the others.
///
/// Owns the mapping and unmaps it on drop (each process unmaps only its own
/// view; the memory lives until the last process does). Dereferences to
/// `&[T]`: only shared access, so mutation goes through the atomics.
pub struct SharedSlice<T: Zeroable> {
    ptr: NonNull<T>,
    len: usize,
    /// Bytes mapped; 0 when nothing was mapped (`len` 0 or a zero-sized `T`).
    map_len: usize,
    _owns: PhantomData<T>,
}

// SAFETY: another thread holding the slice only gets `&T` (`T: Sync`), and
// the mapping itself is process-wide, so unmapping it from any thread is fine.
unsafe impl<T: Zeroable> Send for SharedSlice<T> {}
// SAFETY: `&SharedSlice<T>` only gives `&T`, which `T: Sync` allows sharing.
unsafe impl<T: Zeroable> Sync for SharedSlice<T> {}

impl<T: Zeroable> SharedSlice<T> {
    /// Map `len` zeroed `T`s, shared with every child forked afterwards.
    /// `InvalidInput` if the size overflows.
    pub fn new(len: usize) -> io::Result<SharedSlice<T>> {
        assert!(
            mem::align_of::<T>() <= MIN_PAGE,
            "a page-aligned mapping cannot hold a type aligned to more than a page"
        );
        let bytes = len
            .checked_mul(mem::size_of::<T>())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "shared slice too large"))?;
        if bytes == 0 {
            // mmap refuses a zero length; a dangling, aligned pointer is a
            // valid base for an empty slice or a slice of zero-sized values.
            return Ok(SharedSlice {
                ptr: NonNull::dangling(),
                len,
                map_len: 0,
                _owns: PhantomData,
            });
        }
        // SAFETY: a new anonymous mapping at an address of the kernel's
        // choosing (null hint, no MAP_FIXED) cannot overlap existing memory.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        assert_eq!(
            addr as usize % mem::align_of::<T>(),
            0,
            "mmap returned an unaligned address"
        );
        Ok(SharedSlice {
            // SAFETY: mmap succeeded, so `addr` is not null.
            ptr: unsafe { NonNull::new_unchecked(addr.cast::<T>()) },
            len,
            map_len: bytes,
            _owns: PhantomData,
        })
    }
}

impl<T: Zeroable> Deref for SharedSlice<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` is aligned and either maps `len * size_of::<T>()`
        // zero-initialised bytes, valid as `T`s by the `Zeroable` contract,
        // or is dangling with a zero byte length. The mapping lives as long
        // as `self`, and only shared references are handed out.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> Drop for SharedSlice<T> {
    fn drop(&mut self) {
        if self.map_len != 0 {
            // SAFETY: this is exactly the mapping `new` created, unmapped once;
            // no reference into it outlives `self`.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.map_len) };
        }
    }
}

impl<T: Zeroable> std::fmt::Debug for SharedSlice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSlice")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Tells code running after a `fork` that it is in a new process.
///
/// One private page marked `MADV_WIPEONFORK` (Linux 4.14): the kernel
/// hands every child a zero-filled copy of it. The detector writes a
/// non-zero flag there in the process that creates it, so a zero flag
/// means "a child that has not looked yet". Checking costs one atomic
/// swap, no syscall, which is why it is cheaper than comparing `getpid()`
/// on every call. Unlike `pthread_atfork` it needs no global registration
/// and sees every fork, whichever wrapper made it.
pub struct ForkDetector {
    page: NonNull<AtomicBool>,
}

// SAFETY: the page holds one AtomicBool, used only through atomic
// operations; the mapping is process-wide, so any thread may unmap it.
unsafe impl Send for ForkDetector {}
// SAFETY: as above: shared use is atomic operations only.
unsafe impl Sync for ForkDetector {}

impl ForkDetector {
    /// Map the page and mark it as seen by this process.
    pub fn new() -> io::Result<ForkDetector> {
        // SAFETY: a new private anonymous mapping at an address of the
        // kernel's choosing cannot overlap existing memory.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                MIN_PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // The mapping is owned by `detector` from here, so an error below
        // unmaps it.
        let detector = ForkDetector {
            // SAFETY: mmap succeeded, so `addr` is non-null and page-aligned
            // (enough for an AtomicBool).
            page: unsafe { NonNull::new_unchecked(addr.cast::<AtomicBool>()) },
        };
        // SAFETY: `addr` is our page-sized mapping; madvise only changes
        // what the kernel does with it on fork.
        syscall!(madvise(addr, MIN_PAGE, libc::MADV_WIPEONFORK))?;
        detector.flag().store(true, Ordering::Relaxed);
        Ok(detector)
    }

    /// Whether this process was forked since the detector was created or
    /// since this method last answered `true` here. Answers `true` once per
    /// new process, even when several threads ask at the same time.
    pub fn forked(&self) -> bool {
        // Cheap load first: the swap's exclusive cache-line access would
        // make concurrent callers contend in the common, not-forked case.
        if self.flag().load(Ordering::Relaxed) {
            return false;
        }
        !self.flag().swap(true, Ordering::Relaxed)
    }

    fn flag(&self) -> &AtomicBool {
        // SAFETY: the page is mapped for as long as `self`; zero (what a
        // child sees) and the `true` written by `new` are both valid bools.
        unsafe { self.page.as_ref() }
    }
}

impl Drop for ForkDetector {
    fn drop(&mut self) {
        // SAFETY: this is exactly the page `new` mapped, unmapped once.
        unsafe { libc::munmap(self.page.as_ptr().cast(), MIN_PAGE) };
    }
}

impl std::fmt::Debug for ForkDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkDetector").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::process::{exit_immediately, fork, waitpid, Fork, WaitStatus};

    #[test]
    fn starts_zeroed_and_is_writable() {
        let s = SharedSlice::<AtomicU64>::new(1000).unwrap();
        assert_eq!(s.len(), 1000);
        assert!(s.iter().all(|c| c.load(Ordering::Relaxed) == 0));
        s[999].fetch_add(7, Ordering::Relaxed);
        assert_eq!(s[999].load(Ordering::Relaxed), 7);
    }

    #[test]
    fn empty_and_zero_sized() {
        let s = SharedSlice::<AtomicU32>::new(0).unwrap();
        assert!(s.is_empty());
        let z = SharedSlice::<[AtomicU8; 0]>::new(10).unwrap();
        assert_eq!(z.len(), 10);
    }

    #[test]
    fn too_large_is_an_error_not_a_panic() {
        let err = SharedSlice::<AtomicU64>::new(usize::MAX / 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[repr(C)]
    struct Stats {
        requests: AtomicU64,
        by_status: [AtomicU32; 5],
    }
    // SAFETY: a repr(C) struct of Zeroable fields.
    unsafe impl Zeroable for Stats {}

    #[test]
    fn structs_and_arrays_are_aligned() {
        let s = SharedSlice::<Stats>::new(3).unwrap();
        for st in s.iter() {
            assert_eq!(st as *const Stats as usize % mem::align_of::<Stats>(), 0);
            st.requests.fetch_add(1, Ordering::Relaxed);
            st.by_status[4].fetch_add(2, Ordering::Relaxed);
        }
        assert_eq!(s[2].by_status[4].load(Ordering::Relaxed), 2);
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn is_send_and_sync() {
        assert_send_sync::<SharedSlice<AtomicU64>>();
        assert_send_sync::<ForkDetector>();
    }

    #[test]
    fn a_child_writes_what_the_parent_reads() {
        let s = SharedSlice::<AtomicU64>::new(2).unwrap();
        let d = ForkDetector::new().unwrap();
        assert!(!d.forked());
        // SAFETY: the child only does atomic operations on memory mapped
        // before the fork, then `_exit`s: all async-signal-safe.
        match unsafe { fork() }.unwrap() {
            Fork::Child => {
                s[1].store(42, Ordering::Relaxed);
                let first = d.forked();
                let second = d.forked();
                exit_immediately(if first && !second { 0 } else { 1 });
            }
            Fork::Parent(pid) => {
                assert_eq!(waitpid(pid).unwrap(), WaitStatus::Exited(0));
                assert_eq!(s[1].load(Ordering::Relaxed), 42);
                assert!(!d.forked(), "the parent is not a new process");
            }
        }
    }
}
