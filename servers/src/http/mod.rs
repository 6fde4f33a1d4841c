//! The HTTP/1.1 core, sans-IO: the incremental parser, the response writer
//! (status line, headers, the shared Date cache), the outgoing queue that
//! *describes* what to send, and the plain counters behind `/stats`.
//!
//! No socket, file, thread, process or syscall appears under this module:
//! it is unit-testable without a network and gives the same bytes to every
//! variant. The application sits above it (`app`), the connection state
//! machine above that (`conn`), and the drivers that move bytes above those.

pub mod date;
pub mod parser;
pub mod response;
pub mod stats;
