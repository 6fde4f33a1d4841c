//! The worker pool behind `epoll-threads` and `uring`: blocking handlers
//! (`/sleep`, CGI, upload fsyncs) run here so they never stall an event loop.
//!
//! A loop hands a [`Job`] to the pool through its [`Handle`] together with a
//! token naming the connection. A worker runs it, puts the finished response
//! on that loop's completion list and makes the loop's eventfd readable; the
//! loop wakes, takes the list, and appends each response to its connection.
//! The queue is bounded: when it is full the submit fails and the loop
//! answers 503 (load shedding) instead of letting blocked work pile up.
//! A job that waited in the queue longer than the queue deadline is not
//! run at all: its client has waited long enough, and a 503 with
//! `Retry-After` now beats a late answer (HAProxy's `timeout queue`).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::app::{Finished, Job, JobClass};
use crate::sys;

struct Task {
    job: Job,
    token: u64,
    done: Arc<Completions>,
    queued: Instant,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    max_wait: Duration,
}

struct State {
    tasks: VecDeque<Task>,
    closed: bool,
}

/// Finished jobs waiting for one event loop to pick them up.
struct Completions {
    items: Mutex<Vec<(u64, Finished)>>,
    wake: OwnedFd,
    /// Submitted and not yet taken by the loop: the loop may not exit on
    /// shutdown while this is non-zero.
    in_flight: AtomicUsize,
}

/// Worker threads and their bounded queues: one queue, with workers of
/// its own, per [`JobClass`], so a kind of work that waits long (sleeping
/// scripts) never delays another that is short (an upload's fsync).
pub struct Pool {
    queues: Vec<Arc<Shared>>,
    workers: Vec<JoinHandle<()>>,
}

/// One event loop's side of the pool: submit jobs, take finished ones.
pub struct Handle {
    queues: Vec<Arc<Shared>>,
    done: Arc<Completions>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// Start, for each class in [`JobClass`] order, `(threads, capacity)`:
    /// that many workers sharing a queue of at most that many jobs. A job
    /// still queued after `max_wait` is answered 503 instead of run.
    pub fn start(
        classes: [(usize, usize); JobClass::COUNT],
        max_wait: Duration,
    ) -> io::Result<Pool> {
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for (class, (threads, capacity)) in classes.into_iter().enumerate() {
            let shared = Arc::new(Shared {
                state: Mutex::new(State {
                    tasks: VecDeque::new(),
                    closed: false,
                }),
                ready: Condvar::new(),
                capacity: capacity.max(1),
                max_wait,
            });
            for i in 0..threads.max(1) {
                let shared = shared.clone();
                workers.push(
                    std::thread::Builder::new()
                        .name(format!("blocking-{class}-{i}"))
                        .spawn(move || work(&shared))?,
                );
            }
            queues.push(shared);
        }
        Ok(Pool { queues, workers })
    }

    /// A handle for one event loop, with its own completion eventfd.
    pub fn handle(&self) -> io::Result<Handle> {
        Ok(Handle {
            queues: self.queues.clone(),
            done: Arc::new(Completions {
                items: Mutex::new(Vec::new()),
                wake: sys::io::eventfd()?,
                in_flight: AtomicUsize::new(0),
            }),
        })
    }

    /// Let the workers finish what is queued, then stop them; waits at
    /// most `grace` for a worker still inside a handler and returns how many
    /// were left running (they end with the process).
    pub fn close(self, grace: Duration) -> usize {
        for q in &self.queues {
            lock(&q.state).closed = true;
            q.ready.notify_all();
        }
        let deadline = Instant::now() + grace;
        while self.workers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.workers.iter().filter(|w| !w.is_finished()).count()
    }
}

/// The pool's command-line flags, shared by the variants that have one.
#[derive(clap::Args, Debug, Clone)]
pub struct PoolArgs {
    /// Threads running blocking handlers that wait (/sleep, CGI) off the loops.
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    pub workers: usize,
    /// Threads for short disk work (upload fsyncs and renames, deletes), with
    /// a queue of their own so it never waits behind sleeping scripts.
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    pub storage_workers: usize,
    /// Blocking jobs waiting for a worker before new ones are shed with 503.
    #[arg(long, default_value_t = 1024, value_parser = at_least_one)]
    pub work_queue: usize,
}

impl PoolArgs {
    /// Start the pool these flags describe; jobs queued past `max_wait`
    /// are answered 503 (`--queue-timeout`).
    pub fn start(&self, max_wait: Duration) -> io::Result<Pool> {
        // In JobClass order: Wait, Storage.
        Pool::start(
            [
                (self.workers, self.work_queue),
                (self.storage_workers, self.work_queue),
            ],
            max_wait,
        )
    }
}

/// A count that must be at least 1 (a pool without threads or queue
/// would refuse every job).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

fn work(shared: &Shared) {
    loop {
        let task = {
            let mut st = lock(&shared.state);
            loop {
                if let Some(t) = st.tasks.pop_front() {
                    break t;
                }
                if st.closed {
                    return;
                }
                st = shared.ready.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Task {
            job,
            token,
            done,
            queued,
        } = task;
        let finished = if queued.elapsed() > shared.max_wait {
            job.refuse()
        } else {
            // A handler that panics must still complete its connection, or
            // the connection would wait forever and shutdown would never finish.
            catch_unwind(AssertUnwindSafe(|| job.run()))
                .unwrap_or_else(|_| Finished::error(500, "the handler failed"))
        };
        lock(&done.items).push((token, finished));
        let _ = sys::io::eventfd_signal(done.wake.as_fd());
    }
}

impl Handle {
    /// Readable when finished jobs are waiting (register it in the loop's epoll set).
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.done.wake.as_fd()
    }

    /// Move every finished job into `into`, resetting the eventfd first so
    /// a completion that lands meanwhile raises a new wake-up.
    pub fn take(&self, into: &mut Vec<(u64, Finished)>) {
        let mut counter = [0u8; 8];
        let _ = sys::io::read(self.done.wake.as_fd(), &mut counter);
        let mut items = lock(&self.done.items);
        self.done
            .in_flight
            .fetch_sub(items.len(), Ordering::Relaxed);
        into.append(&mut items);
    }

    /// Move every finished job into `into` when the eventfd has been
    /// read already — by a read the loop submitted to its io_uring, whose
    /// completion is the wake-up — so no `read` syscall is made here.
    pub fn take_after_wake(&self, into: &mut Vec<(u64, Finished)>) {
        let mut items = lock(&self.done.items);
        self.done
            .in_flight
            .fetch_sub(items.len(), Ordering::Relaxed);
        into.append(&mut items);
    }

    /// Jobs submitted through this handle and not yet taken back.
    pub fn in_flight(&self) -> usize {
        self.done.in_flight.load(Ordering::Relaxed)
    }
}

impl Handle {
    /// Queue `job` for a worker, or give it back when the queue is full
    /// (the caller answers 503). `token` comes back with the response.
    pub fn submit(&self, job: Job, token: u64) -> Result<(), Job> {
        let queue = &self.queues[job.class() as usize];
        let mut st = lock(&queue.state);
        if st.tasks.len() >= queue.capacity || st.closed {
            return Err(job);
        }
        self.done.in_flight.fetch_add(1, Ordering::Relaxed);
        st.tasks.push_back(Task {
            job,
            token,
            done: self.done.clone(),
            queued: Instant::now(),
        });
        drop(st);
        queue.ready.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    fn job(n: u16) -> Job {
        Job::new(move || Finished::new(n, vec![n as u8], 1))
    }

    #[test]
    fn jobs_come_back_to_their_loop() {
        let pool = Pool::start([(2, 8), (1, 8)], LONG).unwrap();
        let (a, b) = (pool.handle().unwrap(), pool.handle().unwrap());
        a.submit(job(200), 1).ok().unwrap();
        b.submit(job(201), 2).ok().unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while (a.in_flight() > 0 || b.in_flight() > 0) && std::time::Instant::now() < deadline {
            a.take(&mut got);
            b.take(&mut got);
            std::thread::yield_now();
        }
        got.sort_by_key(|(t, _)| *t);
        let seen: Vec<(u64, u16)> = got.iter().map(|(t, f)| (*t, f.status)).collect();
        assert_eq!(seen, vec![(1, 200), (2, 201)]);
        pool.close(Duration::from_secs(10));
    }

    #[test]
    fn full_queue_refuses() {
        // No worker can pick anything up while they are all blocked.
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let pool = Pool::start([(1, 1), (1, 1)], LONG).unwrap();
        let h = pool.handle().unwrap();
        let g = gate.clone();
        h.submit(
            Job::new(move || {
                let (m, cv) = &*g;
                let mut open = lock(m);
                while !*open {
                    open = cv.wait(open).unwrap();
                }
                Finished::error(200, "ok")
            }),
            1,
        )
        .ok()
        .unwrap();
        // The worker may or may not have taken the first job yet: fill the
        // one queue slot, then one more submit must be refused.
        let mut refused = false;
        for t in 2..4 {
            if h.submit(job(200), t).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "a queue of capacity 1 took 3 jobs");
        *lock(&gate.0) = true;
        gate.1.notify_all();
        pool.close(Duration::from_secs(10));
    }

    #[test]
    fn panicking_job_still_completes() {
        let pool = Pool::start([(1, 4), (1, 4)], LONG).unwrap();
        let h = pool.handle().unwrap();
        h.submit(Job::new(|| panic!("boom")), 7).ok().unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while h.in_flight() > 0 && std::time::Instant::now() < deadline {
            h.take(&mut got);
            std::thread::yield_now();
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 7);
        assert_eq!(got[0].1.status, 500);
        pool.close(Duration::from_secs(10));
    }

    #[test]
    fn job_past_the_queue_deadline_is_refused_not_run() {
        let ran = Arc::new(AtomicUsize::new(0));
        let pool = Pool::start([(1, 4), (1, 4)], Duration::ZERO).unwrap();
        let h = pool.handle().unwrap();
        let r = ran.clone();
        h.submit(
            Job::new(move || {
                r.fetch_add(1, Ordering::Relaxed);
                Finished::new(200, Vec::new(), 0)
            }),
            3,
        )
        .ok()
        .unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.in_flight() > 0 && Instant::now() < deadline {
            h.take(&mut got);
            std::thread::yield_now();
        }
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0, got[0].1.status), (3, 503));
        assert_eq!(got[0].1.outcome, crate::app::Outcome::Shed);
        assert_eq!(ran.load(Ordering::Relaxed), 0, "an expired job ran");
        pool.close(Duration::from_secs(10));
    }
}
