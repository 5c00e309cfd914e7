//! earshot agent.
#![forbid(unsafe_code)]
pub mod logline;
pub mod reader;
pub mod useragent;
pub mod ship;
pub mod spool;
pub mod accumulate;
pub mod cli;
pub mod clock;
pub mod config;
pub mod ingest;
pub mod report;
pub mod route;
pub mod daemon;
pub mod follow;
pub mod live;
pub mod sdnotify;
