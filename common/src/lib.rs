//! What agent and collector must agree on: time bucketing, listener identity, the mergeable
//! aggregates and the wire protocol. Everything here is pure code: no IO, no clocks — except
//! [`sdnotify`], which the daemons share behind the `service` feature.
#![forbid(unsafe_code)]

pub mod golden;
pub mod link;
pub mod listener;
pub mod rollup;
#[cfg(test)]
mod rollup_props;
#[cfg(feature = "service")]
pub mod sdnotify;
pub mod sketch;
pub mod tenant;
pub mod time;
pub mod v1;
pub mod wire;

pub use listener::{ListenerId, ListenerKeyring};
pub use rollup::{Dimension, HourKey, HourRollup, Protocol, QuarterRollup};
pub use sketch::UniqueSketch;
