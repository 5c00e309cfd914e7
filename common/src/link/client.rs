//! The agent's side of one connection to the collector.
//!
//! What must stay true: a batch counts as delivered only on an `Ack` carrying its own
//! sequence number; every request ends in exactly one outcome (answer, refusal, timeout or
//! lost link), so the driver never deletes a batch on a guess.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{CLOSE_DONE, CLOSE_REFUSED, Close, FrameError};
use crate::wire::{
    self, AgentHealth, AgentMessage, Batch, CollectorMessage, Hello, PROTOCOL_VERSION, WireError,
};

/// Time the agent waits for the collector's answer to its Hello.
pub const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);
/// Time the agent waits for the answer to a health report.
pub const NOTED_TIMEOUT: Duration = Duration::from_secs(30);
/// Time the agent waits for a batch's `Ack`: a large batch may take the collector a while to
/// merge.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(120);
/// Collector answers are small; a bigger length prefix is a broken or hostile peer.
pub const MAX_REPLY: usize = 64 * 1024;

/// The frame an agent sends a batch in: postcard, deflated, as
/// [`AgentMessage::CompressedBatch`].
pub fn batch_frame(batch: &Batch) -> Result<Vec<u8>, WireError> {
    wire::encode_frame(&AgentMessage::CompressedBatch(wire::compress_batch(batch)?))
}

/// One request of a connection, as the session numbers them (the Hello is the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// What a request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Hello,
    Batch { seq: u64 },
    Health,
}

/// How a stream or the connection went away under a request, as the driver saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interrupted {
    /// The collector closed the connection with this application code and reason.
    ClosedByPeer { code: u32, reason: String },
    /// Anything else: a reset, an idle timeout, a network error.
    Lost(String),
}

/// Why a request got no answer it can use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The connection or a stream broke; a new connection may do better.
    #[error("link to the collector lost: {0}")]
    Link(String),
    #[error("no reply from the collector within {0:?}")]
    Timeout(Duration),
    /// Sending the same thing again will not help: the reason says what to fix.
    #[error("the collector refused: {reason}")]
    Refused { reason: String },
    #[error("the collector asks to retry later: {reason}")]
    RetryLater { reason: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The session has no Welcome (yet, or any more).
    #[error("not connected to the collector")]
    NotReady,
}

/// A request's good ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Welcomed,
    Acked { seq: u64 },
    Noted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAction {
    /// Open a stream, write this frame, finish, and read the answer frame (at most
    /// [`MAX_REPLY`] bytes) for [`ClientSession::handle_reply`].
    Send { request: RequestId, frame: Vec<u8> },
    /// Close the connection; the session is over.
    Close(Close),
    /// The request's outcome: exactly one per request.
    Done {
        request: RequestId,
        kind: RequestKind,
        outcome: Result<Answer, ClientError>,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Ready,
    Closed,
}

#[derive(Debug)]
struct Pending {
    kind: RequestKind,
    deadline: Duration,
    wait: Duration,
}

/// One connection to the collector, from its Hello to its close.
#[derive(Debug)]
pub struct ClientSession {
    state: State,
    requests: BTreeMap<RequestId, Pending>,
    next: u64,
}

impl ClientSession {
    /// A connection whose QUIC handshake is done at `now`: the first action sends the Hello.
    pub fn new(now: Duration, hello: &Hello) -> Result<(ClientSession, ClientAction), WireError> {
        let frame = wire::encode_frame(&AgentMessage::Hello(hello.clone()))?;
        let mut session = ClientSession {
            state: State::Greeting,
            requests: BTreeMap::new(),
            next: 0,
        };
        let request = session.begin(now, RequestKind::Hello, WELCOME_TIMEOUT);
        Ok((session, ClientAction::Send { request, frame }))
    }

    /// Welcomed and not closed: batches and health reports may go.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The earliest deadline: call [`handle_timeout`](ClientSession::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.requests.values().map(|p| p.deadline).min()
    }

    /// Sends a batch whose frame the driver made ([`batch_frame`]); the frame comes back in
    /// the action, so the driver keeps it for a resend on another connection.
    pub fn send_batch(
        &mut self,
        now: Duration,
        seq: u64,
        frame: Vec<u8>,
    ) -> Result<ClientAction, ClientError> {
        if !self.is_ready() {
            return Err(ClientError::NotReady);
        }
        let request = self.begin(now, RequestKind::Batch { seq }, ACK_TIMEOUT);
        Ok(ClientAction::Send { request, frame })
    }

    /// Sends the agent's health report.
    pub fn send_health(
        &mut self,
        now: Duration,
        health: &AgentHealth,
    ) -> Result<ClientAction, ClientError> {
        if !self.is_ready() {
            return Err(ClientError::NotReady);
        }
        let frame = wire::encode_frame(&AgentMessage::Health(health.clone()))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let request = self.begin(now, RequestKind::Health, NOTED_TIMEOUT);
        Ok(ClientAction::Send { request, frame })
    }

    fn begin(&mut self, now: Duration, kind: RequestKind, wait: Duration) -> RequestId {
        let id = RequestId(self.next);
        self.next += 1;
        self.requests.insert(
            id,
            Pending {
                kind,
                deadline: now + wait,
                wait,
            },
        );
        id
    }

    /// The answer frame of a request, or why the driver has none.
    pub fn handle_reply(
        &mut self,
        _now: Duration,
        request: RequestId,
        reply: Result<Vec<u8>, ReplyError>,
    ) -> Vec<ClientAction> {
        let Some(pending) = self.requests.remove(&request) else {
            return vec![];
        };
        let kind = pending.kind;
        let answer = match reply {
            Ok(body) => wire::decode_body::<CollectorMessage>(&body)
                .map_err(|e| ClientError::Protocol(format!("undecodable reply: {e}"))),
            Err(ReplyError::Frame(FrameError::TooLarge { len, max })) => Err(
                ClientError::Protocol(format!("reply of {len} bytes is over the {max}-byte limit")),
            ),
            Err(ReplyError::Frame(FrameError::Truncated { got, len })) => Err(ClientError::Link(
                format!("reply ended after {got} of {len} bytes"),
            )),
            Err(ReplyError::Interrupted(why)) => Err(interrupted(why)),
        };
        let (outcome, close) = match (kind, answer) {
            (RequestKind::Hello, Err(e)) => (Err(e), Some("hello failed")),
            (RequestKind::Hello, Ok(reply)) => self.welcome(reply),
            // Whatever broke, this connection is not trusted with the next batch.
            (RequestKind::Batch { .. }, Err(e)) => (Err(e), Some("no usable reply")),
            (RequestKind::Batch { seq }, Ok(reply)) => ack(seq, reply),
            (RequestKind::Health, Err(e)) => (Err(e), None),
            (RequestKind::Health, Ok(CollectorMessage::Noted)) => (Ok(Answer::Noted), None),
            (RequestKind::Health, Ok(CollectorMessage::Refused { reason, retry })) => {
                (Err(refused(reason, retry)), None)
            }
            (RequestKind::Health, Ok(other)) => (
                Err(ClientError::Protocol(format!("sent health, got {other:?}"))),
                None,
            ),
        };
        let mut actions = vec![ClientAction::Done {
            request,
            kind,
            outcome,
        }];
        if let Some(reason) = close {
            actions.extend(self.close(reason));
        }
        actions
    }

    fn welcome(
        &mut self,
        reply: CollectorMessage,
    ) -> (Result<Answer, ClientError>, Option<&'static str>) {
        match reply {
            CollectorMessage::Welcome { protocol_version }
                if protocol_version == PROTOCOL_VERSION =>
            {
                self.state = State::Ready;
                (Ok(Answer::Welcomed), None)
            }
            CollectorMessage::Welcome { protocol_version } => (
                Err(ClientError::Protocol(format!(
                    "the collector speaks protocol {protocol_version}, this agent {PROTOCOL_VERSION}"
                ))),
                Some("version mismatch"),
            ),
            CollectorMessage::Refused { reason, retry } => {
                (Err(refused(reason, retry)), Some("refused"))
            }
            CollectorMessage::Ack { .. } | CollectorMessage::Noted => (
                Err(ClientError::Protocol(format!(
                    "the collector answered Hello with {reply:?}"
                ))),
                Some("unexpected ack"),
            ),
        }
    }

    /// Runs every deadline that is due at `now`: each late request ends in
    /// [`ClientError::Timeout`], and the connection is closed (a reply may still come, late,
    /// and must not be taken for another request's), except for a late health report.
    pub fn handle_timeout(&mut self, now: Duration) -> Vec<ClientAction> {
        let due: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(id, _)| *id)
            .collect();
        let mut actions = Vec::new();
        let mut close = None;
        for request in due {
            let Some(p) = self.requests.remove(&request) else {
                continue;
            };
            close = match p.kind {
                RequestKind::Hello => Some("hello failed"),
                RequestKind::Batch { .. } => close.or(Some("no reply in time")),
                RequestKind::Health => close,
            };
            actions.push(ClientAction::Done {
                request,
                kind: p.kind,
                outcome: Err(ClientError::Timeout(p.wait)),
            });
        }
        if let Some(reason) = close {
            actions.extend(self.close(reason));
        }
        actions
    }

    /// The connection is gone: every request still waiting ends with the reason.
    pub fn handle_lost(&mut self, _now: Duration, why: Interrupted) -> Vec<ClientAction> {
        self.state = State::Closed;
        let error = interrupted(why);
        std::mem::take(&mut self.requests)
            .into_iter()
            .map(|(request, p)| ClientAction::Done {
                request,
                kind: p.kind,
                outcome: Err(error.clone()),
            })
            .collect()
    }

    /// Closes the connection (the agent is stopping, or gives up on it): requests still
    /// waiting end as lost.
    pub fn close(&mut self, reason: &str) -> Vec<ClientAction> {
        if self.is_closed() {
            return vec![];
        }
        let mut actions = self.handle_lost(
            Duration::ZERO,
            Interrupted::Lost(format!("closed by the agent: {reason}")),
        );
        actions.push(ClientAction::Close(Close::new(CLOSE_DONE, reason)));
        actions
    }
}

/// Why the driver has no answer frame for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// The answer was not a frame the agent takes.
    Frame(FrameError),
    /// The stream or the connection went away.
    Interrupted(Interrupted),
}

fn ack(seq: u64, reply: CollectorMessage) -> (Result<Answer, ClientError>, Option<&'static str>) {
    match reply {
        CollectorMessage::Ack { seq: got } if got == seq => (Ok(Answer::Acked { seq }), None),
        CollectorMessage::Ack { seq: got } => (
            Err(ClientError::Protocol(format!(
                "sent batch {seq}, got the ack for {got}"
            ))),
            Some("unexpected ack"),
        ),
        CollectorMessage::Refused { reason, retry } => {
            (Err(refused(format!("batch {seq}: {reason}"), retry)), None)
        }
        CollectorMessage::Welcome { .. } | CollectorMessage::Noted => (
            Err(ClientError::Protocol(format!(
                "sent batch {seq}, got {reply:?}"
            ))),
            Some("unexpected welcome"),
        ),
    }
}

fn refused(reason: String, retry: bool) -> ClientError {
    if retry {
        ClientError::RetryLater { reason }
    } else {
        ClientError::Refused { reason }
    }
}

/// A connection the collector closed as a refusal says why; any other loss is a lost link.
fn interrupted(why: Interrupted) -> ClientError {
    match why {
        Interrupted::ClosedByPeer { code, reason } if code == CLOSE_REFUSED => {
            ClientError::Refused { reason }
        }
        Interrupted::ClosedByPeer { code, reason } if reason.is_empty() => {
            ClientError::Link(format!("closed by peer: {code}"))
        }
        Interrupted::ClosedByPeer { code, reason } => {
            ClientError::Link(format!("closed by peer: {reason} (code {code})"))
        }
        Interrupted::Lost(text) => ClientError::Link(text),
    }
}
