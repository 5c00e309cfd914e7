//! earshot's collector: merges the agents' pre-aggregates exactly once into its store and
//! serves the HTTP API. `main.rs` is the thin binary edge over this library.
#![forbid(unsafe_code)]

pub mod api;
pub mod query;
pub mod store;
pub mod config;
pub mod init;
pub mod link;
pub mod live;
pub mod tls;
pub mod sources;
pub mod sdnotify;
pub mod events;
pub mod apps;
