//! earshot agent.
#![forbid(unsafe_code)]
pub mod accumulate;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod follow;
pub mod ingest;
pub mod live;
pub mod logline;
pub mod reader;
pub mod report;
pub mod route;
pub mod ship;
pub mod spool;
pub mod useragent;
