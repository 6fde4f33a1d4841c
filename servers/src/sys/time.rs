//! Clocks. The coarse clocks read the kernel's last tick through the vDSO:
//! no syscall and a few nanoseconds, precise enough for a Date header and
//! idle timers.

/// Seconds since the Unix epoch (CLOCK_REALTIME_COARSE).
pub fn unix_seconds_coarse() -> i64 {
    clock(libc::CLOCK_REALTIME_COARSE).tv_sec
}

/// Monotonic milliseconds (CLOCK_MONOTONIC_COARSE, ~4 ms resolution).
pub fn monotonic_ms_coarse() -> u64 {
    let ts = clock(libc::CLOCK_MONOTONIC_COARSE);
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC), for service-time statistics.
pub fn monotonic_ns() -> u64 {
    let ts = clock(libc::CLOCK_MONOTONIC);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn clock(id: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid writable storage; these clock ids always exist on
    // Linux, so the call cannot fail and its return value carries nothing.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts
}

/// Set the calling thread's timer slack (`PR_SET_TIMERSLACK`): how late the
/// kernel may fire its timers, epoll timeouts included, to batch wake-ups.
/// The default of 50 µs is noise for a server but a visible error for a
/// client that paces requests at microsecond-scale intended times.
pub fn set_timer_slack_ns(ns: u64) -> std::io::Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long and no pointers.
    syscall!(prctl(
        libc::PR_SET_TIMERSLACK,
        ns as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong
    ))?;
    Ok(())
}
