//! `threadpool`: an accept thread feeding a bounded queue drained by N
//! blocking worker threads.
//!
//! Connection policy: a worker owns a connection for its whole life,
//! keep-alive included, until the client closes, `--keepalive-requests`
//! requests have been served (default 1000), or it sits idle for
//! `--keepalive-timeout` (a half-sent head gets 408 after `--header-timeout`).
//! These bounds are what keep a few clients from holding every worker
//! forever. With more clients than workers, the rest wait in the queue
//! (`--queue`, default 1024); when it is full the accept thread answers
//! `503 Service Unavailable` with `Retry-After: 1` and closes (shedding)
//! instead of letting the backlog grow without bound; a connection that
//! waited in the queue past `--queue-timeout` gets the same 503 when a
//! worker reaches it.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};

use std::time::{Duration, Instant};

use clap::Parser;
use servers::config::{Options, Server};
use servers::drivers::accept::{self, AcceptBackoff};
use servers::drivers::blocking::{self, Env};
use servers::drivers::turn_away;
use servers::sys;
use servers::variants;

#[derive(Parser)]
#[command(
    name = "threadpool",
    version,
    about = "HTTP/1.1 server: accept thread + bounded queue + N blocking workers (default 4 per CPU)"
)]
struct Cli {
    #[command(flatten)]
    opts: Options,
    /// Connections waiting for a worker before new ones are shed with 503.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
}

/// The bounded hand-off between the accept thread and the workers.
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    capacity: usize,
}

/// An accepted connection waiting for a worker, since when.
struct Waiting {
    fd: OwnedFd,
    peer: SocketAddrV4,
    since: Instant,
}

struct QueueState {
    conns: VecDeque<Waiting>,
    closed: bool,
}

impl Queue {
    /// Enqueue, or give the connection back if the queue is full.
    fn push(&self, fd: OwnedFd, peer: SocketAddrV4) -> Result<(), OwnedFd> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.conns.len() >= self.capacity {
            return Err(fd);
        }
        st.conns.push_back(Waiting {
            fd,
            peer,
            since: Instant::now(),
        });
        drop(st);
        self.ready.notify_one();
        Ok(())
    }

    /// Next connection; `None` once closed and empty (queued connections
    /// are still served during shutdown: their requests are in flight).
    fn pop(&self) -> Option<Waiting> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(fd) = st.conns.pop_front() {
                return Some(fd);
            }
            if st.closed {
                return None;
            }
            st = self.ready.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.ready.notify_all();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.queue == 0 {
        anyhow::bail!("--queue must be at least 1");
    }
    let cpus = cli
        .opts
        .cpus
        .as_ref()
        .map_or_else(sys::affinity::available_cpus, |c| c.0.len());
    let threads = variants::find("threadpool")
        .expect("in the catalog")
        .threads
        .resolve(cli.opts.threads, cpus);
    // Shard 0 is the accept thread's, shards 1..=N the workers'.
    let (server, listener) = Server::start("threadpool", cli.opts, threads, threads + 1, false)?;
    let server = Arc::new(server);
    let queue = Arc::new(Queue {
        state: Mutex::new(QueueState {
            conns: VecDeque::new(),
            closed: false,
        }),
        ready: Condvar::new(),
        capacity: cli.queue,
    });
    let policy = Arc::new(server.policy(server.opts.keepalive_requests));

    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let (server, queue, policy) = (server.clone(), queue.clone(), policy.clone());
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let _parked = server.shutdown.register_blocking_thread();
                    let env = Env {
                        app: &server.app,
                        shard: server.app.stats().shard(i + 1),
                        policy: &policy,
                        shutdown: server.shutdown,
                    };
                    while let Some(w) = queue.pop() {
                        if w.since.elapsed() > server.opts.queue_timeout {
                            // Waited past --queue-timeout: its client is
                            // better off retrying than being served late.
                            turn_away(w.fd, env.shard);
                        } else {
                            blocking::serve(w.fd, w.peer, server.parser(), &env);
                        }
                        env.shard.conn_closed();
                    }
                })
        })
        .collect::<Result<_, _>>()?;

    accept::blocking_listener(listener.as_fd())?;
    {
        let _parked = server.shutdown.register_blocking_thread();
        let shard = server.app.stats().shard(0);
        let mut backoff = AcceptBackoff::new("threadpool: ");
        let open = || server.app.stats().snapshot().conns_active;
        while let Some((fd, peer)) = backoff.next_blocking(listener.as_fd(), server.shutdown, open)
        {
            shard.conn_opened();
            if let Err(fd) = queue.push(fd, peer) {
                turn_away(fd, shard);
                shard.conn_closed();
            }
        }
    }
    // Stop accepting before draining: connections that arrive from now on
    // are refused by the kernel instead of waiting in a backlog no one reads.
    drop(listener);
    queue.close();
    // Workers finish their connections (each bounded by the same deadline);
    // past it, the process exits and takes any straggler with it.
    let deadline = std::time::Instant::now() + server.opts.shutdown_timeout;
    while workers.iter().any(|w| !w.is_finished()) && std::time::Instant::now() < deadline {
        // A worker that checked the flag just before the signal and then
        // blocked in a read is interrupted again here.
        server.shutdown.kick_parked();
        std::thread::sleep(Duration::from_millis(10));
    }
    let busy = workers.iter().filter(|w| !w.is_finished()).count();
    if busy > 0 {
        eprintln!("shutdown timeout: {busy} worker(s) still busy; exiting without them");
    }
    server.finish();
    Ok(())
}
