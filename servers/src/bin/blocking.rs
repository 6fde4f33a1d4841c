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

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use clap::Parser;
use servers::config::{Options, Server};
use servers::drivers::accept::AcceptBackoff;
use servers::drivers::blocking::{self, Env};
use servers::sys;

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

/// How long a blocking `accept` waits before re-checking the shutdown flag:
/// a safety net for a signal landing between the check and the call.
const ACCEPT_TICK: Duration = Duration::from_secs(1);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.opts.threads.is_some_and(|t| t != 1) {
        eprintln!("blocking: single-threaded by design; ignoring --threads");
    }
    let (server, listener) = Server::start("blocking", cli.opts, 1, 1, false)?;
    sys::socket::set_read_timeout(listener.as_fd(), ACCEPT_TICK)?;
    let _parked = server.shutdown.register_blocking_thread();
    let policy = server.policy(1);
    let env = Env {
        app: &server.app,
        shard: server.app.stats().shard(0),
        policy: &policy,
        shutdown: server.shutdown,
    };
    let mut backoff = AcceptBackoff::new("blocking: ");
    while !server.shutdown.requested() {
        match sys::socket::accept(listener.as_fd(), false) {
            Ok((fd, peer)) => {
                backoff.succeeded();
                env.shard.conn_opened();
                blocking::serve(fd, peer, server.parser(), &env);
                env.shard.conn_closed();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::ConnectionAborted
                ) => {}
            // Out of descriptors or memory: the connection stays queued and
            // a retry now fails again; pause (one log line per episode).
            Err(e) if AcceptBackoff::is_shortage(&e) => {
                AcceptBackoff::sleep(backoff.failed(&e, 0), server.shutdown);
            }
            Err(e) => {
                eprintln!("blocking: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    server.finish();
    Ok(())
}
