//! HTTP/1.1 servers built directly on Linux syscalls.
//!
//! Layers, each knowing only the ones below it (the arrows point down):
//! - the variants (`src/bin/*`): each holds its concurrency model and nothing
//!   else — how connections are accepted, which driver serves them, on which
//!   threads or processes, where blocking jobs run. [`variants`] lists them.
//! - [`drivers`]: who moves the bytes (blocking sockets, an epoll loop) and
//!   the only place connection syscalls are made; [`config`] starts a server.
//! - [`conn`]: one connection's state machine, sans-IO.
//! - [`app`]: the application — router, static files, `/stats`, `/sleep`,
//!   CGI, uploads, sessions, access log.
//! - [`http`]: the sans-IO protocol core (parser, response writer, Date
//!   cache, counters), shared by every variant so that a comparison
//!   measures the concurrency model only.
//! - [`sys`]: thin safe wrappers over libc, used by all of the above; the
//!   only place with `unsafe` syscalls.
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod app;
pub mod config;
pub mod conn;
pub mod drivers;
pub mod http;
pub mod sys;
pub mod variants;
