//! `epoll`: one thread, non-blocking sockets, edge-triggered epoll.
//!
//! Connection policy: keep-alive up to `--keepalive-requests` (default 1000)
//! per connection, idle connections closed after `--keepalive-timeout`, a
//! half-sent head answered 408 after `--header-timeout`. Any number of
//! connections is held (up to the open-file limit): a slow or idle client
//! costs memory, never a thread. The honest limit of the model: all work
//! runs on the one thread, so a handler that blocks freezes every client,
//! and one core is all it can use.

use clap::Parser;
use servers::config::{Options, Server};
use servers::drivers::readiness::{self, Env};

#[derive(Parser)]
#[command(
    name = "epoll",
    version,
    about = "HTTP/1.1 server: one thread, edge-triggered epoll over non-blocking sockets"
)]
struct Cli {
    #[command(flatten)]
    opts: Options,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.opts.threads.is_some_and(|t| t != 1) {
        eprintln!("epoll: single-threaded by design; ignoring --threads (use epoll-threads)");
    }
    let (server, listener) = Server::start("epoll", cli.opts, 1, 1, false)?;
    let policy = server.policy(server.opts.keepalive_requests);
    let env = Env {
        app: &server.app,
        shard: server.app.stats().shard(0),
        policy: &policy,
        shutdown: server.shutdown,
        offload: None,
    };
    let result = readiness::run(listener, server.parser(), &env);
    server.finish();
    result?;
    Ok(())
}
