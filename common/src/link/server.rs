//! The collector's side of one agent connection.
//!
//! What must stay true: nothing is handed to the driver to merge before the connection's
//! first stream carried a `Hello` the driver admitted; `Ack` follows only a merge the driver
//! reports done (now or before); a broken frame closes its own connection, a slow one loses
//! its stream; on shutdown, merges in flight finish and their answers go out, up to a deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{CLOSE_DONE, CLOSE_PROTOCOL, CLOSE_REFUSED, Close, FrameError, StreamId};
use crate::wire::{
    self, AgentHealth, AgentMessage, Batch, CollectorMessage, Hello, LiveSample, MAX_FRAME,
    PROTOCOL_VERSION,
};

/// Time an unauthenticated connection gets to send its Hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A Hello is a few hundred bytes; more is not a Hello.
pub const MAX_HELLO: usize = 64 * 1024;
/// Time one request frame may take to arrive: a slow sender loses its stream, not the
/// collector's memory.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// Time an answer gets to reach the agent before its stream is let go (and, for a refusal,
/// before the connection is closed, which would discard what is unsent).
pub const REPLY_LINGER: Duration = Duration::from_secs(2);
/// On shutdown: time given to merges in flight and their answers.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the driver reports after it was asked to [merge](ServerAction::Merge) a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Merged now.
    Merged,
    /// Merged before (the same `(agent_id, seq)`): acknowledged again, not merged again.
    Duplicate,
    /// Not merged: the agent may not send it (`retry: false`), or the store cannot take it
    /// now (`retry: true`).
    Refused { reason: String, retry: bool },
}

/// What the session asks of its driver.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerAction {
    /// Read one frame of at most `max` bytes from the stream, then call
    /// [`ServerSession::handle_frame`].
    ReadFrame { stream: StreamId, max: usize },
    /// Check this Hello's agent and token, then call [`ServerSession::handle_admission`].
    Admit { hello: Hello },
    /// Check that the agent may send this batch, merge it exactly once, then call
    /// [`ServerSession::handle_merged`].
    Merge { stream: StreamId, batch: Batch },
    /// Keep the agent's latest health report.
    NoteHealth { health: AgentHealth },
    /// A live sample from the admitted agent (its tenants are the driver's to check).
    Live { sample: LiveSample },
    /// A datagram that is not a live sample.
    DatagramRejected { why: String },
    /// Write this answer on the stream and finish it; call [`ServerSession::handle_settled`]
    /// once the peer has it.
    Reply {
        stream: StreamId,
        message: CollectorMessage,
    },
    /// Stop reading and reset the stream with this code; forget it. With [`CLOSE_PROTOCOL`]
    /// the peer was too slow.
    EndStream { stream: StreamId, code: u32 },
    /// Close the connection. The session is over: further inputs are ignored. With
    /// [`CLOSE_PROTOCOL`] the peer sent something broken (`why` says what, for the log).
    Close { close: Close, why: String },
}

#[derive(Debug)]
enum State {
    /// Waiting for the first stream and its Hello, until `deadline`.
    AwaitingHello {
        deadline: Duration,
        stream: Option<StreamId>,
    },
    /// The Hello is with the driver.
    Admitting {
        stream: StreamId,
    },
    Admitted {
        agent_id: String,
    },
    /// The `Refused` answer to the Hello is on its way; then the connection closes.
    Refusing {
        reason: String,
    },
    Closed,
}

#[derive(Debug)]
enum StreamState {
    Reading { deadline: Duration },
    Merging { seq: u64 },
    Lingering { deadline: Duration },
}

/// One agent connection, from its first stream to its close.
#[derive(Debug)]
pub struct ServerSession {
    state: State,
    streams: BTreeMap<StreamId, StreamState>,
    /// Set by shutdown: when the connection closes whatever is still in flight.
    drain_deadline: Option<Duration>,
}

impl ServerSession {
    /// A connection whose QUIC handshake is done at `now`.
    pub fn new(now: Duration) -> ServerSession {
        ServerSession {
            state: State::AwaitingHello {
                deadline: now + HELLO_TIMEOUT,
                stream: None,
            },
            streams: BTreeMap::new(),
            drain_deadline: None,
        }
    }

    /// Whether the driver should accept a new stream now: the first one before the Hello,
    /// then, once admitted, any until shutdown.
    pub fn wants_stream(&self) -> bool {
        match &self.state {
            State::AwaitingHello { stream, .. } => stream.is_none(),
            State::Admitted { .. } => self.drain_deadline.is_none(),
            _ => false,
        }
    }

    /// The admitted agent, once there is one.
    pub fn agent_id(&self) -> Option<&str> {
        match &self.state {
            State::Admitted { agent_id } => Some(agent_id),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The earliest deadline: call [`handle_timeout`](ServerSession::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let hello = match self.state {
            State::AwaitingHello { deadline, .. } => Some(deadline),
            State::Closed => return None,
            _ => None,
        };
        let streams = self.streams.values().filter_map(|s| match s {
            StreamState::Reading { deadline } | StreamState::Lingering { deadline } => {
                Some(*deadline)
            }
            StreamState::Merging { .. } => None,
        });
        hello
            .into_iter()
            .chain(streams)
            .chain(self.drain_deadline)
            .min()
    }

    /// The peer opened a stream (the driver accepted it because [`wants_stream`] said so).
    ///
    /// [`wants_stream`]: ServerSession::wants_stream
    pub fn handle_stream(&mut self, now: Duration, stream: StreamId) -> Vec<ServerAction> {
        if !self.wants_stream() {
            return vec![ServerAction::EndStream {
                stream,
                code: CLOSE_DONE,
            }];
        }
        match &mut self.state {
            State::AwaitingHello { stream: first, .. } => {
                *first = Some(stream);
                vec![ServerAction::ReadFrame {
                    stream,
                    max: MAX_HELLO,
                }]
            }
            _ => {
                self.streams.insert(
                    stream,
                    StreamState::Reading {
                        deadline: now + FRAME_TIMEOUT,
                    },
                );
                vec![ServerAction::ReadFrame {
                    stream,
                    max: MAX_FRAME,
                }]
            }
        }
    }

    /// The frame the driver was asked to read, or why there is none.
    pub fn handle_frame(
        &mut self,
        now: Duration,
        stream: StreamId,
        frame: Result<Vec<u8>, FrameError>,
    ) -> Vec<ServerAction> {
        match &self.state {
            State::AwaitingHello {
                stream: Some(first),
                ..
            } if *first == stream => self.hello_frame(now, stream, frame),
            State::Admitted { .. } => {
                if !matches!(self.streams.get(&stream), Some(StreamState::Reading { .. })) {
                    return vec![];
                }
                self.streams.remove(&stream);
                self.request_frame(now, stream, frame)
            }
            _ => vec![],
        }
    }

    fn hello_frame(
        &mut self,
        now: Duration,
        stream: StreamId,
        frame: Result<Vec<u8>, FrameError>,
    ) -> Vec<ServerAction> {
        let body = match frame {
            Ok(body) => body,
            Err(e) => return self.close(CLOSE_PROTOCOL, "expected a Hello frame", e.to_string()),
        };
        match wire::decode_body::<AgentMessage>(&body) {
            Ok(AgentMessage::Hello(hello)) if hello.protocol_version != PROTOCOL_VERSION => {
                let reason = format!(
                    "this collector speaks protocol {PROTOCOL_VERSION}, the agent {}",
                    hello.protocol_version
                );
                self.refuse(now, stream, reason)
            }
            Ok(AgentMessage::Hello(hello)) => {
                self.state = State::Admitting { stream };
                vec![ServerAction::Admit { hello }]
            }
            Ok(
                AgentMessage::Batch(_) | AgentMessage::Health(_) | AgentMessage::CompressedBatch(_),
            ) => self.refuse(now, stream, "the first request must be a Hello".into()),
            Err(e) => self.close(
                CLOSE_PROTOCOL,
                "undecodable frame",
                format!("undecodable Hello: {e}"),
            ),
        }
    }

    /// The driver's verdict on the Hello it was asked to [admit](ServerAction::Admit): the
    /// agent's id, or the reason it is refused (sent to the agent).
    pub fn handle_admission(
        &mut self,
        now: Duration,
        verdict: Result<String, String>,
    ) -> Vec<ServerAction> {
        let State::Admitting { stream } = self.state else {
            return vec![];
        };
        match verdict {
            Ok(agent_id) => {
                self.state = State::Admitted { agent_id };
                self.reply(
                    now,
                    stream,
                    CollectorMessage::Welcome {
                        protocol_version: PROTOCOL_VERSION,
                    },
                )
            }
            Err(reason) => self.refuse(now, stream, reason),
        }
    }

    fn request_frame(
        &mut self,
        now: Duration,
        stream: StreamId,
        frame: Result<Vec<u8>, FrameError>,
    ) -> Vec<ServerAction> {
        let body = match frame {
            Ok(body) => body,
            Err(e @ FrameError::TooLarge { .. }) => {
                let text = e.to_string();
                return self.close(CLOSE_PROTOCOL, text.clone(), text);
            }
            // The agent went away mid-frame: nothing to answer, nothing to blame.
            Err(FrameError::Truncated { .. }) => {
                return self.end_stream(stream, CLOSE_DONE);
            }
        };
        let batch = match wire::decode_body::<AgentMessage>(&body) {
            Ok(AgentMessage::Batch(batch)) => batch,
            Ok(AgentMessage::CompressedBatch(deflated)) => {
                match wire::decompress_batch(&deflated) {
                    Ok(batch) => batch,
                    Err(e) => {
                        return self.close(CLOSE_PROTOCOL, "undecodable frame", e.to_string());
                    }
                }
            }
            Ok(AgentMessage::Hello(_)) => {
                let refused = CollectorMessage::Refused {
                    reason: "already admitted: send batches".into(),
                    retry: false,
                };
                return self.reply(now, stream, refused);
            }
            Ok(AgentMessage::Health(health)) => {
                let mut actions = vec![ServerAction::NoteHealth { health }];
                actions.extend(self.reply(now, stream, CollectorMessage::Noted));
                return actions;
            }
            Err(e) => {
                return self.close(
                    CLOSE_PROTOCOL,
                    "undecodable frame",
                    format!("undecodable frame: {e}"),
                );
            }
        };
        self.streams
            .insert(stream, StreamState::Merging { seq: batch.seq });
        vec![ServerAction::Merge { stream, batch }]
    }

    /// What came of the batch the driver was asked to [merge](ServerAction::Merge).
    pub fn handle_merged(
        &mut self,
        now: Duration,
        stream: StreamId,
        outcome: BatchOutcome,
    ) -> Vec<ServerAction> {
        let Some(StreamState::Merging { seq }) = self.streams.get(&stream) else {
            return vec![];
        };
        let seq = *seq;
        let answer = match outcome {
            BatchOutcome::Merged | BatchOutcome::Duplicate => CollectorMessage::Ack { seq },
            BatchOutcome::Refused { reason, retry } => CollectorMessage::Refused { reason, retry },
        };
        self.reply(now, stream, answer)
    }

    /// The peer has the answer written on this stream (or stopped reading it).
    pub fn handle_settled(&mut self, _now: Duration, stream: StreamId) -> Vec<ServerAction> {
        match &self.state {
            State::Refusing { reason } => {
                let reason = reason.clone();
                self.close(CLOSE_REFUSED, reason.clone(), reason)
            }
            State::Closed => vec![],
            _ => {
                if matches!(
                    self.streams.get(&stream),
                    Some(StreamState::Lingering { .. })
                ) {
                    self.streams.remove(&stream);
                }
                self.drained()
            }
        }
    }

    /// A datagram arrived (the driver reads them once the agent is admitted).
    pub fn handle_datagram(&mut self, _now: Duration, bytes: &[u8]) -> Vec<ServerAction> {
        if self.agent_id().is_none() {
            return vec![];
        }
        match postcard::from_bytes::<LiveSample>(bytes) {
            Ok(sample) => vec![ServerAction::Live { sample }],
            Err(e) => vec![ServerAction::DatagramRejected {
                why: format!("undecodable live sample: {e}"),
            }],
        }
    }

    /// The collector is stopping: no new streams; frames not yet fully here are dropped
    /// (their agents resend); merges in flight finish and are answered until
    /// [`DRAIN_TIMEOUT`], then the connection closes.
    pub fn handle_shutdown(&mut self, now: Duration) -> Vec<ServerAction> {
        match self.state {
            State::AwaitingHello { .. } | State::Admitting { .. } => {
                self.close(CLOSE_DONE, "collector stopping", "collector stopping")
            }
            State::Admitted { .. } if self.drain_deadline.is_none() => {
                self.drain_deadline = Some(now + DRAIN_TIMEOUT);
                let reading: Vec<StreamId> = self
                    .streams
                    .iter()
                    .filter(|(_, s)| matches!(s, StreamState::Reading { .. }))
                    .map(|(id, _)| *id)
                    .collect();
                let mut actions = Vec::new();
                for stream in reading {
                    actions.extend(self.end_stream(stream, CLOSE_DONE));
                }
                actions.extend(self.drained());
                actions
            }
            _ => vec![],
        }
    }

    /// Runs every deadline that is due at `now`.
    pub fn handle_timeout(&mut self, now: Duration) -> Vec<ServerAction> {
        match self.state {
            State::Closed => return vec![],
            State::AwaitingHello { deadline, .. } if now >= deadline => {
                return self.close(
                    CLOSE_PROTOCOL,
                    "no Hello in time",
                    format!("no Hello within {HELLO_TIMEOUT:?}"),
                );
            }
            _ => {}
        }
        if self.drain_deadline.is_some_and(|d| now >= d) {
            return self.close(
                CLOSE_DONE,
                "collector stopping",
                format!("answers still pending after {DRAIN_TIMEOUT:?}; closing anyway (their agents resend)"),
            );
        }
        let due: Vec<(StreamId, bool)> = self
            .streams
            .iter()
            .filter_map(|(id, s)| match s {
                StreamState::Reading { deadline } if now >= *deadline => Some((*id, true)),
                StreamState::Lingering { deadline } if now >= *deadline => Some((*id, false)),
                _ => None,
            })
            .collect();
        let mut actions = Vec::new();
        for (stream, reading) in due {
            if reading {
                actions.extend(self.end_stream(stream, CLOSE_PROTOCOL));
            } else {
                actions.extend(self.handle_settled(now, stream));
            }
        }
        actions.extend(self.drained());
        actions
    }

    fn reply(
        &mut self,
        now: Duration,
        stream: StreamId,
        message: CollectorMessage,
    ) -> Vec<ServerAction> {
        self.streams.insert(
            stream,
            StreamState::Lingering {
                deadline: now + REPLY_LINGER,
            },
        );
        vec![ServerAction::Reply { stream, message }]
    }

    fn refuse(&mut self, now: Duration, stream: StreamId, reason: String) -> Vec<ServerAction> {
        self.state = State::Refusing {
            reason: reason.clone(),
        };
        self.reply(
            now,
            stream,
            CollectorMessage::Refused {
                reason,
                retry: false,
            },
        )
    }

    fn end_stream(&mut self, stream: StreamId, code: u32) -> Vec<ServerAction> {
        if self.is_closed() {
            return vec![];
        }
        self.streams.remove(&stream);
        let mut actions = vec![ServerAction::EndStream { stream, code }];
        actions.extend(self.drained());
        actions
    }

    /// While draining, closes once nothing is in flight.
    fn drained(&mut self) -> Vec<ServerAction> {
        if self.drain_deadline.is_some() && self.streams.is_empty() && !self.is_closed() {
            return self.close(CLOSE_DONE, "collector stopping", "collector stopping");
        }
        vec![]
    }

    fn close(
        &mut self,
        code: u32,
        reason: impl Into<String>,
        why: impl Into<String>,
    ) -> Vec<ServerAction> {
        self.state = State::Closed;
        self.streams.clear();
        vec![ServerAction::Close {
            close: Close::new(code, reason),
            why: why.into(),
        }]
    }
}
