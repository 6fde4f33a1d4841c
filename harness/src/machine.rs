//! Which machine and revision a result came from: recorded in every report
//! so a number is never separated from its context.

use std::fs;
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
/// The machine a result was measured on: every row and chart carries it, so numbers never travel without their context.
pub struct Machine {
    /// `/proc/cpuinfo`'s model name.
    pub cpu_model: String,
    /// CPUs this process may use.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// The short git revision of the tree the binaries came from (`unknown` outside a checkout).
    pub git_revision: String,
}

impl Machine {
    /// Read the machine's description (before pinning: the core count is of the whole allowed set).
    pub fn detect() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_string(), |s| s.trim().to_string());
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
            git_revision: git_revision(),
        }
    }
}

/// `git describe`-like revision of the working tree, marked `-dirty` when it
/// has uncommitted changes; `unknown` outside a checkout.
fn git_revision() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::Machine;

    #[test]
    fn detects_this_machine() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(!m.kernel.is_empty() && m.kernel != "unknown", "{m:?}");
        assert!(!m.cpu_model.is_empty());
    }
}
