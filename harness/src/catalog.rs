//! The servers the harness measures: the variant catalog
//! ([`servers::variants::VARIANTS`]) and nginx, the reference.
//!
//! Every list, order, start-up flag, thread count and colour the harness
//! uses comes from here, and this module only reads the catalog: adding a
//! catalog entry needs no edit in the harness. nginx is not a variant (it
//! is not built by this project) but is measured beside them, always last.

use std::cmp::Ordering;

use servers::variants::{self, KeepAlive, Threads, Variant};

/// The reference server's name on the command line and in every result.
pub const NGINX: &str = "nginx";

/// nginx runs one worker per server CPU unless `--threads` says otherwise,
/// like the variants with one loop per CPU.
const NGINX_THREADS: Threads = Threads::PerCpu(1);

/// `--keepalive-requests` for the variants whose connections cost memory,
/// not a thread: no cap, as nginx's `keepalive_requests 1000000`.
pub const NO_KEEPALIVE_CAP: &str = "0";

/// Every server in default order: the catalog (architecture order), then nginx.
pub fn all() -> Vec<&'static str> {
    variants::names().chain([NGINX]).collect()
}

/// The catalog entry of `name`, `None` for nginx and unknown names.
pub fn variant(name: &str) -> Option<&'static Variant> {
    variants::find(name)
}

/// Whether `name` is a server the harness can start.
pub fn is_known(name: &str) -> bool {
    name == NGINX || variants::find(name).is_some()
}

/// `blocking, threadpool, epoll, epoll-threads, nginx`: for messages and help texts.
pub fn choices() -> String {
    all().join(", ")
}

/// `blocking, threadpool, epoll, epoll-threads`: the variants alone.
pub fn variant_list() -> String {
    variants::names().collect::<Vec<_>>().join(", ")
}

/// How `name` sizes its threads (nginx: worker processes).
fn threads_of(name: &str) -> Threads {
    variants::find(name).map_or(NGINX_THREADS, |v| v.threads)
}

/// Threads (nginx: worker processes) `name` runs with on `cpus` server CPUs,
/// honouring an explicit `--threads` where the model takes one.
pub fn threads(name: &str, explicit: Option<usize>, cpus: usize) -> usize {
    threads_of(name).resolve(explicit, cpus)
}

/// Whether `--threads` changes anything for `name`.
pub fn takes_threads(name: &str) -> bool {
    threads_of(name) != Threads::One
}

/// The flags a variant gets beyond port, docroot and CPUs: `--threads N`
/// where the model takes it, and no keep-alive cap where a connection costs
/// memory rather than a thread (a capped model keeps its own cap, since
/// the cap is what rotates its workers among clients).
pub fn startup_flags(v: &Variant, threads: usize) -> Vec<String> {
    let mut flags = Vec::new();
    if v.takes_threads() {
        flags.extend(["--threads".to_string(), threads.to_string()]);
    }
    if v.keep_alive == KeepAlive::Unbounded {
        flags.extend([
            "--keepalive-requests".to_string(),
            NO_KEEPALIVE_CAP.to_string(),
        ]);
    }
    flags
}

/// Whether `name` is an event-loop variant: one whose connections cost
/// memory rather than a thread or a process, which is what the catalog's
/// [`KeepAlive::Unbounded`] says (epoll, epoll-threads, uring today). The
/// profile's differential views compare each of them with nginx, the
/// event loop they aim at.
pub fn is_event_loop(name: &str) -> bool {
    variants::find(name).is_some_and(|v| v.keep_alive == KeepAlive::Unbounded)
}

/// Sort key of a server name: catalog rank, then unknown names
/// alphabetically, then nginx.
pub fn rank(name: &str) -> (usize, &str) {
    if name == NGINX {
        (usize::MAX, "")
    } else if let Some(i) = variants::rank(name) {
        (i, "")
    } else {
        (variants::VARIANTS.len(), name)
    }
}

/// Report order of two server names: architecture order, unknown names
/// after the variants, nginx last.
pub fn cmp(a: &str, b: &str) -> Ordering {
    rank(a).cmp(&rank(b))
}

/// The keep-alive policy of every server in one line, for the settings a
/// report records.
pub fn keep_alive_summary() -> String {
    let mut uncapped: Vec<&str> = Vec::new();
    let mut capped: Vec<&str> = Vec::new();
    let mut never: Vec<&str> = Vec::new();
    for v in variants::VARIANTS {
        match v.keep_alive {
            KeepAlive::Unbounded => uncapped.push(v.name),
            KeepAlive::Capped => capped.push(v.name),
            KeepAlive::Never => never.push(v.name),
        }
    }
    let mut parts = vec![format!(
        "no cap: {} (--keepalive-requests {NO_KEEPALIVE_CAP}), nginx (keepalive_requests 1000000)",
        uncapped.join(", ")
    )];
    if !capped.is_empty() {
        parts.push(format!(
            "own default cap (part of the model): {}",
            capped.join(", ")
        ));
    }
    if !never.is_empty() {
        parts.push(format!("one request per connection: {}", never.join(", ")));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_order_then_nginx() {
        let all = all();
        assert_eq!(all.last(), Some(&NGINX));
        assert_eq!(all.len(), variants::VARIANTS.len() + 1);
        assert!(all.iter().all(|n| is_known(n)));
        assert!(!is_known("epol"));
        let mut names = vec!["nginx", "zeta", "alpha", variants::VARIANTS[0].name];
        names.sort_by(|a, b| cmp(a, b));
        assert_eq!(
            names,
            [variants::VARIANTS[0].name, "alpha", "zeta", "nginx"]
        );
    }

    #[test]
    fn flags_follow_the_model() {
        for v in variants::VARIANTS {
            let flags = startup_flags(v, 3);
            assert_eq!(
                flags.contains(&"--threads".to_string()),
                v.threads != Threads::One,
                "{}",
                v.name
            );
            assert_eq!(
                flags.contains(&"--keepalive-requests".to_string()),
                v.keep_alive == KeepAlive::Unbounded,
                "{}",
                v.name
            );
        }
        assert!(!is_event_loop(NGINX) && !is_event_loop("zeta"));
        assert_eq!(threads(NGINX, None, 2), 2);
        assert_eq!(threads(NGINX, Some(3), 2), 3);
    }
}
