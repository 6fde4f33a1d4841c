//! `uring`: one io_uring per thread (default one per available CPU), each
//! with its own listening socket on the same port (`SO_REUSEPORT`, as
//! `epoll-threads`), driven by [`servers::drivers::completion`]: multishot
//! accept, multishot receive into a ring of provided buffers, the sends of
//! a loop iteration submitted together with the wait for the next
//! completions — one syscall per iteration, whatever it carries.
//!
//! Ring set-up: `IORING_SETUP_SINGLE_ISSUER` (each ring is used by its
//! thread only) with `DEFER_TASKRUN`: completion work runs when the loop
//! enters to wait, in one batch, instead of interrupting it whenever a
//! packet lands (`--taskrun coop` selects `COOP_TASKRUN` for comparison:
//! in a 3 s `/plaintext` check at 50 connections, one loop pinned to one
//! CPU, deferred task work cost 5.6–5.7 µs of CPU per request against
//! 6.0–7.0 µs cooperative, on a shared two-core machine).
//! The ring descriptor is registered. The completion queue is 8× the
//! submission queue: multishot requests post many completions for one
//! submission, and a burst that still overflows is held by the kernel
//! (`IORING_FEAT_NODROP`, required) and flushed by the next enter.
//!
//! Connection policy: as `epoll-threads` — keep-alive up to
//! `--keepalive-requests`, idle close after `--keepalive-timeout`, 408 after
//! `--header-timeout`, connections bounded only by the open-file limit.
//! Blocking handlers (`/sleep`, CGI, upload fsyncs) run on the worker pool
//! (`--workers`, `--storage-workers`, bounded by `--work-queue`, full →
//! `503`); a finished job comes back through an eventfd that the ring
//! itself reads.
//!
//! Where io_uring is refused (`kernel.io_uring_disabled`, a seccomp
//! profile), it says so in one line and exits with
//! [`servers::variants::EXIT_UNAVAILABLE`], before listening.

use std::os::fd::OwnedFd;

use clap::{Parser, ValueEnum};
use std::sync::{mpsc, Arc};

use servers::config::{Listening, Options, Server};
use servers::drivers::completion::{self, Tuning};
use servers::drivers::offload::PoolArgs;
use servers::drivers::readiness::Env;
use servers::sys;
use servers::sys::uring::{Ring, Setup, TaskRun};
use servers::variants;

#[derive(Parser)]
#[command(
    name = "uring",
    version,
    about = "HTTP/1.1 server: one io_uring per thread (multishot accept and receive, batched sends), SO_REUSEPORT listeners"
)]
struct Cli {
    #[command(flatten)]
    opts: Options,
    #[command(flatten)]
    pool: PoolArgs,
    /// Provided receive buffers per ring (a power of two). Small values
    /// provoke an empty buffer ring (tests).
    #[arg(long, default_value_t = 1024, hide = true)]
    recv_buffers: u16,
    /// Bytes per receive buffer.
    #[arg(long, default_value_t = 2048, hide = true)]
    recv_buffer_size: usize,
    /// Submission queue entries per ring (a power of two); the completion
    /// queue gets 8×. Small values provoke a full submission queue and
    /// completion-queue overflow (tests).
    #[arg(long, default_value_t = 1024, hide = true)]
    ring_entries: u32,
    /// When the kernel runs completion work (measurements).
    #[arg(long, value_enum, default_value_t = TaskRunArg::Defer, hide = true)]
    taskrun: TaskRunArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum TaskRunArg {
    Defer,
    Coop,
}

impl Cli {
    fn tuning(&self) -> Tuning {
        Tuning {
            ring: Setup {
                sq_entries: self.ring_entries,
                cq_entries: self.ring_entries.saturating_mul(8),
                taskrun: match self.taskrun {
                    TaskRunArg::Defer => TaskRun::Defer,
                    TaskRunArg::Coop => TaskRun::Coop,
                },
            },
            recv_buffers: self.recv_buffers,
            recv_buffer_size: self.recv_buffer_size,
        }
    }
}

/// io_uring must be usable before the server announces itself: a refusal
/// is one line and [`variants::EXIT_UNAVAILABLE`].
fn check_io_uring(tuning: &Tuning) -> anyhow::Result<()> {
    match Ring::new(tuning.ring) {
        Ok(_) => Ok(()),
        Err(e) => match sys::uring::unavailable(&e) {
            Some(line) => {
                eprintln!("{line}");
                std::process::exit(variants::EXIT_UNAVAILABLE);
            }
            None => Err(anyhow::anyhow!("setting up io_uring: {e}")),
        },
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let tuning = cli.tuning();
    check_io_uring(&tuning)?;
    let cpus = cli.opts.cpus.clone().map(|c| c.0);
    let server_cpus = cpus
        .as_ref()
        .map_or_else(sys::affinity::available_cpus, Vec::len);
    let threads = variants::find("uring")
        .expect("in the catalog")
        .threads
        .resolve(cli.opts.threads, server_cpus);
    // Bound and built, but announced only once every loop has its ring.
    let (listening, first) = Listening::bind("uring", cli.opts, true)?;
    let stats = listening.stats(threads, threads)?;
    let app = Arc::new(listening.build(stats)?);
    let server = Server {
        listening,
        app,
        threads,
    };
    let mut listeners: Vec<OwnedFd> = vec![first];
    for _ in 1..threads {
        listeners.push(server.another_listener()?);
    }
    let policy = server.policy(server.opts.keepalive_requests);
    let pool = cli.pool.start(server.opts.queue_timeout)?;
    let handles = (0..threads)
        .map(|_| pool.handle())
        .collect::<std::io::Result<Vec<_>>>()?;
    let (server, policy, tuning) = (&server, &policy, &tuning);
    let (ready_tx, ready) = mpsc::channel::<std::io::Result<()>>();
    let result = std::thread::scope(|s| -> anyhow::Result<()> {
        let loops: Vec<_> = listeners
            .into_iter()
            .zip(handles)
            .enumerate()
            .map(|(i, (listener, offload))| {
                let cpus = cpus.clone();
                let ready = ready_tx.clone();
                std::thread::Builder::new()
                    .name(format!("ring-{i}"))
                    .spawn_scoped(s, move || -> anyhow::Result<()> {
                        if let Some(cpus) = cpus {
                            let pinned = sys::affinity::pin_current_thread(&[cpus[i % cpus.len()]]);
                            if let Err(e) = pinned {
                                let _ =
                                    ready.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                                return Err(e.into());
                            }
                        }
                        let prepared = match completion::prepare(listener, tuning) {
                            Ok(p) => {
                                let _ = ready.send(Ok(()));
                                p
                            }
                            Err(e) => {
                                let _ = ready.send(Err(e));
                                return Ok(());
                            }
                        };
                        let env = Env {
                            app: &server.app,
                            shard: server.app.stats().shard(i),
                            policy,
                            shutdown: server.shutdown,
                            offload: Some(&offload),
                        };
                        prepared.run(server.parser(), &env)?;
                        Ok(())
                    })
            })
            .collect::<Result<_, _>>()?;
        // Only the loops hold senders now: a loop that ends (or panics)
        // before reporting closes its sender, so the count below cannot
        // wait forever.
        drop(ready_tx);
        let set_up = (0..threads)
            .map(|_| {
                ready
                    .recv()
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::Other.into()))
            })
            .collect::<std::io::Result<Vec<()>>>();
        match set_up {
            Ok(_) => server.announce()?,
            // The loops that did start end at once, having no connection.
            Err(_) => server.shutdown.trigger(),
        }
        for h in loops {
            h.join()
                .map_err(|_| anyhow::anyhow!("ring thread panicked"))??;
        }
        set_up
            .map(drop)
            .map_err(|e| anyhow::anyhow!("setting up a ring: {e}"))
    });
    let left = pool.close(std::time::Duration::from_millis(100));
    if left > 0 {
        eprintln!(
            "shutdown timeout: {left} blocking handler(s) still running; exiting without them"
        );
    }
    server.finish();
    result
}
