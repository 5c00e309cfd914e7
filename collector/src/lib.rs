//! earshot's collector: merges the agents' pre-aggregates exactly once into its store and
//! serves the HTTP API. `main.rs` is the thin binary edge over this library.
#![forbid(unsafe_code)]

pub mod api;
pub mod apps;
pub mod config;
pub mod events;
pub mod init;
pub mod link;
pub mod live;
pub mod query;
pub mod sources;
pub mod store;
pub mod tls;
