//! CPU pinning (sched_setaffinity), so a benchmark keeps server and load
//! generator on disjoint cores.

use std::io;
use std::mem;

/// Pin the calling thread (and threads it spawns later) to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    set_affinity(&cpu_set(cpus)?)
}

/// The kernel's bitmask for `cpus`. Built apart from [`set_affinity`] so a
/// caller can prepare it before `fork` and apply it in the child, where
/// nothing may allocate.
pub fn cpu_set(cpus: &[usize]) -> io::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bitmask; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {cpu} is beyond CPU_SETSIZE"),
            ));
        }
        // SAFETY: `cpu` is checked to be within the set's capacity.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    Ok(set)
}

/// Apply a CPU mask to the calling thread: one syscall, no allocation on
/// success, so it is safe between `fork` and `exec`.
pub fn set_affinity(set: &libc::cpu_set_t) -> io::Result<()> {
    syscall!(sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), set))?;
    Ok(())
}

/// The CPUs this process may run on (its affinity mask), ascending; all
/// online CPUs if the mask cannot be read.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: all-zero is a valid (empty) cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    if syscall!(sched_getaffinity(
        0,
        mem::size_of::<libc::cpu_set_t>(),
        &mut set
    ))
    .is_err()
    {
        return (0..online_cpus()).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below the set's capacity.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// CPUs online on this machine (whatever this process's affinity).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// How many CPUs this process may run on (its affinity mask), which is what
/// thread counts should follow under `taskset`.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A list of CPU numbers, as given to `--cpus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl std::str::FromStr for CpuList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_cpu_list(s).map(CpuList)
    }
}

/// Parse a CPU list like `0`, `0,2` or `0-3,6`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("invalid CPU list {s:?}: expected e.g. 0 or 0,2 or 0-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cpus.is_empty() {
        return Err(format!("empty CPU list {s:?}: expected e.g. 0 or 0-1"));
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_list;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0,2").unwrap(), vec![0, 2]);
        assert_eq!(parse_cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
    }
}
