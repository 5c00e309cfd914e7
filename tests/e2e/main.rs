//! End-to-end tests: the real binaries, real QUIC on loopback, real SQLite files, and Debian's
//! HAProxy where the feature touches it.

mod apps;
mod attacks;
mod exit_codes;
mod fault_crash;
mod fault_http;
mod fault_mangled;
mod fault_partition;
mod fault_quic;
mod fault_resources;
mod fault_rotation;
mod fault_security;
mod geo;
mod ground_truth;
mod haproxy_logs;
mod layouts;
mod live_api;
mod live_haproxy;
mod live_icecast;
mod live_icecast_api;
mod pipeline;
mod real_clients;
mod rotation;
mod shutdown;
mod upgrade;
