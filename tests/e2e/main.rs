//! End-to-end tests: the real binaries, real QUIC on loopback, real SQLite files, and Debian's
//! HAProxy where the feature touches it.

mod haproxy_logs;
mod geo;
mod live_haproxy;
mod live_icecast;
mod ground_truth;
mod pipeline;
mod rotation;
mod live_api;
mod fault_crash;
mod fault_partition;
mod fault_rotation;
mod live_icecast_api;
mod fault_resources;
mod apps;
mod fault_security;
mod fault_mangled;
