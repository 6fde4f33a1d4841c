//! `epoll-threads`: one edge-triggered epoll loop per thread (default one
//! per available CPU), each with its own listening socket on the same port.
//!
//! Listeners: `SO_REUSEPORT`, one per loop, rather than one shared listener
//! with `EPOLLEXCLUSIVE`. The kernel hashes each new connection to one
//! listener's own accept queue, so loops never contend on a shared queue
//! lock and no wake-up is wasted; the price is that a connection is bound to
//! the loop it landed on even if that loop is busier than the others.
//! With `--cpus`, loop `i` is pinned to the `i`-th listed CPU.
//!
//! Connection policy: as `epoll`, per loop — keep-alive up to
//! `--keepalive-requests`, idle close after `--keepalive-timeout`, 408 after
//! `--header-timeout`, connections bounded only by the open-file limit.
//!
//! Blocking handlers (`/sleep`, CGI, upload fsyncs) never run on a loop:
//! they go to a pool through a bounded queue (`--work-queue`) per kind of
//! work — `--workers` threads for work that waits (sleeps, CGI), and
//! `--storage-workers` for short disk work (upload fsyncs), so an upload
//! never queues behind sleeping scripts; the finished response comes back
//! to its loop through an eventfd. A full queue answers 503 with `Retry-After` (counted as `shed`
//! in /stats) rather than stalling a loop.

use std::os::fd::OwnedFd;

use clap::Parser;
use servers::config::{Options, Server};
use servers::drivers::offload::PoolArgs;
use servers::drivers::readiness::{self, Env};
use servers::sys;
use servers::variants;

#[derive(Parser)]
#[command(
    name = "epoll-threads",
    version,
    about = "HTTP/1.1 server: one edge-triggered epoll loop per thread, SO_REUSEPORT listeners"
)]
struct Cli {
    #[command(flatten)]
    opts: Options,
    #[command(flatten)]
    pool: PoolArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cpus = cli.opts.cpus.clone().map(|c| c.0);
    let server_cpus = cpus
        .as_ref()
        .map_or_else(sys::affinity::available_cpus, Vec::len);
    let threads = variants::find("epoll-threads")
        .expect("in the catalog")
        .threads
        .resolve(cli.opts.threads, server_cpus);
    let (server, first) = Server::start("epoll-threads", cli.opts, threads, threads, true)?;
    let mut listeners: Vec<OwnedFd> = vec![first];
    for _ in 1..threads {
        listeners.push(server.another_listener()?);
    }
    let policy = server.policy(server.opts.keepalive_requests);
    let pool = cli.pool.start(server.opts.queue_timeout)?;
    let handles = (0..threads)
        .map(|_| pool.handle())
        .collect::<std::io::Result<Vec<_>>>()?;
    let server = &server;
    let policy = &policy;
    let result = std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = listeners
            .into_iter()
            .zip(handles)
            .enumerate()
            .map(|(i, (listener, offload))| {
                let cpus = cpus.clone();
                std::thread::Builder::new()
                    .name(format!("loop-{i}"))
                    .spawn_scoped(s, move || -> anyhow::Result<()> {
                        if let Some(cpus) = cpus {
                            sys::affinity::pin_current_thread(&[cpus[i % cpus.len()]])?;
                        }
                        let env = Env {
                            app: &server.app,
                            shard: server.app.stats().shard(i),
                            policy,
                            shutdown: server.shutdown,
                            offload: Some(&offload),
                        };
                        readiness::run(listener, server.parser(), &env)?;
                        Ok(())
                    })
            })
            .collect::<Result<_, _>>()?;
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("event loop thread panicked"))??;
        }
        Ok(())
    });
    // Loops exit once their jobs are back, or at the shutdown timeout; a
    // worker still inside a handler then is not waited for.
    let left = pool.close(std::time::Duration::from_millis(100));
    if left > 0 {
        eprintln!(
            "shutdown timeout: {left} blocking handler(s) still running; exiting without them"
        );
    }
    server.finish();
    result
}
