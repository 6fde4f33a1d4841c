//! The bucket classifier of DESIGN §7: every perf sample lands in exactly
//! one bucket, decided by walking its stack from the leaf toward the root.
//!
//! The walk, for one sample (frames leaf first, inferno's `_[k]` marking
//! kernel frames, compiler suffixes such as `.isra.0` stripped first):
//!
//! 1. A kernel frame listed in [`PASS_THROUGH`] is skipped: a generic helper
//!    (an unlock that re-enables interrupts, softirq plumbing, an allocator,
//!    a mitigation thunk) says nothing about why the CPU was there; its
//!    caller does.
//! 2. A kernel frame matching a rule of [`OWNER_RULES`] decides, for itself
//!    and every frame above it (see *Owners* below). Otherwise the nearest
//!    frame matching a rule of [`KERNEL_RULES`] is remembered: the rules are
//!    tried in table order (memcpy, scheduler, futex/locks, epoll,
//!    VFS/sendfile, TCP/IP, syscall entry/exit, process/mm), first match
//!    wins. If it is the scheduler ([`KEPT_UNDER_OWNERS`]) it decides at
//!    once; if not, the walk goes on toward the root looking for an owner.
//!    Frames that match nothing (timekeeping, rb-trees, list checks, LSM
//!    hooks...) are walked past like pass-through ones.
//! 3. The first user-space frame ends the walk, and so does a hardware
//!    interrupt's entry ([`INTERRUPT_ENTRIES`]); so does the root. With no
//!    owner met, the remembered frame decides. If the sample was taken in
//!    the kernel (some kernel frame was seen) and no rule matched, it is
//!    [`Bucket::OtherKernel`], the explicit catch-all: timer interrupts and
//!    RCU callbacks that happened to run in the server's context, and
//!    whatever else the table does not name. Its size is printed with every
//!    profile so a growing catch-all is noticed, not hidden. If the sample was
//!    taken in user space, its leaf decides: [`LIBC_ALLOC`] names →
//!    [`Bucket::LibcAlloc`], anything else → [`Bucket::App`].
//!
//! So a sample's bucket is kernel exactly when it was taken in kernel mode:
//! the user/kernel split never depends on the table, only the split inside
//! each side does.
//!
//! # Owners: what a connection and a process cost
//!
//! Frame by frame, the nearest match says what *kind* of work the CPU did.
//! The headline reading (CPU µs per request per bucket, one bar per server
//! in architecture order) asks something else: what each architecture step
//! removes. Inside `accept4` and `close` the kernel copies, allocates, makes
//! and frees the socket's file, inode and dentry, sends the FIN and, on
//! loopback, runs the peer's receive of it; frame by frame that is memcpy,
//! VFS and TCP/IP like any request's work, and a connection's cost
//! disappears into them. So a few entry points own everything under them:
//! the cost a connection brings along, wherever it is spent, is the
//! connection's ([`Bucket::Connection`]), and the same for a process
//! ([`Bucket::Process`]). The bucket reads "what would vanish if there
//! were no new connection (no new process)". The owners, one row each in
//! [`OWNER_RULES`]: accept and the new socket; setsockopt (these servers
//! set options only on a new socket); the close of a socket and
//! shutdown(2); the last reference to a pseudo file's dentry and the socket
//! inode's freeing; the handshake (segments on a socket that is not
//! established); the FIN received, time-wait and the socket's destruction;
//! and for processes clone (up to the child's first return to user space),
//! exec, exit, page faults and the parent's wait.
//!
//! What was decided, and why:
//!
//! - **The scheduler is kept.** A context switch inside a blocking
//!   `accept`, `close` or `wait4` is the thread waiting; without the
//!   connection it would wait in `read` instead, and the scheduler bucket is
//!   how the reader sees what leaving blocking I/O removes. Locks taken
//!   inside an owner (a socket's own lock, mostly uncontended) are the
//!   owner's.
//! - **The nearest owner wins.** A socket released by a child's exit
//!   (`do_exit` → `__fput` → `sock_close`) is the connection's, as
//!   blocking's `close` of it is, so the process models are compared on the
//!   same terms; the exit's own work (its address space torn down) is the
//!   process's.
//! - **An interrupt still ends the walk**: a tick inside `close` is not the
//!   close's. The owners below it are not consulted.
//! - **Not owners**: epoll's registration of a connection and its removal
//!   at close stay epoll, as a pair: `EPOLL_CTL_ADD` is inlined into
//!   `do_epoll_ctl`, which also serves a per-request `EPOLL_CTL_MOD`, so the
//!   stack cannot tell them apart (the removal, `eventpoll_release_file`
//!   under `__fput`, was 3.3% of epoll's samples and 2.9% of nginx's with a
//!   connection per request). `__fput` itself stays VFS: the same frame
//!   closes a regular file, which a static workload without the file cache
//!   does per request (its own work besides the socket's release and the
//!   dentry was 1.2-1.3% of blocking's, epoll's and nginx's samples there).
//! - **`__dentry_kill` is an owner**: a regular file's dentry stays cached
//!   when it is closed, so a dentry killed at close is a pseudo file's: in
//!   these servers under load, a socket's (a CGI's pipes would count too).
//! - **The handshake** runs, on loopback, in the context of whoever sent
//!   the segment: the server's half (SYN → request socket → child socket)
//!   in the client's. It shows on the server's CPU only when client and
//!   server share one, but is owned all the same, so both sides read alike.
//! - **process/mm, not "process creation"**: clone, exec, exit and wait own
//!   what runs under them, and a page fault owns what runs under it (a
//!   fresh child's file pages mapped in by `filemap_map_pages` would
//!   otherwise be VFS). A long-running server's faults (heap growth, first
//!   touch) land there too, so the bucket is named for both; they are small:
//!   0.0-0.1% of the samples of every long-running server under GET
//!   /plaintext at 400 connections, against 6.4% of fork's there and 66% of
//!   fork's with a connection per request (`dup_mmap`, `exit_mmap`,
//!   copy-on-write and file faults of the children).
//!
//! With a connection per request the connection bucket is 33-39% of the
//! samples of blocking, epoll and nginx, and 0.1% of epoll's, uring's and
//! nginx's at 400 keep-alive connections (`harness profile --workload
//! plaintext-close` and the default workload; the README gives the runs).
//!
//! Patterns: `name` matches exactly, `prefix*` matches names starting with
//! `prefix`. The tables were built from the stacks of every variant and
//! nginx under load on the project's machine (Linux 6.18): their names are
//! what `perf script` printed there.

use std::collections::HashMap;

pub use crate::schema::Bucket;

/// One row of the rule table.
#[derive(Debug)]
pub struct Rule {
    /// The bucket a matching frame decides.
    pub bucket: Bucket,
    /// Frame name patterns (`name` or `prefix*`).
    pub patterns: &'static [&'static str],
}

/// A group of pass-through helpers and why they never decide.
#[derive(Debug)]
pub struct PassThrough {
    /// Why these frames are skipped.
    pub why: &'static str,
    /// Frame name patterns (`name` or `prefix*`).
    pub patterns: &'static [&'static str],
}

/// Kernel helpers the walk passes through to their caller.
#[rustfmt::skip]
pub const PASS_THROUGH: &[PassThrough] = &[
    PassThrough {
        why: "interrupts or softirqs are re-enabled here: under cpu-clock in a VM the \
              sampling timer fires late and the sample lands on the unlock, not on the \
              work done under the lock",
        patterns: &[
            "_raw_spin_unlock*", "_raw_read_unlock*", "_raw_write_unlock*",
            "__raw_callee_save___pv_queued_spin_unlock*", "__local_bh_enable_ip",
            "local_bh_enable", "rcu_nocb_unlock_irqrestore",
        ],
    },
    PassThrough {
        why: "softirq plumbing: the handler below it is the work (on loopback, the receive \
              side of a send runs here, in the sender's context)",
        patterns: &[
            "handle_softirqs", "__do_softirq", "do_softirq", "__softirqentry_text_start",
            "irq_exit_rcu", "__irq_exit_rcu", "irq_enter_rcu",
        ],
    },
    PassThrough {
        why: "memory allocators and their memcg accounting serve whoever allocates \
              (an skb, a socket, a page fault)",
        patterns: &[
            "kmalloc*", "__kmalloc*", "kmem_cache_alloc*", "kmem_cache_free*", "__kmem_cache_*",
            "kfree", "kvfree", "kvmalloc*", "___slab_alloc", "__slab_alloc", "__slab_free",
            "slab_update_freelist", "allocate_slab", "setup_object", "get_partial_node",
            "put_cpu_partial", "__put_partials", "build_detached_freelist", "__free_slab",
            "__memcg_slab_*", "obj_cgroup_*", "refill_obj_stock", "refill_stock",
            "__account_obj_stock", "mod_memcg_state", "mod_node_page_state", "__mod_memcg_*",
            "memcg1_account_kmem", "page_counter_*", "try_charge_memcg", "__css_rstat_updated",
            "alloc_pages*", "__alloc_pages*", "alloc_frozen_pages*", "__alloc_frozen_pages*",
            "get_page_from_freelist", "__rmqueue*", "rmqueue*", "free_frozen_page*",
            "__free_frozen_pages", "free_unref_*", "__free_pages*", "free_pages*",
            "free_tail_page_prepare", "__zone_watermark_ok", "__get_pfnblock_flags_mask",
            "mempolicy_slab_node", "policy_nodemask", "clear_page*",
        ],
    },
    PassThrough {
        why: "speculative-execution mitigation thunks: a return or indirect call of the caller",
        patterns: &[
            "__x86_return_thunk", "__x86_indirect_thunk*", "srso_*", "retbleed_*", "__pfx_*",
        ],
    },
    PassThrough {
        why: "LSM hooks, RCU read side and list debugging checks, done on behalf of the caller",
        patterns: &[
            "security_*", "bpf_lsm_*", "__rcu_read_lock", "__rcu_read_unlock", "__list_add_valid*",
            "__list_del_entry_valid*",
        ],
    },
];

/// Hardware interrupt entries end the walk like the user boundary does:
/// what runs inside a timer or IPI interrupt (a tick, RCU callbacks) is not
/// the doing of the code it happened to interrupt, so a sample whose frames
/// up to here matched nothing is [`Bucket::OtherKernel`], not charged to the
/// interrupted TCP or app code.
#[rustfmt::skip]
pub const INTERRUPT_ENTRIES: &[&str] = &[
    "asm_sysvec_*", "sysvec_*", "__sysvec_*", "asm_common_interrupt", "common_interrupt",
    "__common_interrupt",
];

/// The kernel rules, in the order DESIGN §7 gives them: for one frame the
/// first rule that matches wins (which is why e.g. `tcp_poll` is epoll and
/// not TCP/IP, and `sock_read_iter` VFS).
#[rustfmt::skip]
pub const KERNEL_RULES: &[Rule] = &[
    Rule {
        bucket: Bucket::Memcpy,
        patterns: &[
            "copy_user_*", "rep_movs_alternative", "rep_stos_alternative", "memcpy*", "__memcpy*",
            "__pi_memcpy", "memmove*", "__memmove*", "memset*", "__memset*", "__pi_memset",
            "_copy_to_iter", "_copy_from_iter", "copy_page_to_iter", "copy_page_from_iter",
            "simple_copy_to_iter", "_copy_to_user", "_copy_from_user", "copyin", "copyout",
            "__put_user*", "__get_user*", "copy_iovec_from_user", "move_addr_to_user",
            "csum_partial_copy*",
            // hardened-usercopy checks run on every copy to or from user space
            "__check_object_size", "check_stack_object", "__virt_addr_valid",
        ],
    },
    Rule {
        bucket: Bucket::Scheduler,
        patterns: &[
            "schedule", "schedule_*", "__schedule", "preempt_schedule*", "__cond_resched",
            "_cond_resched", "finish_task_switch", "__switch_to*", "switch_mm*", "context_switch",
            "prepare_task_switch", "pick_next_*", "__pick_next_*", "put_prev_*", "set_next_*",
            "enqueue_task*", "enqueue_entity", "dequeue_task*", "dequeue_entit*", "update_curr*",
            "update_load_avg", "__update_load_avg*", "update_cfs_group", "update_rq_clock*",
            "reweight_*", "try_to_wake_up", "wake_up_process", "wake_up_q", "ttwu_*",
            "select_task_rq*", "select_idle_*", "wakeup_preempt*", "check_preempt*",
            "resched_curr", "psi_*", "sched_*", "__sched_*", "do_sched_yield", "newidle_balance",
            "load_balance", "update_sd_lb_stats", "update_group_capacity", "idle_cpu",
            "raw_spin_rq_lock*", "task_tick*", "wait_woken", "do_nanosleep", "hrtimer_nanosleep",
            // restoring user FPU state is deferred from a context switch
            "switch_fpu_return", "restore_fpregs_from_fpstate", "fpregs_restore_userregs",
        ],
    },
    Rule {
        bucket: Bucket::FutexLocks,
        patterns: &[
            "futex_*", "__futex_*", "do_futex", "get_futex_key", "queued_spin_lock_slowpath",
            "native_queued_spin_lock_slowpath", "__pv_queued_spin_lock_slowpath",
            "_raw_spin_lock*", "_raw_spin_trylock*", "_raw_read_lock*", "_raw_write_lock*",
            "mutex_lock*", "mutex_unlock", "__mutex_*", "mutex_spin_on_owner", "down_read*",
            "down_write*", "up_read", "up_write", "rwsem_*", "osq_lock", "osq_unlock", "rt_mutex*",
        ],
    },
    Rule {
        bucket: Bucket::Epoll,
        patterns: &[
            "ep_*", "__ep_*", "do_epoll_*", "__do_sys_epoll_*", "epoll_*", "eventpoll_*",
            // readiness checks made by epoll for each ready socket
            "sock_poll", "tcp_poll",
            // io_uring's own submission and completion work (the event
            // interface of `uring`); the socket work under it is TCP/IP
            "io_uring_*", "__io_uring_*", "__do_sys_io_uring_*", "io_submit_sqes", "io_init_req",
            "io_issue_sqe", "io_queue_sqe", "io_cqring_*", "__io_cqring_*", "io_run_local_work*",
            "__io_run_local_work*", "io_run_task_work*", "io_submit_flush_completions",
            "__io_submit_flush_completions", "io_free_batch_list", "io_req_*", "io_poll_*",
            "__io_poll_*", "io_arm_poll_handler", "io_buffer_select", "io_ring_buffer_select",
            "io_kbuf_*", "__io_put_kbuf*", "io_recv", "io_recv_*", "io_send", "io_send_*",
            "io_sendmsg_*", "io_close", "io_async_cancel", "io_try_cancel",
            "io_fill_cqe*", "io_post_*", "io_wake_function",
        ],
    },
    Rule {
        bucket: Bucket::VfsSendfile,
        patterns: &[
            "vfs_*", "ksys_*", "do_iter_*", "do_readv", "do_writev", "rw_verify_area",
            "new_sync_read", "new_sync_write", "do_sendfile", "splice_*", "do_splice*",
            "__splice_*", "direct_splice_actor", "iter_file_splice_write", "generic_file_*",
            "filemap_*", "fdget*", "__fdget*", "__fget*", "fget*", "fput*", "__fput*", "____fput",
            "filp_*", "fd_install", "alloc_fd", "get_unused_fd_flags", "close_fd*",
            "file_close_fd*", "__close_fd*", "alloc_empty_file", "alloc_file_pseudo", "init_file",
            "file_init_path", "file_f_owner_release", "do_sys_open*", "do_filp_open",
            "path_openat", "do_open", "link_path_walk", "walk_component", "lookup_fast",
            "path_lookupat", "filename_lookup", "step_into", "d_alloc*", "__d_alloc",
            "d_instantiate*", "__d_instantiate", "dput", "dentry_*",
            "d_flags_for_inode", "iput", "evict", "alloc_inode", "new_inode*", "inode_*",
            "__destroy_inode", "destroy_inode", "clear_inode", "fsnotify*", "__fsnotify*",
            "dnotify_flush", "locks_remove_posix", "locks_free_lock_context", "mntput*", "mntget",
            "lockref_*", "truncate_inode_pages*", "stream_open", "errseq_sample",
            // the socket's file operations (its making and freeing are
            // OWNER_RULES')
            "sock_read_iter", "sock_write_iter",
        ],
    },
    Rule {
        bucket: Bucket::TcpIp,
        patterns: &[
            "tcp*", "__tcp*", "bbr_*", "bictcp_*", "cubictcp_*", "inet*", "__inet*", "ip_*",
            "__ip_*", "ipv4_*", "ip6_*", "raw_local_deliver", "raw_v4_input", "icmp_*", "sk_*",
            "__sk_*", "sock_*", "__sock_*", "sockfd_lookup*", "lock_sock*", "release_sock",
            "__release_sock", "skb_*", "__skb_*", "___skb_*", "kfree_skb*", "__kfree_skb*",
            "consume_skb", "napi_*", "__napi_*", "alloc_skb*", "__alloc_skb", "build_skb*",
            "__build_skb*", "__copy_skb_header", "net_*", "__net_*", "netif_*", "__netif_*",
            "netdev_*", "process_backlog", "enqueue_to_backlog", "dev_*", "__dev_*", "loopback_*",
            "eth_*", "validate_xmit_*", "sch_*", "qdisc_*", "__qdisc_*", "nf_*", "__nf_*", "dst_*",
            "__dst_*", "fib_*", "neigh_*", "xfrm*", "__xfrm*",
            // the socket syscalls (sendto, recvfrom; accept4, setsockopt and
            // shutdown are OWNER_RULES')
            "__sys_*",
        ],
    },
    Rule {
        bucket: Bucket::SyscallEntry,
        patterns: &[
            "entry_SYSCALL_64*", "entry_SYSRETQ*", "syscall_return_via_sysret", "do_syscall_64",
            "x64_sys_call", "__x64_sys_*", "syscall_*", "exit_to_user_mode*",
            "__exit_to_user_mode*", "arch_exit_to_user_mode*", "irqentry_*",
            "__rseq_handle_notify_resume", "rseq_*", "clear_bhb_loop",
        ],
    },
    Rule {
        bucket: Bucket::Process,
        patterns: &[
            // address-space work; page faults, clone, exec, exit and wait are
            // OWNER_RULES'
            "mmdrop*", "__mmdrop", "pgd_free", "handle_mm_fault", "__handle_mm_fault", "handle_pte_fault", "do_anonymous_page",
            "do_fault", "do_wp_page", "wp_page_copy", "do_pte_missing", "do_mmap", "mmap_region",
            "__mmap_region", "vm_mmap*", "vm_munmap", "do_vmi_*", "__do_munmap", "do_brk_flags",
            "__do_sys_brk", "do_madvise", "madvise_*", "unmap_*", "zap_*", "free_pgtables",
            "tlb_*", "flush_tlb_*", "task_mm_cid_work",
        ],
    },
];

/// Entry points that own everything under them (step 2 of the walk): the
/// nearest one between the leaf and the first user frame or interrupt entry
/// decides, whatever per-frame rule the frames above it match, except for
/// the buckets of [`KEPT_UNDER_OWNERS`]. One row per kind of work, so each
/// is named in the tests.
#[rustfmt::skip]
pub const OWNER_RULES: &[Rule] = &[
    // accept(2), io_uring's accept, and the socket made for the new connection
    Rule {
        bucket: Bucket::Connection,
        patterns: &[
            "__x64_sys_accept*", "__sys_accept4*", "do_accept", "inet_accept", "__inet_accept",
            "inet_csk_accept", "io_accept", "sock_alloc", "sock_alloc_file", "sock_alloc_inode",
            "d_alloc_pseudo",
        ],
    },
    // options set on a new socket: the servers here call setsockopt only
    // when a connection starts (TCP_NODELAY, the blocking driver's timeouts)
    Rule {
        bucket: Bucket::Connection,
        patterns: &["__x64_sys_setsockopt", "__sys_setsockopt", "do_sock_setsockopt"],
    },
    // the close of a socket (the FIN sent, and on loopback the peer's
    // receive of it in this context) and shutdown(2)
    Rule {
        bucket: Bucket::Connection,
        patterns: &[
            "sock_close", "sock_release", "__sock_release", "inet_release", "tcp_close",
            "__tcp_close", "__x64_sys_shutdown", "__sys_shutdown*", "inet_shutdown",
            "tcp_shutdown",
        ],
    },
    // the last reference to a pseudo file's dentry and the socket inode's
    // freeing: a regular file's dentry stays cached at close, so under these
    // servers' load this is a closed socket's (a pipe's would count too)
    Rule {
        bucket: Bucket::Connection,
        patterns: &["__dentry_kill", "sock_free_inode"],
    },
    // the handshake: a segment on a socket that is not established (listen,
    // SYN-received, the closing states), the request socket and the child
    Rule {
        bucket: Bucket::Connection,
        patterns: &[
            "tcp_rcv_state_process", "tcp_conn_request", "tcp_v4_conn_request", "tcp_check_req",
            "tcp_child_process", "tcp_v4_syn_recv_sock", "tcp_create_openreq_child",
            "inet_csk_clone_lock", "inet_csk_complete_hashdance", "tcp_v4_send_synack",
            "inet_reqsk_alloc", "reqsk_*", "tcp_v4_reqsk_destructor", "tcp_rcv_synsent_state_process",
            "__x64_sys_connect", "__sys_connect*", "tcp_v4_connect", "__inet_hash_connect",
            "__x64_sys_socket", "__sys_socket*",
        ],
    },
    // the FIN received, time-wait, and the socket's destruction (at close,
    // from a timer, or from an RCU callback)
    Rule {
        bucket: Bucket::Connection,
        patterns: &[
            "tcp_fin", "tcp_time_wait", "tcp_timewait_state_process", "inet_twsk_*",
            "tcp_twsk_*", "tcp_done", "tcp_done_with_error", "inet_csk_destroy_sock",
            "tcp_v4_destroy_sock", "inet_unhash", "inet_put_port", "inet_bind_bucket_destroy",
            "inet_bind2_bucket_destroy", "sk_free", "__sk_free", "sk_destruct", "__sk_destruct",
            "inet_sock_destruct", "sk_common_release",
        ],
    },
    // a new process or thread, up to its first return to user space
    Rule {
        bucket: Bucket::Process,
        patterns: &[
            "__x64_sys_clone*", "__x64_sys_fork", "__x64_sys_vfork", "__do_sys_clone*",
            "kernel_clone", "copy_process", "dup_mm*", "dup_mmap", "ret_from_fork*",
            "schedule_tail",
        ],
    },
    // exec
    Rule {
        bucket: Bucket::Process,
        patterns: &[
            "__x64_sys_execve*", "do_execve*", "bprm_*", "load_elf_binary", "begin_new_exec",
        ],
    },
    // exit, its address space torn down, and the task freed afterwards
    Rule {
        bucket: Bucket::Process,
        patterns: &[
            "__x64_sys_exit*", "do_exit", "do_group_exit", "exit_mm", "exit_mmap", "mmput",
            "__mmput", "exit_files", "exit_notify", "release_task", "delayed_put_task_struct",
            "__put_task_struct*", "free_task", "put_task_stack",
        ],
    },
    // a page fault: what runs under it (a fresh child's copy-on-write and
    // file pages mapped in, a heap's first touch) is address-space work,
    // not the file cache or the copy it looks like
    Rule {
        bucket: Bucket::Process,
        patterns: &["asm_exc_page_fault", "exc_page_fault", "do_user_addr_fault"],
    },
    // the parent reaping it
    Rule {
        bucket: Bucket::Process,
        patterns: &[
            "__x64_sys_wait4", "__do_sys_wait4", "kernel_wait4", "__x64_sys_waitid",
            "kernel_waitid", "do_wait", "__do_wait", "wait_consider_task", "wait_task_zombie",
        ],
    },
];

/// Per-frame buckets an owner does not take over: a context switch inside
/// `accept`, `close` or `wait4` is the thread waiting, which it would do in
/// `read` if not there, and the scheduler bucket counts all of a model's
/// waiting wherever it happens.
pub const KEPT_UNDER_OWNERS: &[Bucket] = &[Bucket::Scheduler];

/// User-space leaf frames that are libc, an allocator or the vDSO rather
/// than the server's code. Symbols perf could not name appear as the
/// module in brackets (`[libc.so.6]`).
#[rustfmt::skip]
pub const LIBC_ALLOC: &[&str] = &[
    // glibc malloc and the Rust allocator shims
    "malloc", "free", "calloc", "realloc", "cfree", "posix_memalign", "aligned_alloc", "memalign",
    "_int_*", "malloc_*", "__malloc_*", "tcache_*", "__rust_alloc*", "__rust_dealloc",
    "__rust_realloc", "__rdl_*", "__rg_*", "alloc::alloc::*", "alloc::raw_vec::*",
    "<alloc::alloc::Global as core::alloc::Allocator>*",
    // string and memory routines
    "__mem*", "__str*", "memcpy", "memmove", "memset", "memchr", "memrchr", "memcmp", "bcmp",
    "strlen", "strchr", "strcmp",
    // syscall wrappers and other glibc internals
    "__libc_*", "__GI_*", "_dl_*", "__tls_get_addr", "__errno_location", "syscall", "read",
    "__read", "write", "__write", "readv", "writev", "__writev", "send", "__send", "recv",
    "__recv", "sendto", "__sendto", "recvfrom", "__recvfrom", "sendmsg", "recvmsg", "sendfile*",
    "epoll_wait", "epoll_pwait*", "epoll_ctl", "accept", "accept4", "close", "__close", "shutdown",
    "setsockopt", "getsockopt", "openat*", "__open*", "fstat*", "__fstat*", "nanosleep",
    "__nanosleep", "clock_nanosleep*", "__clock_nanosleep*", "sched_yield", "__sched_yield",
    "pthread_*", "__pthread_*", "___pthread_*", "__lll_*", "lll_*", "__futex*", "clock_gettime*",
    "__clock_gettime*", "__vdso_*", "__cvdso_*",
    // unnamed code in these modules
    "[vdso]", "[libc.so*", "[libc-*", "[ld-linux*", "[libpthread*", "[libm.so*", "[libgcc_s*",
];

/// Whether `pattern` (`name` or `prefix*`) matches `name`.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Compiler suffixes on a clone of a function: `.isra.N`, `.constprop.N`,
/// `.part.N`, `.cold` (and `.llvm.N`, `.lto_priv.N`), in any combination.
const CLONE_SUFFIXES: [&str; 6] = ["isra", "constprop", "part", "cold", "llvm", "lto_priv"];

/// `finish_task_switch.isra.0` → `finish_task_switch`;
/// `foo.constprop.0.isra.0` → `foo`; `do_softirq.part.0` → `do_softirq`.
/// A dotted tail that is not made of clone suffixes (a C static such as
/// `buf.0`) is kept.
pub fn strip_suffixes(name: &str) -> &str {
    let mut end = name.len();
    let mut cut = None;
    while let Some(dot) = name[..end].rfind('.') {
        let seg = &name[dot + 1..end];
        if CLONE_SUFFIXES.contains(&seg) {
            cut = Some(dot);
        } else if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        end = dot;
    }
    match cut {
        Some(c) if c > 0 => &name[..c],
        _ => name,
    }
}

/// A collapsed frame without inferno's annotation, and whether it is a
/// kernel frame (`_[k]`).
pub fn split_annotation(frame: &str) -> (&str, bool) {
    if let Some(name) = frame.strip_suffix("_[k]") {
        (name, true)
    } else if let Some(name) = frame
        .strip_suffix("_[i]")
        .or_else(|| frame.strip_suffix("_[j]"))
    {
        (name, false)
    } else {
        (frame, false)
    }
}

/// What one (stripped) kernel frame means to the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRole {
    /// In [`PASS_THROUGH`].
    PassThrough,
    /// In [`INTERRUPT_ENTRIES`]: the walk stops.
    Interrupt,
    /// In [`OWNER_RULES`]: this bucket, for the frame and all above it.
    Owns(Bucket),
    /// Matches a rule of [`KERNEL_RULES`]: this bucket, for the frame.
    Decides(Bucket),
    /// Matches nothing: walked past.
    Unmatched,
}

/// The role of a kernel frame name (suffixes already stripped).
pub fn kernel_role(name: &str) -> FrameRole {
    if INTERRUPT_ENTRIES.iter().any(|p| matches(p, name)) {
        return FrameRole::Interrupt;
    }
    if let Some(rule) = OWNER_RULES
        .iter()
        .find(|r| r.patterns.iter().any(|p| matches(p, name)))
    {
        return FrameRole::Owns(rule.bucket);
    }
    if PASS_THROUGH
        .iter()
        .any(|g| g.patterns.iter().any(|p| matches(p, name)))
    {
        return FrameRole::PassThrough;
    }
    for rule in KERNEL_RULES {
        if rule.patterns.iter().any(|p| matches(p, name)) {
            return FrameRole::Decides(rule.bucket);
        }
    }
    FrameRole::Unmatched
}

/// The bucket of a sample taken in user space, from its leaf frame.
pub fn user_bucket(leaf: &str) -> Bucket {
    let name = strip_suffixes(leaf);
    if LIBC_ALLOC.iter().any(|p| matches(p, name)) {
        Bucket::LibcAlloc
    } else {
        Bucket::App
    }
}

/// A sample's bucket and the frame that decided it (None when the walk ran
/// out of frames or ended at user space with nothing matched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The sample's bucket.
    pub bucket: Bucket,
    /// The frame whose rule decided it (None: fell through to a default).
    pub decided_by: Option<String>,
}

/// The classifier, remembering the role of every kernel frame name it has
/// seen (a profile has a few thousand distinct names in up to a few hundred
/// thousand frames).
#[derive(Debug, Default)]
pub struct Classifier {
    roles: HashMap<String, FrameRole>,
}

impl Classifier {
    /// A classifier with the rule table compiled for lookup.
    pub fn new() -> Classifier {
        Classifier::default()
    }

    /// Classify one stack given root first, as in a collapsed line without
    /// its leading process name.
    pub fn classify(&mut self, root_to_leaf: &[&str]) -> Verdict {
        let mut saw_kernel = false;
        // The nearest frame a per-frame rule matched, if any yet.
        let mut nearest: Option<(Bucket, &str)> = None;
        for frame in root_to_leaf.iter().rev() {
            let (name, kernel) = split_annotation(frame);
            if !kernel {
                if !saw_kernel {
                    return verdict(user_bucket(name), Some(name));
                }
                break;
            }
            saw_kernel = true;
            let name = strip_suffixes(name);
            match self.role(name) {
                FrameRole::Owns(bucket) => return verdict(bucket, Some(name)),
                FrameRole::Decides(bucket) if nearest.is_none() => {
                    if KEPT_UNDER_OWNERS.contains(&bucket) {
                        return verdict(bucket, Some(name));
                    }
                    nearest = Some((bucket, name));
                }
                FrameRole::Interrupt => break,
                FrameRole::Decides(_) | FrameRole::PassThrough | FrameRole::Unmatched => {}
            }
        }
        match nearest {
            Some((bucket, name)) => verdict(bucket, Some(name)),
            None if saw_kernel => verdict(Bucket::OtherKernel, None),
            None => verdict(Bucket::App, None),
        }
    }

    /// The role of a kernel frame name, from the cache or the tables.
    fn role(&mut self, name: &str) -> FrameRole {
        if let Some(r) = self.roles.get(name) {
            return *r;
        }
        let r = kernel_role(name);
        self.roles.insert(name.to_string(), r);
        r
    }
}

fn verdict(bucket: Bucket, decided_by: Option<&str>) -> Verdict {
    Verdict {
        bucket,
        decided_by: decided_by.map(str::to_string),
    }
}

/// Frames at which a complete user stack starts: the program's or a
/// thread's entry. With frame pointers most user stacks reach one.
const ENTRY_FRAMES: [&str; 8] = [
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
];

/// Samples counted into buckets, with what the summary needs besides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Breakdown {
    /// Samples per bucket, indexed like [`Bucket::ALL`].
    pub counts: [u64; Bucket::ALL.len()],
    /// Samples classified.
    pub total: u64,
    /// Self samples per leaf frame (`name [k]` for kernel frames).
    pub leaves: HashMap<String, u64>,
    /// Samples with user frames, and those whose user stack reaches the
    /// program's or a thread's entry (a measure of how well the unwinder did).
    pub with_user_frames: u64,
    /// Samples whose user stack reaches the program's or a thread's entry.
    pub complete_user_stacks: u64,
    /// Samples per (bucket, frame that decided it); for the catch-all and
    /// user samples the leaf frame. Shows a reader which rules carry the
    /// weight and what falls through.
    pub deciders: HashMap<(Bucket, String), u64>,
}

impl Breakdown {
    /// Classify collapsed stacks (`comm;root;...;leaf COUNT` per line, as
    /// inferno's perf collapser writes them). Lines that do not parse are
    /// an error naming the line: a silently skipped line would shift every
    /// share.
    pub fn from_collapsed(text: &str) -> Result<Breakdown, String> {
        let mut b = Breakdown::default();
        let mut classifier = Classifier::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (stack, count) = parse_collapsed_line(line)
                .ok_or_else(|| format!("collapsed line {} unreadable: {line:?}", i + 1))?;
            b.add(&mut classifier, stack, count);
        }
        Ok(b)
    }

    /// Add `count` samples of one collapsed stack (process name first).
    pub fn add(&mut self, classifier: &mut Classifier, stack: &str, count: u64) {
        let frames: Vec<&str> = stack.split(';').skip(1).collect();
        let verdict = classifier.classify(&frames);
        let decider = match &verdict.decided_by {
            Some(f) => f.clone(),
            None => frames.last().map_or_else(String::new, |l| {
                strip_suffixes(split_annotation(l).0).to_string()
            }),
        };
        *self.deciders.entry((verdict.bucket, decider)).or_default() += count;
        let i = Bucket::ALL
            .iter()
            .position(|b| *b == verdict.bucket)
            .unwrap_or(Bucket::ALL.len() - 1);
        self.counts[i] += count;
        self.total += count;
        if let Some(leaf) = frames.last() {
            let (name, kernel) = split_annotation(leaf);
            let key = if kernel {
                format!("{name} [k]")
            } else {
                name.to_string()
            };
            *self.leaves.entry(key).or_default() += count;
        }
        let user: Vec<&str> = frames
            .iter()
            .copied()
            .filter(|f| !split_annotation(f).1)
            .collect();
        if let Some(root) = user.first() {
            self.with_user_frames += count;
            if ENTRY_FRAMES.contains(&strip_suffixes(root)) {
                self.complete_user_stacks += count;
            }
        }
    }

    /// Samples in `bucket`.
    pub fn count(&self, bucket: Bucket) -> u64 {
        Bucket::ALL
            .iter()
            .position(|b| *b == bucket)
            .map_or(0, |i| self.counts[i])
    }

    /// Percent of all samples in `bucket` (0 when there are none).
    pub fn share(&self, bucket: Bucket) -> f64 {
        percent(self.count(bucket), self.total)
    }

    /// Percent of samples taken in the kernel.
    pub fn kernel_share(&self) -> f64 {
        let k: u64 = Bucket::ALL
            .iter()
            .filter(|b| b.is_kernel())
            .map(|b| self.count(*b))
            .sum();
        percent(k, self.total)
    }

    /// The `n` leaf frames with the most self samples, with their percent.
    pub fn top_symbols(&self, n: usize) -> Vec<(String, f64)> {
        let mut v: Vec<(&String, &u64)> = self.leaves.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        v.into_iter()
            .take(n)
            .map(|(name, c)| (name.clone(), percent(*c, self.total)))
            .collect()
    }

    /// The frames that decided the most samples of `bucket`, with their
    /// percent of all samples.
    pub fn top_deciders(&self, bucket: Bucket, n: usize) -> Vec<(String, f64)> {
        let mut v: Vec<(&String, u64)> = self
            .deciders
            .iter()
            .filter(|((b, _), _)| *b == bucket)
            .map(|((_, f), c)| (f, *c))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v.into_iter()
            .take(n)
            .map(|(f, c)| (f.clone(), percent(c, self.total)))
            .collect()
    }

    /// Percent of samples with user frames whose user stack is complete.
    pub fn complete_user_share(&self) -> f64 {
        percent(self.complete_user_stacks, self.with_user_frames)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `comm;a;b 12` → (`comm;a;b`, 12).
pub fn parse_collapsed_line(line: &str) -> Option<(&str, u64)> {
    let (stack, count) = line.trim_end().rsplit_once(' ')?;
    Some((stack, count.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(stack: &[&str]) -> Bucket {
        Classifier::new().classify(stack).bucket
    }

    #[test]
    fn suffixes_are_stripped() {
        assert_eq!(
            strip_suffixes("finish_task_switch.isra.0"),
            "finish_task_switch"
        );
        assert_eq!(strip_suffixes("do_softirq.part.0"), "do_softirq");
        assert_eq!(strip_suffixes("tcp_ack.cold"), "tcp_ack");
        assert_eq!(strip_suffixes("foo.constprop.0.isra.0"), "foo");
        assert_eq!(strip_suffixes("foo.part.0.cold"), "foo");
        assert_eq!(strip_suffixes("bar.llvm.1234567"), "bar");
        assert_eq!(strip_suffixes("buf.0"), "buf.0");
        assert_eq!(strip_suffixes("a.b.isra.0"), "a.b");
        assert_eq!(strip_suffixes("plain"), "plain");
        assert_eq!(strip_suffixes(".isra.0"), ".isra.0");
    }

    #[test]
    fn every_bucket_but_the_catch_all_is_reachable_from_the_table() {
        for b in Bucket::ALL {
            if b.is_kernel() && b != Bucket::OtherKernel {
                assert!(
                    KERNEL_RULES
                        .iter()
                        .chain(OWNER_RULES)
                        .any(|r| r.bucket == b),
                    "no rule for {b}"
                );
            }
            assert_eq!(Bucket::from_name(b.name()), Some(b));
        }
    }

    #[test]
    fn no_pass_through_pattern_is_also_a_rule() {
        // A helper listed in both would silently never decide; keep the
        // lists apart.
        let pass = PASS_THROUGH.iter().flat_map(|g| g.patterns.iter());
        for p in pass.chain(INTERRUPT_ENTRIES) {
            let probe = p.trim_end_matches('*');
            for r in KERNEL_RULES.iter().chain(OWNER_RULES) {
                assert!(
                    !r.patterns.iter().any(|q| matches(q, probe)),
                    "{p} is pass-through and matches a {} rule",
                    r.bucket
                );
            }
        }
    }

    #[test]
    fn leaf_first_with_pass_through() {
        // The unlock passes through; the wake-up of a socket reader is TCP.
        assert_eq!(
            bucket(&[
                "read",
                "entry_SYSCALL_64_after_hwframe_[k]",
                "do_syscall_64_[k]",
                "tcp_rcv_established_[k]",
                "sock_def_readable_[k]",
                "_raw_spin_unlock_irqrestore_[k]",
            ]),
            Bucket::TcpIp
        );
        // The nearest deciding frame wins over the syscall entry below it.
        assert_eq!(
            bucket(&[
                "__send",
                "do_syscall_64_[k]",
                "tcp_sendmsg_[k]",
                "_copy_from_iter_[k]",
                "rep_movs_alternative_[k]",
            ]),
            Bucket::Memcpy
        );
        assert_eq!(
            bucket(&[
                "epoll::main",
                "do_syscall_64_[k]",
                "ep_poll_[k]",
                "tcp_poll_[k]"
            ]),
            Bucket::Epoll
        );
        assert_eq!(
            bucket(&[
                "uring::main",
                "do_syscall_64_[k]",
                "__x64_sys_io_uring_enter_[k]",
                "io_submit_sqes_[k]",
                "io_issue_sqe_[k]",
            ]),
            Bucket::Epoll,
            "io_uring's own work is the event interface's, not syscall entry"
        );
        assert_eq!(
            bucket(&[
                "do_syscall_64_[k]",
                "schedule_[k]",
                "finish_task_switch.isra.0_[k]"
            ]),
            Bucket::Scheduler
        );
        assert_eq!(
            bucket(&["__lll_lock_wait", "do_syscall_64_[k]", "futex_wait_[k]"]),
            Bucket::FutexLocks
        );
        assert_eq!(
            bucket(&[
                "app",
                "asm_exc_page_fault_[k]",
                "handle_mm_fault_[k]",
                "clear_page_erms_[k]"
            ]),
            Bucket::Process
        );
        assert_eq!(
            bucket(&[
                "read",
                "entry_SYSCALL_64_after_hwframe_[k]",
                "do_syscall_64_[k]"
            ]),
            Bucket::SyscallEntry
        );
    }

    #[test]
    fn no_owner_pattern_is_dead_in_the_per_frame_table() {
        // Owners are looked up first, so the same name in KERNEL_RULES would
        // never decide; a prefix pattern there (`tcp*`) may still cover the
        // owner's neighbours.
        for o in OWNER_RULES.iter().flat_map(|r| r.patterns.iter()) {
            for r in KERNEL_RULES {
                assert!(
                    !r.patterns.contains(o),
                    "{o} is an owner and a {} rule",
                    r.bucket
                );
            }
        }
    }

    #[test]
    fn the_nearest_owner_decides_and_the_scheduler_is_kept() {
        let accept = [
            "accept4",
            "do_syscall_64_[k]",
            "__x64_sys_accept4_[k]",
            "__sys_accept4_[k]",
            "do_accept_[k]",
        ];
        let under = |tail: &[&'static str]| {
            let mut v = accept.to_vec();
            v.extend_from_slice(tail);
            v
        };
        // The VFS and the allocator inside accept are the connection's...
        assert_eq!(
            bucket(&under(&[
                "sock_alloc_file_[k]",
                "alloc_file_pseudo_[k]",
                "kmem_cache_alloc_noprof_[k]"
            ])),
            Bucket::Connection
        );
        // ...a wait for the next connection is not.
        assert_eq!(
            bucket(&under(&[
                "inet_csk_accept_[k]",
                "schedule_timeout_[k]",
                "schedule_[k]",
                "__schedule_[k]",
                "finish_task_switch.isra.0_[k]"
            ])),
            Bucket::Scheduler
        );
        // A socket closed by a process's exit is the connection's, the
        // exit's own work the process's: the nearest owner decides.
        let exit = [
            "_exit",
            "do_syscall_64_[k]",
            "do_group_exit_[k]",
            "do_exit_[k]",
            "task_work_run_[k]",
            "__fput_[k]",
        ];
        let mut close = exit.to_vec();
        close.extend(["sock_close_[k]", "inet_release_[k]", "tcp_close_[k]"]);
        assert_eq!(bucket(&close), Bucket::Connection);
        assert_eq!(bucket(&exit), Bucket::Process);
        // An interrupt ends the walk before any owner below it.
        let mut tick = close.clone();
        tick.extend(["asm_sysvec_apic_timer_interrupt_[k]", "rcu_core_[k]"]);
        assert_eq!(bucket(&tick), Bucket::OtherKernel);
        // An owner never reaches past the user frame it returns to.
        assert_eq!(bucket(&["do_accept_[k]", "app"]), Bucket::App);
    }

    #[test]
    fn unmatched_kernel_is_other_kernel_and_user_leaf_decides_user() {
        assert_eq!(
            bucket(&["app", "asm_sysvec_apic_timer_interrupt_[k]", "rcu_core_[k]"]),
            Bucket::OtherKernel
        );
        // An interrupt's work is not charged to the TCP code it interrupted...
        assert_eq!(
            bucket(&[
                "__send",
                "tcp_sendmsg_[k]",
                "asm_sysvec_apic_timer_interrupt_[k]",
                "sysvec_apic_timer_interrupt_[k]",
                "__irq_exit_rcu_[k]",
                "handle_softirqs_[k]",
            ]),
            Bucket::OtherKernel
        );
        // ...but work a rule names inside the interrupt is still named.
        assert_eq!(
            bucket(&[
                "app",
                "asm_sysvec_apic_timer_interrupt_[k]",
                "sched_tick_[k]"
            ]),
            Bucket::Scheduler
        );
        assert_eq!(
            bucket(&["main", "servers::conn::Conn::process"]),
            Bucket::App
        );
        assert_eq!(
            bucket(&["main", "write_head", "__memmove_avx_unaligned_erms"]),
            Bucket::LibcAlloc
        );
        assert_eq!(bucket(&["[unknown]", "[libc.so.6]"]), Bucket::LibcAlloc);
        assert_eq!(bucket(&["[unknown]"]), Bucket::App);
    }

    #[test]
    fn breakdown_sums_and_tops() {
        let text = "epoll;main;do_syscall_64_[k];tcp_sendmsg_[k] 6\n\
                    epoll;main;servers::conn::Conn::process 3\n\
                    epoll;main;__memmove_avx_unaligned_erms 1\n";
        let b = Breakdown::from_collapsed(text).unwrap();
        assert_eq!(b.total, 10);
        assert_eq!(b.count(Bucket::TcpIp), 6);
        assert!((b.kernel_share() - 60.0).abs() < 1e-9);
        let sum: f64 = Bucket::ALL.iter().map(|x| b.share(*x)).sum();
        assert!((sum - 100.0).abs() < 1e-9);
        assert_eq!(
            b.top_symbols(1),
            vec![("tcp_sendmsg [k]".to_string(), 60.0)]
        );
        assert!(Breakdown::from_collapsed("no count here\n").is_err());
    }
}
