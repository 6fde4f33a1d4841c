//! The sans-IO HTTP/1.1 core: no sockets, no threads. Variants feed it bytes
//! and write out what it queues.

pub mod app;
pub mod date;
pub mod files;
pub mod parser;
pub mod response;
pub mod stats;
