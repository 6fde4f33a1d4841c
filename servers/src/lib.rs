//! HTTP/1.1 servers built directly on Linux syscalls.
//!
//! Three layers, each knowing only the one below it:
//! - [`sys`]: thin safe wrappers over libc; the only place with `unsafe` syscalls.
//! - [`http`]: the sans-IO protocol core (parser, response writer, application),
//!   shared by every variant so that a comparison measures the concurrency model only.
//! - the variants (`src/bin/*`): each decides how connections are accepted,
//!   read, written and scheduled, using [`conn`] and [`event_loop`].
//!
//! Beside the protocol core, three stores the application uses: [`uploads`]
//! (durable files in `--data-dir`), [`session`] (cookie sessions) and
//! [`access_log`] (buffered, rotated combined-format log).
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod access_log;
pub mod blocking;
pub mod cgi;
pub mod config;
pub mod conn;
pub mod event_loop;
pub mod http;
pub mod offload;
pub mod session;
pub mod sys;
pub mod uploads;
pub mod variants;
