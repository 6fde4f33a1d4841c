//! io_uring: the ring a completion loop submits to and reaps from, and the
//! provided-buffer ring its receives land in.
//!
//! The `io-uring` crate maps the queues and builds the entries; what is
//! here is what a loop needs beyond it:
//! - [`Ring::new`] with the flags this project runs with (one issuing
//!   thread, task work deferred or cooperative, a completion queue larger
//!   than the submission queue) and its ring descriptor registered, so
//!   each `io_uring_enter` skips the descriptor-table lookup. The crate
//!   keeps a registered index only inside one short-lived `Submitter`, so
//!   [`Ring::enter`] makes the call itself.
//! - a back-log for a full submission queue: [`Ring::push`] never fails and
//!   never panics; what does not fit waits, in order, for the next enter.
//! - no lost completion: the kernel must offer `IORING_FEAT_NODROP` (a
//!   completion that finds the queue full is held, not dropped), and
//!   [`Ring::overflowed`] tells the loop to enter again without sleeping.
//! - [`BufRing`], a ring of receive buffers the kernel picks from
//!   (`IORING_REGISTER_PBUF_RING`), so a multishot receive needs no buffer
//!   per connection.
//! - [`unavailable`], the one-line reason when the kernel refuses io_uring.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

pub use io_uring::{cqueue, opcode, squeue, types};

// From <linux/io_uring.h>; the crate keeps its copy private.
const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;
const IORING_REGISTER_RING_FDS: u32 = 20;

/// How the kernel runs the work that completes requests (task work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRun {
    /// `IORING_SETUP_DEFER_TASKRUN`: only when the loop enters to wait, in
    /// one batch; nothing interrupts the loop while it runs.
    Defer,
    /// `IORING_SETUP_COOP_TASKRUN` + `TASKRUN_FLAG`: at the next kernel
    /// entry of any kind, without an inter-processor interrupt.
    Coop,
}

/// Sizes and flags of a ring.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Submission queue entries (a power of two).
    pub sq_entries: u32,
    /// Completion queue entries (a power of two, at least `sq_entries`).
    pub cq_entries: u32,
    /// When task work runs.
    pub taskrun: TaskRun,
}

/// One completion, copied out of the queue so the loop can submit while
/// it handles it.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    /// What the submission was tagged with.
    pub user_data: u64,
    /// The syscall-style result: a count, or `-errno`.
    pub result: i32,
    /// `IORING_CQE_F_*`.
    pub flags: u32,
}

impl Completion {
    /// A multishot request goes on after this completion (`F_MORE`); when
    /// unset it is finished and must be armed again to continue.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// The provided buffer the data landed in, if any.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// An io_uring instance owned by one thread.
pub struct Ring {
    ring: io_uring::IoUring,
    /// The index `IORING_REGISTER_RING_FDS` gave the ring's descriptor.
    registered: Option<u32>,
    /// Entries that found the submission queue full, oldest first.
    backlog: VecDeque<squeue::Entry>,
    taskrun: TaskRun,
}

impl Ring {
    /// Set up a ring. Fails when the kernel refuses io_uring (see
    /// [`unavailable`]) or lacks `IORING_FEAT_NODROP`.
    pub fn new(setup: Setup) -> io::Result<Ring> {
        let mut b = io_uring::IoUring::builder();
        b.setup_single_issuer().setup_cqsize(setup.cq_entries);
        match setup.taskrun {
            TaskRun::Defer => b.setup_defer_taskrun(),
            TaskRun::Coop => b.setup_coop_taskrun().setup_taskrun_flag(),
        };
        let ring = b.build(setup.sq_entries)?;
        if !ring.params().is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel's io_uring lacks IORING_FEAT_NODROP (completions could be lost \
                 when the queue is full; Linux 5.5 or later has it)",
            ));
        }
        let mut r = Ring {
            ring,
            registered: None,
            backlog: VecDeque::new(),
            taskrun: setup.taskrun,
        };
        r.registered = r.register_ring_fd().ok();
        Ok(r)
    }

    fn register_ring_fd(&mut self) -> io::Result<u32> {
        #[repr(C)]
        struct RsrcUpdate {
            offset: u32,
            resv: u32,
            data: u64,
        }
        let mut up = RsrcUpdate {
            offset: u32::MAX, // any free slot
            resv: 0,
            data: self.ring.as_raw_fd() as u64,
        };
        // SAFETY: `up` is a valid io_uring_rsrc_update the kernel reads and
        // writes (the chosen index) during the call; one entry is passed.
        let n = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.ring.as_raw_fd(),
                IORING_REGISTER_RING_FDS,
                &mut up as *mut RsrcUpdate,
                1u32,
            )
        };
        if n != 1 {
            return Err(io::Error::last_os_error());
        }
        Ok(up.offset)
    }

    /// Whether the descriptor is registered (enters skip the fd lookup).
    pub fn ring_fd_registered(&self) -> bool {
        self.registered.is_some()
    }

    /// The crate's submitter, for registrations.
    pub fn submitter(&self) -> io_uring::Submitter<'_> {
        self.ring.submitter()
    }

    /// Queue `entry` for the next enter. When the submission queue is full
    /// (or older entries wait already) it joins the back-log instead.
    ///
    /// # Safety
    ///
    /// Every buffer and descriptor `entry` names must stay valid until its
    /// completion has been reaped (the caller's `// SAFETY:` says why).
    pub unsafe fn push(&mut self, entry: squeue::Entry) {
        if self.backlog.is_empty() {
            // SAFETY: forwarded from this function's contract.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
        }
        self.backlog.push_back(entry);
    }

    /// Entries waiting for room in the submission queue.
    pub fn backlogged(&self) -> usize {
        self.backlog.len()
    }

    /// Move back-logged entries into the submission queue while it has room.
    fn flush_backlog(&mut self) {
        let mut sq = self.ring.submission();
        while let Some(e) = self.backlog.front() {
            // SAFETY: each entry's contract was accepted by `push`.
            if unsafe { sq.push(e) }.is_err() {
                break;
            }
            self.backlog.pop_front();
        }
    }

    /// Whether no receive can be filling a buffer or waiting to be read from
    /// one: deferred task work (the kernel fills buffers only inside this
    /// thread's `enter`), nothing in the completion queue, nothing held in
    /// overflow. Only then may [`BufRing::release_pages`] run.
    pub fn buffers_at_rest(&mut self) -> bool {
        self.taskrun == TaskRun::Defer && self.ring.completion().is_empty() && !self.overflowed()
    }

    /// Completions the kernel holds because the queue was full
    /// (`IORING_SQ_CQ_OVERFLOW`); the next enter flushes them in.
    pub fn overflowed(&mut self) -> bool {
        self.ring.submission().cq_overflow()
    }

    /// Submit everything queued (the back-log first, as far as it fits) and
    /// wait up to `wait` for at least one completion — not at all when the
    /// back-log is still not empty or completions are held in overflow.
    /// This is the loop's one syscall per iteration.
    pub fn enter(&mut self, wait: Duration) -> io::Result<()> {
        self.flush_backlog();
        let to_submit = self.ring.submission().len() as u32;
        let busy = !self.backlog.is_empty() || self.overflowed();
        let min_complete = u32::from(!busy);
        let ts = [wait.as_secs() as i64, i64::from(wait.subsec_nanos())];
        // struct io_uring_getevents_arg { sigmask, sigmask_sz, min_wait_usec, ts }
        let arg: [u64; 3] = [0, 0, ts.as_ptr() as u64];
        let (fd, reg) = match self.registered {
            Some(i) => (i as i32, IORING_ENTER_REGISTERED_RING),
            None => (self.ring.as_raw_fd(), 0),
        };
        let flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG | reg;
        // SAFETY: `arg` and the timespec it points to live across the call;
        // the size passed is the argument's; every submitted entry's
        // buffers are kept valid by `push`'s contract.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                fd,
                to_submit,
                min_complete,
                flags,
                arg.as_ptr(),
                std::mem::size_of_val(&arg),
            )
        };
        if rc >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // The wait timed out, a signal came, or the kernel is short of
            // room for completions: nothing is lost, the loop goes round.
            Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
            _ => Err(e),
        }
    }

    /// Move every posted completion into `into`.
    pub fn reap(&mut self, into: &mut Vec<Completion>) {
        into.extend(self.ring.completion().map(|c| Completion {
            user_data: c.user_data(),
            result: c.result(),
            flags: c.flags(),
        }));
    }
}

/// A ring of receive buffers the kernel picks from, registered with one
/// io_uring under a group id.
///
/// Both the ring of descriptors and the buffers are anonymous mappings
/// owned here; the kernel writes into a buffer only between picking it
/// and posting the completion that names it, and gets it back only
/// through [`BufRing::recycle`], so a buffer named by a completion is
/// the loop's until then.
pub struct BufRing {
    entries: Mapping,
    buffers: Mapping,
    count: u16,
    size: usize,
    tail: u16,
}

impl BufRing {
    /// `count` buffers (a power of two, at most 32768) of `size` bytes,
    /// all handed to the kernel, registered with `ring` as group `bgid`.
    pub fn new(ring: &Ring, bgid: u16, count: u16, size: usize) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 1 << 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the receive buffer count must be a power of two up to 32768",
            ));
        }
        let entries = Mapping::new(count as usize * std::mem::size_of::<types::BufRingEntry>())?;
        let buffers = Mapping::new(count as usize * size)?;
        let mut br = BufRing {
            entries,
            buffers,
            count,
            size,
            tail: 0,
        };
        for bid in 0..count {
            br.recycle(bid);
        }
        br.publish();
        // SAFETY: the descriptor ring is a page-aligned mapping of `count`
        // entries owned by `br`, and the kernel pins the pages on
        // registration. The mappings must outlive the ring's use of them:
        // the completion driver never unmaps them (it leaks the `BufRing`
        // when its loop ends, as the kernel may still write into it).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                br.entries.ptr.as_ptr() as u64,
                count,
                bgid,
                0,
            )?;
        }
        Ok(br)
    }

    /// The first `len` bytes of buffer `bid`, as a completion delivered them.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid) % usize::from(self.count);
        let len = len.min(self.size);
        // SAFETY: buffer `bid` lies inside the mapping; the kernel finished
        // writing it before posting the completion that named it and will
        // not pick it again before `recycle` (the `&self` borrow ends first).
        unsafe { std::slice::from_raw_parts(self.buffers.ptr.as_ptr().add(bid * self.size), len) }
    }

    /// Give buffer `bid` back to the kernel (visible after [`BufRing::publish`]).
    pub fn recycle(&mut self, bid: u16) {
        // A buffer id comes from a completion of this ring; anything else
        // would hand the kernel an address outside the buffers.
        assert!(bid < self.count, "buffer id {bid} out of {}", self.count);
        let mask = self.count - 1;
        let slot = usize::from(self.tail & mask);
        let addr = self.buffers.ptr.as_ptr() as u64 + u64::from(bid) * self.size as u64;
        // SAFETY: `slot` < count, so the entry lies inside the descriptor
        // mapping; the kernel reads entries only between head and the
        // published tail, and this one is past the tail until `publish`.
        let e = unsafe { &mut *(self.entries.ptr.as_ptr() as *mut types::BufRingEntry).add(slot) };
        e.set_addr(addr);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publish recycled buffers to the kernel: one release store.
    pub fn publish(&mut self) {
        let base = self.entries.ptr.as_ptr() as *const types::BufRingEntry;
        // SAFETY: the tail is a u16 inside the first entry of the mapping,
        // suitably aligned; the kernel reads it with acquire semantics.
        let tail = unsafe { &*(types::BufRingEntry::tail(base) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Give the buffers' memory back to the system (they read as zeroes
    /// afterwards): for a loop gone quiet, so buffers that a burst once
    /// touched do not stay resident. The buffers stay with the kernel.
    ///
    /// Call it only when [`Ring::buffers_at_rest`]: with deferred task
    /// work the kernel writes into a buffer only inside the loop's own
    /// `enter`, and with the completion queue empty and nothing in overflow
    /// no filled buffer is still waiting to be read, so no received byte
    /// can be discarded. (With cooperative task work any syscall of the
    /// thread may fill a buffer, so pages are never released then.)
    pub fn release_pages(&self) {
        // SAFETY: the range is exactly the buffers' mapping, private and
        // anonymous: MADV_DONTNEED only drops its pages (refaulted as zero).
        unsafe {
            libc::madvise(
                self.buffers.ptr.as_ptr().cast(),
                self.buffers.len,
                libc::MADV_DONTNEED,
            )
        };
    }

    /// The buffers' size in bytes.
    pub fn buffer_size(&self) -> usize {
        self.size
    }

    /// How many buffers there are.
    pub fn count(&self) -> u16 {
        self.count
    }
}

/// A private anonymous mapping (page-aligned, zeroed), unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        let len = len.max(1);
        // SAFETY: a fresh anonymous private mapping; no existing memory is
        // affected.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast()).ok_or_else(io::Error::last_os_error)?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; nothing
        // borrows the mapping once its owner is dropped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Whether `e` (from [`Ring::new`]) means io_uring is refused here, and if
/// so the one line that says why: the error, and the value of the sysctl
/// that governs it.
pub fn unavailable(e: &io::Error) -> Option<String> {
    if !matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::ENOSYS | libc::EACCES)
    ) {
        return None;
    }
    let text = e.to_string();
    let text = text.split(" (os error ").next().unwrap_or(&text);
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "unknown (no /proc/sys/kernel/io_uring_disabled)".into());
    let why = match sysctl.as_str() {
        "0" => "so a seccomp profile (a container's default one, say) refuses it",
        "1" => "only members of kernel.io_uring_group may use it",
        _ => "0 enables it",
    };
    Some(format!(
        "io_uring is unavailable: io_uring_setup failed: {text}; kernel.io_uring_disabled = {sysctl} ({why})"
    ))
}
