//! The HTTP/1.1 core: no sockets, no threads. Variants feed it bytes and
//! write out what it queues. Handlers that must block (CGI, fsync, sleep)
//! do not block here: they come back as jobs for the variant to schedule.

pub mod app;
pub mod date;
pub mod dynamic;
pub mod files;
pub mod parser;
pub mod response;
pub mod stats;
