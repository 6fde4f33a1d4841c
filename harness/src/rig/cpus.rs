//! Where servers and load generators run: one set of flags for every
//! subcommand that starts servers, so `--server-cpus`, `--client-cpus` and
//! `--threads` mean the same, default the same and are refused with the
//! same words everywhere.
//!
//! The defaults split the machine in two (DESIGN §6): the server on the
//! first half of the CPUs this process may use, the client on the rest, so
//! neither steals the other's time.

use servers::sys::affinity::CpuList;

use crate::catalog;
use crate::format;

/// The CPU and thread flags, flattened into each subcommand's options.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct CpuArgs {
    /// CPUs for the servers, e.g. 0 or 0-3 [default: the first half of this process's CPUs]
    #[arg(long, value_name = "LIST")]
    pub server_cpus: Option<CpuList>,
    /// CPUs for the load generator (and perf) [default: the CPUs the servers do not get]
    #[arg(long, value_name = "LIST")]
    pub client_cpus: Option<CpuList>,
    #[arg(long, value_name = "N", help = threads_help())]
    /// `--threads` (the help text is built from the catalog).
    pub threads: Option<usize>,
}

/// `--threads`' help, from the catalog's thread defaults.
fn threads_help() -> String {
    let per_cpu: Vec<String> = servers::variants::VARIANTS
        .iter()
        .filter_map(|v| match v.threads {
            servers::variants::Threads::PerCpu(n) => Some(format!("{}: {n}", v.name)),
            servers::variants::Threads::One => None,
        })
        .chain([format!("{}: 1", catalog::NGINX)])
        .collect();
    let single: Vec<&str> = servers::variants::VARIANTS
        .iter()
        .filter(|v| !v.takes_threads())
        .map(|v| v.name)
        .collect();
    format!(
        "Threads of the multi-threaded variants and nginx worker_processes [default per server CPU: {}; always 1: {}]",
        per_cpu.join(", "),
        single.join(", ")
    )
}

/// Server and client CPUs and the thread override, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Where every server is pinned.
    pub server_cpus: Vec<usize>,
    /// Where the load generator (and perf) is pinned; its `-t` is one thread per CPU.
    pub client_cpus: Vec<usize>,
    /// `--threads`, when given.
    pub threads: Option<usize>,
    /// Things worth saying before starting (e.g. overlapping CPUs).
    pub warnings: Vec<String>,
}

impl CpuArgs {
    /// Resolve the defaults for a process allowed on `cpus`; Err is the
    /// message for the user.
    pub fn resolve(&self, cpus: &[usize]) -> Result<Placement, String> {
        let mut warnings = Vec::new();
        let rest = |taken: &[usize]| -> Vec<usize> {
            cpus.iter()
                .copied()
                .filter(|c| !taken.contains(c))
                .collect()
        };
        let (server_cpus, client_cpus) = match (&self.server_cpus, &self.client_cpus) {
            (Some(s), Some(c)) => (s.0.clone(), c.0.clone()),
            (Some(s), None) => (s.0.clone(), rest(&s.0)),
            (None, Some(c)) => (rest(&c.0), c.0.clone()),
            (None, None) if cpus.len() >= 2 => {
                let half = cpus.len() / 2;
                (cpus[..half].to_vec(), cpus[half..].to_vec())
            }
            (None, None) => {
                warnings.push(format!(
                    "only one CPU ({}): server and client share it, so they compete and the numbers mean little",
                    format::cpus(cpus)
                ));
                (cpus.to_vec(), cpus.to_vec())
            }
        };
        if server_cpus.is_empty() {
            return Err("no CPU left for the servers: give --server-cpus".into());
        }
        if client_cpus.is_empty() {
            return Err("no CPU left for the client: give --client-cpus".into());
        }
        check_available(&server_cpus, cpus, "--server-cpus")?;
        check_available(&client_cpus, cpus, "--client-cpus")?;
        if cpus.len() >= 2 && server_cpus.iter().any(|c| client_cpus.contains(c)) {
            warnings.push(format!(
                "server CPUs {} and client CPUs {} overlap: server and client compete",
                format::cpus(&server_cpus),
                format::cpus(&client_cpus)
            ));
        }
        if self.threads == Some(0) {
            return Err("--threads must be at least 1".into());
        }
        Ok(Placement {
            server_cpus,
            client_cpus,
            threads: self.threads,
            warnings,
        })
    }
}

/// Err naming `flag` when `list` holds a CPU outside `allowed`.
fn check_available(list: &[usize], allowed: &[usize], flag: &str) -> Result<(), String> {
    match list.iter().find(|c| !allowed.contains(c)) {
        Some(c) => Err(format!(
            "{flag}: CPU {c} is not available to this process (it may use {})",
            format::cpus(allowed)
        )),
        None => Ok(()),
    }
}

impl Placement {
    /// Threads (nginx: worker processes) `server` runs with here.
    pub fn server_threads(&self, server: &str) -> usize {
        catalog::threads(server, self.threads, self.server_cpus.len())
    }

    /// Every server's thread count in one line, for the settings a report
    /// records: `blocking 1, threadpool 4, epoll 1, epoll-threads 1, nginx 1 worker(s)`.
    pub fn threads_summary(&self) -> String {
        catalog::all()
            .iter()
            .map(|s| {
                let n = self.server_threads(s);
                match (*s == catalog::NGINX, catalog::takes_threads(s)) {
                    (true, _) => format!("{s} {n} worker(s)"),
                    (false, true) => format!("{s} {n}"),
                    (false, false) => format!("{s} {n} (by design)"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Load generator threads: one per client CPU.
    pub fn client_threads(&self) -> usize {
        self.client_cpus.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: CpuArgs, cpus: &[usize]) -> Result<Placement, String> {
        args.resolve(cpus)
    }

    #[test]
    fn defaults_split_the_machine() {
        let p = resolve(CpuArgs::default(), &[0, 1]).unwrap();
        assert_eq!((p.server_cpus, p.client_cpus), (vec![0], vec![1]));
        assert!(p.warnings.is_empty());
        let p = resolve(CpuArgs::default(), &[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert_eq!(p.server_cpus, [0, 1, 2, 3]);
        assert_eq!(p.client_cpus, [4, 5, 6, 7]);
        assert_eq!(p.server_threads("nginx"), 4);
        for v in servers::variants::VARIANTS {
            assert_eq!(p.server_threads(v.name), v.threads.resolve(None, 4));
        }
    }

    #[test]
    fn cpu_choices() {
        let args = CpuArgs {
            server_cpus: Some(CpuList(vec![1])),
            ..CpuArgs::default()
        };
        let p = resolve(args, &[0, 1, 2]).unwrap();
        assert_eq!((p.server_cpus, p.client_cpus), (vec![1], vec![0, 2]));
        let args = CpuArgs {
            server_cpus: Some(CpuList(vec![7])),
            ..CpuArgs::default()
        };
        assert!(resolve(args, &[0, 1]).unwrap_err().contains("CPU 7"));
        let args = CpuArgs {
            server_cpus: Some(CpuList(vec![0])),
            client_cpus: Some(CpuList(vec![0, 1])),
            ..CpuArgs::default()
        };
        assert!(resolve(args, &[0, 1]).unwrap().warnings[0].contains("overlap"));
        let p = resolve(CpuArgs::default(), &[3]).unwrap();
        assert_eq!((p.server_cpus, p.client_cpus), (vec![3], vec![3]));
        assert!(p.warnings[0].contains("only one CPU"));
        let args = CpuArgs {
            threads: Some(0),
            ..CpuArgs::default()
        };
        assert!(resolve(args, &[0, 1]).is_err());
    }
}
