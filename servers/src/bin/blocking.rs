//! `blocking`: the iterative baseline.
//!
//! One thread: blocking `accept`, then read the request, write the response,
//! close — one connection at a time, one request per connection.
//!
//! Connection policy: no keep-alive (every response carries
//! `Connection: close`), one request per connection. A client that sends its
//! head slowly holds up every other client until it finishes or the header
//! timeout answers it 408. Clients that arrive meanwhile wait in the kernel's
//! listen backlog (`--backlog`); beyond it the kernel drops their SYNs.

use std::os::fd::AsFd;

use clap::Parser;
use servers::config::{Options, Server};
use servers::drivers::accept::{self, AcceptBackoff};
use servers::drivers::blocking::{self, Env};

#[derive(Parser)]
#[command(
    name = "blocking",
    version,
    about = "Iterative HTTP/1.1 server: one thread, one connection at a time, one request per connection"
)]
struct Cli {
    #[command(flatten)]
    opts: Options,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.opts.threads.is_some_and(|t| t != 1) {
        eprintln!("blocking: single-threaded by design; ignoring --threads");
    }
    let (server, listener) = Server::start("blocking", cli.opts, 1, 1, false)?;
    accept::blocking_listener(listener.as_fd())?;
    let _parked = server.shutdown.register_blocking_thread();
    let policy = server.policy(1);
    let env = Env {
        app: &server.app,
        shard: server.app.stats().shard(0),
        policy: &policy,
        shutdown: server.shutdown,
    };
    let mut backoff = AcceptBackoff::new("blocking: ");
    while let Some((fd, peer)) = backoff.next_blocking(listener.as_fd(), server.shutdown, || 0) {
        env.shard.conn_opened();
        blocking::serve(fd, peer, server.parser(), &env);
        env.shard.conn_closed();
    }
    server.finish();
    Ok(())
}
