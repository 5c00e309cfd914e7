//! earshot agent.
#![forbid(unsafe_code)]
