//! The agent ↔ collector link protocol as two state machines, without sockets or clocks.
//!
//! The QUIC code of each daemon only drives a session: it hands it what arrived (a stream
//! opened, a frame read or failed, a datagram, the driver's verdict on a Hello or a batch, the
//! connection lost) with `now`, runs the actions it gets back, and wakes the session at
//! [`poll_timeout`](server::ServerSession::poll_timeout). `now` is a [`Duration`] since an
//! origin the driver chooses (its start, say); nothing here reads a clock, so every timeout
//! has a test that runs in microseconds (`tests.rs` drives a client against a server).
//!
//! **Server** ([`server::ServerSession`], one per connection):
//! `AwaitingHello` → (first stream's frame) → `Admitting` → (driver: admitted) → `Admitted`
//! → (shutdown) draining → closed; or → `Refusing` (the `Refused` reply lingers, then close
//! with [`CLOSE_REFUSED`]). Each request stream of an admitted agent goes `Reading` (one frame,
//! within [`server::FRAME_TIMEOUT`]) → `Merging` (a batch: the driver merges, then reports
//! merged, duplicate or refused) → `Lingering` (the reply is written; the stream is let go once
//! the peer has it or after [`server::REPLY_LINGER`]). Timers: the Hello deadline
//! ([`server::HELLO_TIMEOUT`]), each stream's frame and linger deadlines, the drain deadline
//! ([`server::DRAIN_TIMEOUT`]).
//!
//! **Client** ([`client::ClientSession`], one per connection): `Greeting` (the Hello is out;
//! [`client::WELCOME_TIMEOUT`]) → `Ready` (batches and health reports, each a request on its
//! own stream with its deadline: [`client::ACK_TIMEOUT`], [`client::NOTED_TIMEOUT`]) →
//! `Closed`. Each request ends in exactly one outcome; an ack for another batch, an unexpected
//! answer or a late reply closes the connection, a `Refused` answer to a batch does not.
//!
//! Bytes on the wire: the frames of [`crate::wire`] (length-prefixed postcard) read by one
//! [`FrameReader`], and the application close codes below. Close reasons are text for people.
//!
//! [`Duration`]: std::time::Duration

pub mod client;
mod frame;
pub mod server;
#[cfg(test)]
mod tests;

pub use frame::{FrameError, FrameReader};

/// Close code: shutting down, or nothing wrong.
pub const CLOSE_DONE: u32 = 0;
/// Close code: the agent was not admitted (the close reason says why).
pub const CLOSE_REFUSED: u32 = 1;
/// Close code: the peer broke the protocol (undecodable or oversized frame, no Hello in time).
pub const CLOSE_PROTOCOL: u32 = 2;

/// Which request stream of a connection an input or action is about. The driver numbers its
/// streams (quinn's stream index will do); the session only compares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

/// A connection close for the driver to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    pub code: u32,
    /// Sent to the peer as the close reason.
    pub reason: String,
}

impl Close {
    fn new(code: u32, reason: impl Into<String>) -> Close {
        Close {
            code,
            reason: reason.into(),
        }
    }
}
