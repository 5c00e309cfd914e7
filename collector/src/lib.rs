//! earshot's collector: merges the agents' pre-aggregates exactly once into its store and
//! serves the HTTP API. `main.rs` is the thin binary edge over this library: `cli` is the
//! command line and its exit codes (78 for a bad config), `daemon` the running collector and
//! the order it stops in.
//!
//! The `apps` feature (on by default) adds app downloads and Matomo engagement (`sources`,
//! `apps`, `import-downloads`). Built without it, `apps` and `sources` are stand-ins: a
//! config with `[sources]` is refused and the `apps/…` routes answer 404.
#![forbid(unsafe_code)]

pub mod api;
#[cfg(feature = "apps")]
pub mod apps;
#[cfg(not(feature = "apps"))]
#[path = "apps/absent.rs"]
pub mod apps;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod events;
pub mod health;
pub mod init;
pub mod link;
pub mod live;
pub mod query;
#[cfg(feature = "apps")]
pub mod sources;
#[cfg(not(feature = "apps"))]
#[path = "sources/absent.rs"]
pub mod sources;
pub mod store;
pub mod time;
pub mod tls;
