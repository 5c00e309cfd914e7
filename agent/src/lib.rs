//! earshot agent.
// One `unsafe` block in the crate: the cache prefetch hint in `table`.
#![deny(unsafe_code)]
pub mod accumulate;
pub mod bytes;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod explain;
pub mod follow;
pub mod ingest;
pub mod kind;
pub mod layout;
pub mod live;
pub mod logline;
pub mod perms;
pub mod reader;
pub mod report;
pub mod route;
pub mod ship;
pub mod spool;
pub mod table;
pub mod useragent;
