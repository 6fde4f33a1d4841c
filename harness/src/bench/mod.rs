//! `harness bench`: sweep connection counts over every variant and nginx.

pub mod schema;
