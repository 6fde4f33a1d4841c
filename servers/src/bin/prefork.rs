//! `prefork`: a master accepts and hands each connection's descriptor to one
//! of `--workers` worker processes over a Unix socket pair (`SCM_RIGHTS`);
//! inside each worker a pool of blocking threads serves what it is handed.
//!
//! Threads: `--threads` counts them all, as for every variant (default 4
//! per CPU, as `threadpool`), split evenly over the workers (default one
//! per CPU), so `prefork` and `threadpool` compare with the same number of
//! serving threads and differ only by the descriptor passing.
//!
//! Connection policy: as `threadpool`'s, per worker thread — a thread owns
//! a connection, keep-alive included, until the client closes,
//! `--keepalive-requests` is reached or it idles past
//! `--keepalive-timeout`. A worker's threads take connections straight from
//! its socket (each blocked in `recvmsg`).
//!
//! Which worker: the **least loaded that has a free thread**, counted as
//! connections handed to it and not yet finished, from counters the
//! workers update in shared memory (no syscall for the master); ties go
//! round-robin. A connection holds a thread for its whole life, so a
//! connection handed to a worker whose threads are all busy would wait
//! behind, say, an idle keep-alive client while another worker's thread
//! sits free; round-robin would do exactly that. When every thread of
//! every worker is busy the master holds the next connection and stops
//! accepting (backpressure: clients wait in the kernel's listen backlog, as
//! `threadpool`'s wait in its queue) until a worker thread finishes a
//! connection and, seeing the master's flag in shared memory, says so with
//! one message on its socket. Nothing is dropped and nobody is turned away.
//!
//! Fork safety: the master is single-threaded and stays so (it accepts,
//! passes, forks and reaps in one `poll` loop over the listener, a
//! signalfd for SIGCHLD and SIGHUP, and the shutdown eventfd). Workers are
//! forked from it, before they start their own threads, and every fork
//! checks the thread count first
//! ([`servers::drivers::processes::fork_server`]). The application (its
//! directories, access log, `/stats` mapping) is built once in the master
//! and inherited, so a worker started later, or after a restart, never
//! clears what the running ones are doing (the upload store removes stale
//! temporary files when it is opened).
//!
//! Workers that die are reaped and replaced at once (the master's loop
//! wakes on SIGCHLD); what a killed worker had taken or had queued is lost
//! with it, and the master logs how many and corrects `/stats`' open
//! connections. `/stats` counts across workers and respawns: the counter
//! shards live in one shared mapping.
//!
//! SIGHUP restarts the workers gracefully, as nginx does: new workers take
//! the new connections; the old ones get the end of their socket (no new
//! connections), finish what they hold under the usual policy, and exit;
//! one still busy after `--shutdown-timeout` is told to drain (SIGTERM).
//! SIGINT/SIGTERM: the master closes its listener and every socket,
//! signals the workers, which drain (bounded by `--shutdown-timeout`), and
//! exits 0 once all have exited (SIGKILL for any past that timeout and a
//! second).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use servers::config::{Options, Server};
use servers::drivers::accept::AcceptBackoff;
use servers::drivers::blocking::{self, Env};
use servers::drivers::processes::{self, Reaper};
use servers::drivers::turn_away;
use servers::http::stats::Shard;
use servers::sys;
use servers::sys::process::{Fork, PollFd, WaitStatus};
use servers::sys::shm::{SharedSlice, Zeroable};
use servers::sys::unix::{self, SocketKind, Wait};
use servers::variants;

#[derive(Parser)]
#[command(
    name = "prefork",
    version,
    about = "HTTP/1.1 server: a master passes connections over socket pairs to worker processes with thread pools"
)]
struct Cli {
    #[command(flatten)]
    opts: Options,
    /// Worker processes (default: one per server CPU, at most --threads).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    workers: Option<u64>,
}

/// A worker socket's send buffer: room for a few dozen connections waiting
/// for a free thread before the master must place them elsewhere.
const CHANNEL_BUFFER: usize = 16 * 1024;

/// Counter shards past this many writers are shared (atomics allow it).
const MAX_SHARDS: usize = 256;

/// What a worker reports about its slot, in memory the master reads.
#[repr(C, align(128))]
struct Load {
    /// Connections taken from the socket.
    received: AtomicU64,
    /// Connections served to their end.
    finished: AtomicU64,
    /// Set by a master waiting for a free thread: the worker thread that
    /// finishes a connection clears it and says so on the socket.
    master_waits: AtomicBool,
}

// SAFETY: a `#[repr(C)]` struct of atomics: all-zero bytes are 0 and
// false, it holds no pointer, is `Sync`, and has nothing to drop.
unsafe impl Zeroable for Load {}

/// One worker process, as the master sees it.
struct Worker {
    pid: i32,
    slot: usize,
    /// The master's end of the socket pair; `None` once retired (the worker
    /// then reads the end of the stream after what is queued).
    channel: Option<OwnedFd>,
    /// Connections handed to it.
    sent: u64,
    /// When it was retired by a restart; `told` once it was sent SIGTERM.
    retired: Option<(Instant, bool)>,
    started: Instant,
}

/// The sizes the master works with.
#[derive(Clone, Copy)]
struct Plan {
    workers: usize,
    threads: usize,
}

struct Master<'a> {
    server: &'a Server,
    plan: Plan,
    loads: Arc<SharedSlice<Load>>,
    workers: Vec<Worker>,
    /// Slots (counter shards, load records) free for a new worker: twice
    /// the workers, so a restart can start a full set beside the old one.
    free: Vec<usize>,
    /// The connection no worker could take: accepting waits until it is placed.
    pending: Option<(OwnedFd, SocketAddrV4)>,
    /// Round-robin start among equally loaded workers.
    turn: usize,
    /// No spawn before this (workers that die at once are not respawned in a loop).
    spawn_after: Option<Instant>,
    /// Workers in a row that died abnormally within a second of starting.
    quick_deaths: u32,
}

/// What the master's loop ends as.
enum Role {
    /// In a freshly forked worker: serve what arrives on `channel`.
    Worker { channel: OwnedFd, slot: usize },
    /// In the master: shutdown was requested.
    Master,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cpus = cli
        .opts
        .cpus
        .as_ref()
        .map_or_else(sys::affinity::available_cpus, |c| c.0.len());
    let total = variants::find("prefork")
        .expect("in the catalog")
        .threads
        .resolve(cli.opts.threads, cpus);
    let workers = cli.workers.map_or(cpus, |w| w as usize).clamp(1, total);
    let plan = Plan {
        workers,
        threads: total.div_ceil(workers),
    };
    let shards = (1 + 2 * plan.workers * plan.threads).min(MAX_SHARDS);
    let threads = plan.workers * plan.threads;
    let (server, listener) = Server::start("prefork", cli.opts, threads, shards, false)?;
    sys::socket::set_nonblocking(listener.as_fd())?;
    let reaper = Reaper::new(true)?;
    let mut master = Master::new(&server, plan)?;
    match master.run(&listener, &reaper)? {
        Role::Worker { channel, slot } => {
            let loads = master.loads.clone();
            // The master's descriptors (its listener, the other workers'
            // sockets, a pending connection) are not this process's to hold.
            drop((master, listener, reaper));
            let server = Arc::new(server);
            worker_main(server, channel, slot, plan, loads)
        }
        Role::Master => {
            drop(listener);
            master.stop(&reaper);
            server.finish();
            Ok(())
        }
    }
}

impl<'a> Master<'a> {
    fn new(server: &'a Server, plan: Plan) -> std::io::Result<Master<'a>> {
        let slots = 2 * plan.workers;
        Ok(Master {
            server,
            plan,
            loads: Arc::new(SharedSlice::new(slots)?),
            workers: Vec::with_capacity(slots),
            free: (0..slots).rev().collect(),
            pending: None,
            turn: 0,
            spawn_after: None,
            quick_deaths: 0,
        })
    }

    /// Serve until shutdown (in the master), or until this process is a
    /// new worker.
    fn run(&mut self, listener: &OwnedFd, reaper: &Reaper) -> anyhow::Result<Role> {
        let mut backoff = AcceptBackoff::new("prefork: ");
        let mut paused_until: Option<Instant> = None;
        loop {
            if reaper.take_signals().hangup {
                self.restart();
            }
            let mut exits = Vec::new();
            reaper.reap(|pid, status| exits.push((pid, status)));
            for (pid, status) in exits {
                self.exited(pid, status);
            }
            if let Some(role) = self.fill()? {
                return Ok(role);
            }
            self.tell_overdue();
            if self.server.shutdown.requested() {
                return Ok(Role::Master);
            }
            if let Some((fd, peer)) = self.pending.take() {
                self.take_wakeups();
                self.place(fd, peer);
                if self.pending.is_some() && !self.ask_for_a_free_thread() {
                    continue;
                }
            }
            let now = Instant::now();
            if paused_until.is_some_and(|t| t <= now) {
                paused_until = None;
            }
            let accepting = paused_until.is_none() && self.pending.is_none();
            let mut fds = vec![
                PollFd::readable(self.server.shutdown.wake_fd()),
                PollFd::readable(reaper.fd()),
            ];
            if accepting {
                fds.push(PollFd::readable(listener.as_fd()));
            } else if self.pending.is_some() {
                // Wake when a worker says a thread is free.
                fds.extend(
                    self.open_channels()
                        .map(|w| PollFd::readable(w.channel.as_ref().expect("open").as_fd())),
                );
            }
            let timeout = self.next_deadline(paused_until).map_or(-1, |t| {
                t.saturating_duration_since(now).as_millis().clamp(1, 1000) as i32
            });
            match sys::process::poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            if accepting && fds[2].ready() {
                if let Some(pause) = self.accept_one(listener, &mut backoff) {
                    paused_until = Some(Instant::now() + pause);
                }
            }
        }
    }

    /// The earliest moment the loop must wake without an event.
    fn next_deadline(&self, paused_until: Option<Instant>) -> Option<Instant> {
        let retire = self
            .workers
            .iter()
            .filter_map(|w| match w.retired {
                Some((at, false)) => Some(at + self.server.opts.shutdown_timeout),
                _ => None,
            })
            .min();
        [paused_until, retire, self.spawn_after]
            .into_iter()
            .flatten()
            .min()
    }

    /// Accept one connection and place it; the pause to take, if accepting failed.
    fn accept_one(&mut self, listener: &OwnedFd, backoff: &mut AcceptBackoff) -> Option<Duration> {
        match sys::socket::accept(listener.as_fd(), false) {
            Ok((fd, peer)) => {
                backoff.succeeded();
                self.server.app.stats().shard(0).conn_opened();
                self.place(fd, peer);
                None
            }
            Err(e) if AcceptBackoff::is_shortage(&e) => {
                let open = self.server.app.stats().snapshot().conns_active;
                Some(backoff.failed(&e, open))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                None
            }
            Err(e) => {
                eprintln!("prefork: accept: {e}");
                Some(Duration::from_millis(10))
            }
        }
    }

    /// The workers taking new connections.
    fn open_channels(&self) -> impl Iterator<Item = &Worker> {
        self.workers.iter().filter(|w| w.channel.is_some())
    }

    /// Hand `fd` to the least-loaded worker whose socket has room; if none
    /// has, keep it pending (the loop stops accepting until it is placed).
    fn place(&mut self, fd: OwnedFd, peer: SocketAddrV4) {
        let payload = encode_peer(peer);
        let n = self.workers.len();
        let free = |w: &Worker| self.load(w) < self.plan.threads as u64;
        let mut order: Vec<usize> = (0..n)
            .filter(|&i| self.workers[i].channel.is_some() && free(&self.workers[i]))
            .collect();
        let turn = self.turn;
        order.sort_by_key(|&i| (self.load(&self.workers[i]), (i + n - turn % n.max(1)) % n));
        for i in order {
            let w = &mut self.workers[i];
            let channel = w.channel.as_ref().expect("open");
            match unix::send_fd(channel.as_fd(), fd.as_fd(), &payload) {
                Ok(_) => {
                    w.sent += 1;
                    self.turn = i + 1;
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    // The worker is gone (EPIPE): it is reaped and replaced.
                    eprintln!("prefork: passing a connection to worker {}: {e}", w.pid);
                    w.channel = None;
                }
            }
        }
        self.pending = Some((fd, peer));
    }

    /// Before sleeping with a pending connection: ask every worker to say
    /// when a thread frees up. Returns false if one already has (a thread
    /// finished between the last look and the request), so the caller
    /// places the connection at once instead of sleeping.
    fn ask_for_a_free_thread(&self) -> bool {
        let mut all_busy = true;
        for w in self.open_channels() {
            self.loads[w.slot].master_waits.store(true, SeqCst);
            all_busy &= self.load(w) >= self.plan.threads as u64;
        }
        all_busy
    }

    /// Read and drop the workers' "a thread is free" messages.
    fn take_wakeups(&self) {
        for w in self.open_channels() {
            let channel = w.channel.as_ref().expect("open");
            while let Ok((n, _)) = unix::recv_fd_once(channel.as_fd(), &mut [0u8; 8], Wait::No) {
                if n == 0 {
                    break;
                }
            }
        }
    }

    /// Connections handed to `w` and not finished: queued or being served.
    fn load(&self, w: &Worker) -> u64 {
        w.sent
            .saturating_sub(self.loads[w.slot].finished.load(SeqCst))
    }

    /// Start workers until there are as many taking connections as planned
    /// (and slots allow). In a new worker, returns its role.
    fn fill(&mut self) -> anyhow::Result<Option<Role>> {
        if self.spawn_after.is_some_and(|t| Instant::now() < t) {
            return Ok(None);
        }
        self.spawn_after = None;
        while self.open_channels().count() < self.plan.workers {
            let Some(slot) = self.free.pop() else {
                self.make_room();
                break;
            };
            match self.spawn(slot) {
                Ok(Some(role)) => return Ok(Some(role)),
                Ok(None) => {}
                Err(e) => {
                    self.free.push(slot);
                    eprintln!("prefork: starting a worker: {e}; retrying in 1 s");
                    self.spawn_after = Some(Instant::now() + Duration::from_secs(1));
                    break;
                }
            }
        }
        Ok(None)
    }

    /// Fork one worker into `slot`.
    fn spawn(&mut self, slot: usize) -> std::io::Result<Option<Role>> {
        let (ours, theirs) = unix::socketpair(SocketKind::SeqPacket)?;
        sys::socket::set_nonblocking(ours.as_fd())?;
        sys::socket::set_send_buffer(ours.as_fd(), CHANNEL_BUFFER)?;
        let load = &self.loads[slot];
        load.received.store(0, Relaxed);
        load.finished.store(0, Relaxed);
        match processes::fork_server(self.server.shutdown)? {
            Fork::Child => Ok(Some(Role::Worker {
                channel: theirs,
                slot,
            })),
            Fork::Parent(pid) => {
                self.server.app.stats().shard(0).process_started();
                self.workers.push(Worker {
                    pid,
                    slot,
                    channel: Some(ours),
                    sent: 0,
                    retired: None,
                    started: Instant::now(),
                });
                Ok(None)
            }
        }
    }

    /// A child was reaped. A worker's slot is free again; connections it
    /// had taken or had queued and not finished are lost with it: counted
    /// closed, and said.
    fn exited(&mut self, pid: i32, status: WaitStatus) {
        let Some(i) = self.workers.iter().position(|w| w.pid == pid) else {
            return; // an orphan a worker's CGI script left, reparented here
        };
        let w = self.workers.swap_remove(i);
        self.free.push(w.slot);
        self.server.app.stats().shard(0).process_exited();
        let load = &self.loads[w.slot];
        let received = load.received.load(Relaxed);
        let finished = load.finished.load(Relaxed);
        let lost = w.sent.saturating_sub(finished);
        let shard = self.server.app.stats().shard(0);
        for _ in 0..lost {
            shard.conn_closed();
        }
        let expected = w.retired.is_some() || self.server.shutdown.requested();
        if status == WaitStatus::Exited(0) && lost == 0 && expected {
            return;
        }
        let queued = w.sent.saturating_sub(received);
        eprintln!(
            "prefork: worker {pid} ended with {status}: {} connection(s) it was serving and {queued} queued for it were lost",
            lost - queued.min(lost),
        );
        if status != WaitStatus::Exited(0) && w.started.elapsed() < Duration::from_secs(1) {
            self.quick_deaths += 1;
        } else {
            self.quick_deaths = 0;
        }
        if self.quick_deaths >= 3 {
            // Dying at once, again and again: do not fork in a loop.
            eprintln!("prefork: workers keep dying at start; next attempt in 1 s");
            self.spawn_after = Some(Instant::now() + Duration::from_secs(1));
        }
    }

    /// SIGHUP: every current worker is retired (its socket closed, so it
    /// takes nothing new and exits once its connections end); the next
    /// `fill` starts a new set.
    fn restart(&mut self) {
        let now = Instant::now();
        let mut n = 0;
        for w in self.workers.iter_mut().filter(|w| w.channel.is_some()) {
            w.channel = None;
            w.retired = Some((now, false));
            n += 1;
        }
        eprintln!("prefork: SIGHUP: starting new workers; {n} old one(s) finish their connections");
    }

    /// Every slot is taken by workers still finishing after restarts (a
    /// SIGHUP came before the last one's old workers were done): tell the
    /// oldest of them to drain now, so their slots come back when they
    /// exit, rather than leave new connections without a worker.
    fn make_room(&mut self) {
        let missing = self.plan.workers - self.open_channels().count();
        let mut retired: Vec<&mut Worker> = self
            .workers
            .iter_mut()
            .filter(|w| matches!(w.retired, Some((_, false))))
            .collect();
        retired.sort_by_key(|w| w.retired.map(|(at, _)| at));
        for w in retired.into_iter().take(missing) {
            eprintln!(
                "prefork: no free worker slot: old worker {} told to drain now",
                w.pid
            );
            let _ = sys::process::kill(w.pid, sys::process::SIGTERM);
            w.retired = w.retired.map(|(at, _)| (at, true));
        }
    }

    /// Retired workers still busy after `--shutdown-timeout` are told to drain.
    fn tell_overdue(&mut self) {
        let limit = self.server.opts.shutdown_timeout;
        for w in &mut self.workers {
            if let Some((at, false)) = w.retired {
                if at.elapsed() >= limit {
                    let _ = sys::process::kill(w.pid, sys::process::SIGTERM);
                    w.retired = Some((at, true));
                }
            }
        }
    }

    /// Shutdown: no new connections for anyone, every worker told to drain,
    /// all of them waited for.
    fn stop(&mut self, reaper: &Reaper) {
        if let Some((fd, _)) = self.pending.take() {
            let shard = self.server.app.stats().shard(0);
            turn_away(fd, shard);
            shard.conn_closed();
        }
        let mut alive = std::collections::HashSet::new();
        for w in &mut self.workers {
            w.channel = None;
            let _ = sys::process::kill(w.pid, sys::process::SIGTERM);
            alive.insert(w.pid);
        }
        let deadline = Instant::now() + self.server.opts.shutdown_timeout + Duration::from_secs(1);
        let mut exits = Vec::new();
        let killed = reaper.wait_all(&mut alive, deadline, |pid, status| {
            exits.push((pid, status))
        });
        for (pid, status) in exits {
            self.exited(pid, status);
        }
        if killed > 0 {
            eprintln!("shutdown timeout: killed {killed} worker(s) still serving");
        }
    }
}

/// A peer address as the 6 bytes a worker's socket carries with it.
fn encode_peer(peer: SocketAddrV4) -> [u8; 6] {
    let [a, b, c, d] = peer.ip().octets();
    let [p, q] = peer.port().to_be_bytes();
    [a, b, c, d, p, q]
}

fn decode_peer(b: &[u8; 6]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

/// A worker's whole life: its threads serve what arrives on `channel`
/// until its end of stream (the master closed it, or died) or, once
/// shutdown is requested, until nothing is left queued. Then the
/// application is closed (the access log flushed) and the process exits.
fn worker_main(
    server: Arc<Server>,
    channel: OwnedFd,
    slot: usize,
    plan: Plan,
    loads: Arc<SharedSlice<Load>>,
) -> ! {
    let channel = Arc::new(channel);
    let spawned: std::io::Result<Vec<_>> = (0..plan.threads)
        .map(|t| {
            let (server, channel, loads) = (server.clone(), channel.clone(), loads.clone());
            std::thread::Builder::new()
                .name(format!("worker-{t}"))
                .spawn(move || {
                    let shard = 1 + slot * plan.threads + t;
                    serve_channel(&server, &channel, shard, &loads[slot])
                })
        })
        .collect();
    let threads = match spawned {
        Ok(threads) => threads,
        Err(e) => {
            eprintln!(
                "prefork worker {}: starting threads: {e}",
                sys::process::getpid()
            );
            sys::process::exit_immediately(1)
        }
    };
    let mut deadline = None;
    while threads.iter().any(|t| !t.is_finished()) {
        if !server.shutdown.requested() {
            // Woken by shutdown; once a second, to see threads that ended
            // at the socket's end of stream.
            let mut fds = [PollFd::readable(server.shutdown.wake_fd())];
            let _ = sys::process::poll(&mut fds, 1000);
            continue;
        }
        let until = *deadline.get_or_insert_with(|| Instant::now() + server.opts.shutdown_timeout);
        if Instant::now() >= until {
            let busy = threads.iter().filter(|t| !t.is_finished()).count();
            eprintln!("shutdown timeout: {busy} worker thread(s) still busy; exiting without them");
            break;
        }
        // A thread that checked the flag just before the signal and then
        // blocked is interrupted again.
        server.shutdown.kick_parked();
        std::thread::sleep(Duration::from_millis(10));
    }
    server.finish();
    sys::process::exit_immediately(0)
}

/// One worker thread: take a connection from the socket, serve it to its
/// end, again.
fn serve_channel(server: &Server, channel: &OwnedFd, shard: usize, load: &Load) {
    let _parked = server.shutdown.register_blocking_thread();
    let policy = server.policy(server.opts.keepalive_requests);
    let env = Env {
        app: &server.app,
        shard: server.app.stats().shard(shard),
        policy: &policy,
        shutdown: server.shutdown,
    };
    loop {
        // Draining: what is queued was accepted and is served; no waiting.
        let wait = if server.shutdown.requested() {
            Wait::No
        } else {
            Wait::Block
        };
        let mut peer = [0u8; 6];
        match unix::recv_fd_once(channel.as_fd(), &mut peer, wait) {
            Ok((6, Some(fd))) => {
                load.received.fetch_add(1, Relaxed);
                blocking::serve(fd, decode_peer(&peer), server.parser(), &env);
                connection_done(channel, load, env.shard);
            }
            Ok((0, None)) => return, // the master closed the socket
            Ok(_) => eprintln!("prefork worker: a malformed message on the master's socket"),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                // EMSGSIZE: the descriptor could not be installed (this
                // process is out of descriptors): that connection is lost.
                eprintln!("prefork worker: receiving a connection: {e}");
                if e.raw_os_error() != Some(libc::EMSGSIZE) {
                    return;
                }
                load.received.fetch_add(1, Relaxed);
                connection_done(channel, load, env.shard);
            }
        }
    }
}

/// A connection this worker took is over (served, or lost on arrival):
/// count it, and tell a master waiting for a free thread that this one is.
fn connection_done(channel: &OwnedFd, load: &Load, shard: &Shard) {
    shard.conn_closed();
    load.finished.fetch_add(1, SeqCst);
    if load.master_waits.swap(false, SeqCst) {
        let _ = sys::io::send(channel.as_fd(), b"free", false);
    }
}
