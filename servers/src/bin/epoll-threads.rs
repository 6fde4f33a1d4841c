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

use std::os::fd::OwnedFd;

use clap::Parser;
use servers::config::{Options, Server};
use servers::event_loop::{self, Policy};
use servers::sys;

#[derive(Parser)]
#[command(
    name = "epoll-threads",
    version,
    about = "HTTP/1.1 server: one edge-triggered epoll loop per thread, SO_REUSEPORT listeners"
)]
struct Cli {
    #[command(flatten)]
    opts: Options,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cpus = cli.opts.cpus.clone().map(|c| c.0);
    let threads = cli
        .opts
        .threads
        .unwrap_or_else(|| {
            cpus.as_ref()
                .map_or_else(sys::affinity::available_cpus, Vec::len)
        })
        .max(1);
    let (server, first) = Server::start("epoll-threads", cli.opts, threads, threads, true)?;
    let mut listeners: Vec<OwnedFd> = vec![first];
    for _ in 1..threads {
        listeners.push(server.another_listener()?);
    }
    let policy = Policy {
        keepalive_timeout: server.opts.keepalive_timeout,
        header_timeout: server.opts.header_timeout,
        max_requests: server.opts.keepalive_requests,
    };
    let server = &server;
    let policy = &policy;
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, listener)| {
                let cpus = cpus.clone();
                std::thread::Builder::new()
                    .name(format!("loop-{i}"))
                    .spawn_scoped(s, move || -> anyhow::Result<()> {
                        if let Some(cpus) = cpus {
                            sys::affinity::pin_current_thread(&[cpus[i % cpus.len()]])?;
                        }
                        let shard = server.app.stats().shard(i);
                        event_loop::run(
                            listener,
                            server.parser(),
                            &server.app,
                            shard,
                            policy,
                            server.shutdown,
                        )?;
                        Ok(())
                    })
            })
            .collect::<Result<_, _>>()?;
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("event loop thread panicked"))??;
        }
        Ok(())
    })
}
