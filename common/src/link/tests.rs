//! A client session and a server session driven against each other on a simulated clock.
//!
//! The harness plays both drivers: frames go through [`FrameReader`] as a QUIC stream would
//! carry them, the server's merges go to a set of `(agent_id, seq)` with a session sum (what
//! the collector's store keeps), and time moves only when a test moves it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::client::{
    Answer, ClientAction, ClientError, ClientSession, Interrupted, MAX_REPLY, ReplyError,
    RequestId, RequestKind, batch_frame,
};
use super::server::{BatchOutcome, ServerAction, ServerSession};
use super::*;
use crate::rollup::{HourKey, HourRollup, Protocol};
use crate::wire::{
    self, AgentCounters, AgentHealth, AgentMessage, Batch, CollectorMessage, Hello, LiveSample,
    PROTOCOL_VERSION,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn us(u: u64) -> Duration {
    Duration::from_micros(u)
}

fn hello(agent_id: &str, token: &str) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_id: agent_id.into(),
        token: token.into(),
        agent_version: "test".into(),
    }
}

fn batch(seq: u64, sessions: u64) -> Batch {
    let mut r = HourRollup::new(Protocol::Icecast);
    r.quarters[0].sessions = sessions;
    Batch {
        agent_id: "agent-1".into(),
        seq,
        rollups: vec![(
            HourKey {
                tenant: "radio1".into(),
                stream: "/live".into(),
                hour_ms: 0,
            },
            r,
        )],
        counters: AgentCounters::default(),
    }
}

/// What the collector's store keeps of merges: the pairs seen, and the sum they add up to.
#[derive(Debug, Default)]
struct Store {
    seen: BTreeSet<(String, u64)>,
    sessions: u64,
    /// Merges to fail (the store is busy) before the next one succeeds.
    failing: usize,
}

impl Store {
    fn merge(&mut self, batch: &Batch) -> BatchOutcome {
        if self.failing > 0 {
            self.failing -= 1;
            return BatchOutcome::Refused {
                reason: "the collector cannot store batches right now".into(),
                retry: true,
            };
        }
        if !self.seen.insert((batch.agent_id.clone(), batch.seq)) {
            return BatchOutcome::Duplicate;
        }
        self.sessions += batch.rollups[0].1.quarters[0].sessions;
        BatchOutcome::Merged
    }
}

/// The collector's configuration: one agent, one token.
fn admit(hello: &Hello) -> Result<String, String> {
    if hello.agent_id == "agent-1" && hello.token == "token-1" {
        Ok(hello.agent_id.clone())
    } else {
        Err(format!("unknown agent {:?} or wrong token", hello.agent_id))
    }
}

enum Step {
    Client(ClientAction),
    Server(ServerAction),
}

/// One connection: both sessions and what the drivers between them hold.
struct Sim {
    now: Duration,
    client: ClientSession,
    server: ServerSession,
    store: Store,
    /// Server stream → the client's request on it and the bytes the client wrote.
    streams: BTreeMap<StreamId, (RequestId, Vec<u8>)>,
    next_stream: u64,
    /// Bytes of each request frame that reach the server (all when `None`): a slow sender.
    deliver_bytes: Option<usize>,
    /// Whether the server's merges run at once, or wait in `held_merges`.
    merge_at_once: bool,
    held_merges: Vec<(StreamId, Batch)>,
    /// Whether answers reach the client, or wait in `held_replies` (a cut network).
    replies_arrive: bool,
    held_replies: Vec<(StreamId, CollectorMessage)>,
    /// Whether the server driver reports answers as received by the agent.
    settles: bool,
    outcomes: Vec<(RequestKind, Result<Answer, ClientError>)>,
    /// The server's actions other than reading, admitting, merging and replying.
    server_log: Vec<ServerAction>,
    client_close: Option<Close>,
    server_close: Option<Close>,
}

impl Sim {
    /// A connection at `now` whose Hello goes out at once.
    fn connect(now: Duration, store: Store, hello: &Hello) -> Sim {
        Sim::connect_with(now, store, hello, |_| {})
    }

    /// The same, with the drivers set up by `setup` before the Hello goes.
    fn connect_with(
        now: Duration,
        store: Store,
        hello: &Hello,
        setup: impl FnOnce(&mut Sim),
    ) -> Sim {
        let (client, first) = ClientSession::new(now, hello).unwrap();
        let mut sim = Sim {
            now,
            client,
            server: ServerSession::new(now),
            store,
            streams: BTreeMap::new(),
            next_stream: 0,
            deliver_bytes: None,
            merge_at_once: true,
            held_merges: Vec::new(),
            replies_arrive: true,
            held_replies: Vec::new(),
            settles: true,
            outcomes: Vec::new(),
            server_log: Vec::new(),
            client_close: None,
            server_close: None,
        };
        setup(&mut sim);
        sim.run(vec![Step::Client(first)]);
        sim
    }

    /// A connection of agent-1 that has its Welcome.
    fn admitted(now: Duration, store: Store) -> Sim {
        let mut sim = Sim::connect(now, store, &hello("agent-1", "token-1"));
        assert_eq!(
            sim.take_outcomes(),
            [(RequestKind::Hello, Ok(Answer::Welcomed))]
        );
        assert!(sim.client.is_ready());
        assert_eq!(sim.server.agent_id(), Some("agent-1"));
        sim
    }

    fn take_outcomes(&mut self) -> Vec<(RequestKind, Result<Answer, ClientError>)> {
        std::mem::take(&mut self.outcomes)
    }

    fn send_batch(&mut self, b: &Batch) {
        let send = self
            .client
            .send_batch(self.now, b.seq, batch_frame(b).unwrap())
            .unwrap();
        self.run(vec![Step::Client(send)]);
    }

    fn request_of(&self, stream: StreamId) -> RequestId {
        self.streams[&stream].0
    }

    /// Moves the clock to `t`, waking each session at each of its deadlines on the way.
    fn advance_to(&mut self, t: Duration) {
        loop {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|d| *d <= t)
                .min();
            let Some(d) = next else { break };
            self.now = d;
            let mut steps: Vec<Step> = self
                .client
                .handle_timeout(d)
                .into_iter()
                .map(Step::Client)
                .collect();
            steps.extend(self.server.handle_timeout(d).into_iter().map(Step::Server));
            self.run(steps);
        }
        self.now = t;
    }

    /// The server's held merges run now.
    fn finish_merges(&mut self) {
        let mut steps = Vec::new();
        for (stream, b) in std::mem::take(&mut self.held_merges) {
            let outcome = self.store.merge(&b);
            steps.extend(
                self.server
                    .handle_merged(self.now, stream, outcome)
                    .into_iter()
                    .map(Step::Server),
            );
        }
        self.run(steps);
    }

    /// The network between them is cut: the client's driver sees the connection time out.
    fn cut(&mut self) {
        let lost = self
            .client
            .handle_lost(self.now, Interrupted::Lost("timed out".into()));
        self.run(lost.into_iter().map(Step::Client).collect());
    }

    fn run(&mut self, steps: Vec<Step>) {
        let mut queue: VecDeque<Step> = steps.into();
        while let Some(step) = queue.pop_front() {
            let more: Vec<Step> = match step {
                Step::Client(a) => self.client_step(a),
                Step::Server(a) => self.server_step(a),
            };
            queue.extend(more);
        }
    }

    fn client_step(&mut self, action: ClientAction) -> Vec<Step> {
        match action {
            ClientAction::Send { request, frame } => {
                if self.server_close.is_some() || self.client_close.is_some() {
                    return vec![];
                }
                let stream = StreamId(self.next_stream);
                self.next_stream += 1;
                self.streams.insert(stream, (request, frame));
                assert!(self.server.wants_stream(), "the driver would not accept it");
                self.server
                    .handle_stream(self.now, stream)
                    .into_iter()
                    .map(Step::Server)
                    .collect()
            }
            ClientAction::Close(close) => {
                self.client_close = Some(close);
                vec![]
            }
            ClientAction::Done { kind, outcome, .. } => {
                self.outcomes.push((kind, outcome));
                vec![]
            }
        }
    }

    fn server_step(&mut self, action: ServerAction) -> Vec<Step> {
        if self.client_close.is_some() {
            // The agent closed the connection: the server driver has nothing left to do.
            return vec![];
        }
        let now = self.now;
        let server = |v: Vec<ServerAction>| v.into_iter().map(Step::Server).collect::<Vec<_>>();
        match action {
            ServerAction::ReadFrame { stream, max } => {
                let bytes = &self.streams[&stream].1;
                let n = self.deliver_bytes.unwrap_or(bytes.len()).min(bytes.len());
                let mut reader = FrameReader::new(max);
                match reader.feed(&bytes[..n]) {
                    Err(e) => server(self.server.handle_frame(now, stream, Err(e))),
                    // Part of a frame: the driver goes on waiting for the rest.
                    Ok(_) if reader.wanted() > 0 => vec![],
                    Ok(_) => {
                        let body = reader.into_body();
                        server(self.server.handle_frame(now, stream, body))
                    }
                }
            }
            ServerAction::Admit { hello } => {
                server(self.server.handle_admission(now, admit(&hello)))
            }
            ServerAction::Merge { stream, batch } if self.merge_at_once => {
                let outcome = self.store.merge(&batch);
                server(self.server.handle_merged(now, stream, outcome))
            }
            ServerAction::Merge { stream, batch } => {
                self.held_merges.push((stream, batch));
                vec![]
            }
            ServerAction::Reply { stream, message } if self.replies_arrive => {
                let mut steps = self.deliver_reply(stream, &message);
                if self.settles {
                    steps.extend(server(self.server.handle_settled(now, stream)));
                }
                steps
            }
            ServerAction::Reply { stream, message } => {
                self.held_replies.push((stream, message));
                vec![]
            }
            ServerAction::EndStream { stream, code } => {
                self.server_log
                    .push(ServerAction::EndStream { stream, code });
                let request = self.request_of(stream);
                let reset = Err(ReplyError::Interrupted(Interrupted::Lost(format!(
                    "stream reset by peer: error {code}"
                ))));
                self.client
                    .handle_reply(now, request, reset)
                    .into_iter()
                    .map(Step::Client)
                    .collect()
            }
            ServerAction::Close { close, why } => {
                self.server_close = Some(close.clone());
                self.server_log.push(ServerAction::Close {
                    close: close.clone(),
                    why,
                });
                let lost = Interrupted::ClosedByPeer {
                    code: close.code,
                    reason: close.reason,
                };
                self.client
                    .handle_lost(now, lost)
                    .into_iter()
                    .map(Step::Client)
                    .collect()
            }
            other => {
                self.server_log.push(other);
                vec![]
            }
        }
    }

    /// The answer as the agent's driver reads it: one frame, through the reader.
    fn deliver_reply(&mut self, stream: StreamId, message: &CollectorMessage) -> Vec<Step> {
        let frame = wire::encode_frame(message).unwrap();
        let mut reader = FrameReader::new(MAX_REPLY);
        reader.feed(&frame).unwrap();
        let request = self.request_of(stream);
        self.client
            .handle_reply(self.now, request, Ok(reader.into_body().unwrap()))
            .into_iter()
            .map(Step::Client)
            .collect()
    }

    fn closes(&self) -> Vec<&Close> {
        self.server_log
            .iter()
            .filter_map(|a| match a {
                ServerAction::Close { close, .. } => Some(close),
                _ => None,
            })
            .collect()
    }
}

fn close(code: u32, reason: &str) -> Close {
    Close {
        code,
        reason: reason.into(),
    }
}

#[test]
fn batches_are_merged_and_acked_in_turn() {
    let mut sim = Sim::admitted(secs(1), Store::default());
    sim.send_batch(&batch(1, 3));
    sim.send_batch(&batch(2, 4));
    assert_eq!(
        sim.take_outcomes(),
        [
            (RequestKind::Batch { seq: 1 }, Ok(Answer::Acked { seq: 1 })),
            (RequestKind::Batch { seq: 2 }, Ok(Answer::Acked { seq: 2 })),
        ]
    );
    assert_eq!(sim.store.sessions, 7);
    assert!(sim.server_log.is_empty(), "{:?}", sim.server_log);
    // Every answer was received: nothing left to wait for on either side.
    assert_eq!(
        (sim.client.poll_timeout(), sim.server.poll_timeout()),
        (None, None)
    );
}

#[test]
fn a_duplicate_batch_is_merged_once_and_acked_twice() {
    let mut sim = Sim::admitted(secs(1), Store::default());
    let b = batch(9, 5);
    sim.send_batch(&b);
    sim.send_batch(&b);
    assert_eq!(
        sim.take_outcomes(),
        [
            (RequestKind::Batch { seq: 9 }, Ok(Answer::Acked { seq: 9 })),
            (RequestKind::Batch { seq: 9 }, Ok(Answer::Acked { seq: 9 })),
        ]
    );
    assert_eq!(sim.store.sessions, 5);
    assert_eq!(sim.store.seen.len(), 1);
}

#[test]
fn a_reconnect_in_the_middle_of_a_batch_resends_it_and_it_is_merged_once() {
    let mut sim = Sim::admitted(secs(1), Store::default());
    // The batch arrives and is merged, but the network is cut before the Ack gets back.
    sim.replies_arrive = false;
    sim.send_batch(&batch(4, 6));
    assert_eq!(sim.store.sessions, 6);
    assert_eq!(
        sim.held_replies,
        [(StreamId(1), CollectorMessage::Ack { seq: 4 })]
    );
    sim.advance_to(secs(2));
    sim.cut();
    assert_eq!(
        sim.take_outcomes(),
        [(
            RequestKind::Batch { seq: 4 },
            Err(ClientError::Link("timed out".into()))
        )]
    );
    assert!(sim.client.is_closed());
    // The agent connects again and resends: acknowledged, not merged again.
    let mut again = Sim::admitted(secs(3), std::mem::take(&mut sim.store));
    again.send_batch(&batch(4, 6));
    assert_eq!(
        again.take_outcomes(),
        [(RequestKind::Batch { seq: 4 }, Ok(Answer::Acked { seq: 4 }))]
    );
    assert_eq!(again.store.sessions, 6);
}

#[test]
fn a_refusal_with_retry_keeps_the_batch_and_the_connection() {
    let store = Store {
        failing: 1,
        ..Store::default()
    };
    let mut sim = Sim::admitted(secs(1), store);
    sim.send_batch(&batch(1, 2));
    assert_eq!(
        sim.take_outcomes(),
        [(
            RequestKind::Batch { seq: 1 },
            Err(ClientError::RetryLater {
                reason: "batch 1: the collector cannot store batches right now".into()
            })
        )]
    );
    assert!(sim.client.is_ready() && sim.client_close.is_none());
    assert_eq!(sim.store.sessions, 0);
    sim.send_batch(&batch(1, 2));
    assert_eq!(
        sim.take_outcomes(),
        [(RequestKind::Batch { seq: 1 }, Ok(Answer::Acked { seq: 1 }))]
    );
    assert_eq!(sim.store.sessions, 2);
}

#[test]
fn an_ack_for_another_batch_closes_the_connection_and_the_batch_stays_unacked() {
    let mut sim = Sim::admitted(secs(1), Store::default());
    let Ok(ClientAction::Send { request, .. }) = sim.client.send_batch(secs(1), 5, vec![]) else {
        panic!("a ready session sends");
    };
    let wrong = wire::encode_frame(&CollectorMessage::Ack { seq: 6 }).unwrap();
    let actions = sim
        .client
        .handle_reply(secs(1), request, Ok(wrong[4..].to_vec()));
    assert_eq!(
        actions,
        [
            ClientAction::Done {
                request,
                kind: RequestKind::Batch { seq: 5 },
                outcome: Err(ClientError::Protocol(
                    "sent batch 5, got the ack for 6".into()
                )),
            },
            ClientAction::Close(close(CLOSE_DONE, "unexpected ack")),
        ]
    );
    assert!(sim.client.is_closed());
    assert_eq!(
        sim.client.send_batch(secs(1), 6, vec![]),
        Err(ClientError::NotReady)
    );
}

#[test]
fn the_server_closes_a_connection_without_a_hello_after_ten_seconds() {
    // No stream at all.
    let mut s = ServerSession::new(secs(5));
    assert_eq!(s.poll_timeout(), Some(secs(15)));
    assert_eq!(s.handle_timeout(secs(15) - us(1)), []);
    let closed = s.handle_timeout(secs(15));
    assert!(
        matches!(&closed[..], [ServerAction::Close { close: c, .. }] if *c == close(CLOSE_PROTOCOL, "no Hello in time")),
        "{closed:?}"
    );
    assert!(s.is_closed());
    assert_eq!(s.poll_timeout(), None);
    // A first stream with half a length prefix: the same deadline, from the handshake.
    let mut sim = Sim::connect_with(
        secs(5),
        Store::default(),
        &hello("agent-1", "token-1"),
        |s| s.deliver_bytes = Some(2),
    );
    assert_eq!(sim.server.poll_timeout(), Some(secs(15)));
    sim.advance_to(secs(15) - us(1));
    assert!(sim.server_log.is_empty());
    sim.advance_to(secs(15));
    assert_eq!(sim.closes(), [&close(CLOSE_PROTOCOL, "no Hello in time")]);
    // The agent sees the connection closed under its Hello (its own deadline is 30 s).
    assert_eq!(
        sim.take_outcomes(),
        [(
            RequestKind::Hello,
            Err(ClientError::Link(
                "closed by peer: no Hello in time (code 2)".into()
            ))
        )]
    );
}

#[test]
fn the_agent_gives_up_on_a_silent_collector_after_thirty_seconds() {
    // The collector reads the Hello but never answers it (its driver hangs on the check).
    let (mut client, send) = ClientSession::new(secs(100), &hello("agent-1", "token-1")).unwrap();
    let ClientAction::Send { request, .. } = send else {
        panic!("the first action sends the Hello, got {send:?}");
    };
    assert_eq!(client.poll_timeout(), Some(secs(130)));
    assert_eq!(client.handle_timeout(secs(130) - us(1)), []);
    assert_eq!(
        client.handle_timeout(secs(130)),
        [
            ClientAction::Done {
                request,
                kind: RequestKind::Hello,
                outcome: Err(ClientError::Timeout(secs(30))),
            },
            ClientAction::Close(close(CLOSE_DONE, "hello failed")),
        ]
    );
    assert!(client.is_closed() && client.poll_timeout().is_none());
}

#[test]
fn a_slow_batch_frame_loses_its_stream_after_a_minute_and_the_connection_goes_on() {
    let mut sim = Sim::admitted(secs(10), Store::default());
    // Seven bytes of the frame, then nothing.
    sim.deliver_bytes = Some(7);
    sim.send_batch(&batch(1, 3));
    assert_eq!(sim.server.poll_timeout(), Some(secs(70)));
    sim.advance_to(secs(70) - us(1));
    assert!(sim.server_log.is_empty() && sim.outcomes.is_empty());
    sim.advance_to(secs(70));
    assert_eq!(
        sim.server_log,
        [ServerAction::EndStream {
            stream: StreamId(1),
            code: CLOSE_PROTOCOL
        }]
    );
    assert_eq!(
        sim.take_outcomes(),
        [(
            RequestKind::Batch { seq: 1 },
            Err(ClientError::Link("stream reset by peer: error 2".into()))
        )]
    );
    // The server kept the connection; this agent's driver reconnects (its own choice), and
    // a whole frame on the server's side goes through.
    assert!(!sim.server.is_closed() && sim.server.wants_stream());
    assert_eq!(sim.store.sessions, 0);
    let mut again = Sim::admitted(secs(71), std::mem::take(&mut sim.store));
    again.send_batch(&batch(1, 3));
    assert_eq!(again.store.sessions, 3);
}

#[test]
fn an_unanswered_batch_times_out_after_two_minutes_and_its_resend_is_merged_once() {
    let mut sim = Sim::admitted(secs(0), Store::default());
    // The store is slow: the merge finishes after the agent stopped waiting.
    sim.merge_at_once = false;
    sim.send_batch(&batch(3, 8));
    assert_eq!(sim.client.poll_timeout(), Some(secs(120)));
    sim.advance_to(secs(120) - us(1));
    assert!(sim.outcomes.is_empty());
    sim.advance_to(secs(120));
    assert_eq!(
        sim.take_outcomes(),
        [(
            RequestKind::Batch { seq: 3 },
            Err(ClientError::Timeout(secs(120)))
        )]
    );
    assert_eq!(
        sim.client_close,
        Some(close(CLOSE_DONE, "no reply in time"))
    );
    // The merge commits after all; its Ack goes to a closed connection.
    sim.finish_merges();
    assert_eq!(sim.store.sessions, 8);
    let mut again = Sim::admitted(secs(121), std::mem::take(&mut sim.store));
    again.send_batch(&batch(3, 8));
    assert_eq!(
        again.take_outcomes(),
        [(RequestKind::Batch { seq: 3 }, Ok(Answer::Acked { seq: 3 }))]
    );
    assert_eq!(again.store.sessions, 8);
}

#[test]
fn shutdown_lets_a_merge_in_flight_answer_then_closes() {
    let mut sim = Sim::admitted(secs(0), Store::default());
    sim.merge_at_once = false;
    sim.send_batch(&batch(1, 2));
    let shut = sim.server.handle_shutdown(secs(5));
    assert_eq!(shut, [], "a merge is in flight: no close yet");
    assert!(!sim.server.wants_stream());
    // The merge finishes a second later: the Ack goes out, then the connection closes.
    sim.advance_to(secs(6));
    sim.finish_merges();
    assert_eq!(
        sim.take_outcomes(),
        [(RequestKind::Batch { seq: 1 }, Ok(Answer::Acked { seq: 1 }))]
    );
    assert_eq!(sim.closes(), [&close(CLOSE_DONE, "collector stopping")]);
    assert_eq!(sim.store.sessions, 2);
}

#[test]
fn shutdown_closes_after_thirty_seconds_whatever_is_still_merging() {
    let mut sim = Sim::admitted(secs(0), Store::default());
    sim.merge_at_once = false;
    sim.send_batch(&batch(1, 2));
    // A second request still arriving is dropped at shutdown (the agent resends it).
    sim.deliver_bytes = Some(3);
    sim.send_batch(&batch(2, 2));
    sim.advance_to(secs(5));
    let shut = sim.server.handle_shutdown(secs(5));
    assert_eq!(
        shut,
        [ServerAction::EndStream {
            stream: StreamId(2),
            code: CLOSE_DONE
        }]
    );
    // (The agent's driver is not told of the reset here: it learns of both at the close.)
    assert_eq!(sim.server.poll_timeout(), Some(secs(35)));
    assert_eq!(sim.server.handle_timeout(secs(35) - us(1)), []);
    sim.advance_to(secs(35));
    assert_eq!(sim.closes(), [&close(CLOSE_DONE, "collector stopping")]);
    assert_eq!(
        sim.take_outcomes(),
        [
            (
                RequestKind::Batch { seq: 1 },
                Err(ClientError::Link(
                    "closed by peer: collector stopping (code 0)".into()
                ))
            ),
            (
                RequestKind::Batch { seq: 2 },
                Err(ClientError::Link(
                    "closed by peer: collector stopping (code 0)".into()
                ))
            ),
        ]
    );
    // The merge finishing now has no one to answer.
    assert_eq!(
        sim.server
            .handle_merged(secs(36), StreamId(1), BatchOutcome::Merged),
        []
    );
}

#[test]
fn a_wrong_token_is_refused_and_the_close_waits_for_the_refusal_to_arrive() {
    // The refusal reaches the agent and the driver says so: the close follows at once.
    let mut sim = Sim::connect(secs(0), Store::default(), &hello("agent-1", "token-2"));
    let reason = "unknown agent \"agent-1\" or wrong token";
    assert_eq!(
        sim.take_outcomes(),
        [(
            RequestKind::Hello,
            Err(ClientError::Refused {
                reason: reason.into()
            })
        )]
    );
    assert_eq!(sim.client_close, Some(close(CLOSE_DONE, "refused")));
    // The agent's driver is slow to confirm: the server waits two seconds for it.
    let mut sim = Sim::connect_with(
        secs(0),
        Store::default(),
        &hello("agent-9", "token-1"),
        |s| {
            s.settles = false;
        },
    );
    assert!(sim.closes().is_empty());
    assert_eq!(sim.server.poll_timeout(), Some(secs(2)));
    assert_eq!(sim.server.handle_timeout(secs(2) - us(1)), []);
    let closed = sim.server.handle_timeout(secs(2));
    let reason = "unknown agent \"agent-9\" or wrong token";
    assert!(
        matches!(&closed[..], [ServerAction::Close { close: c, .. }] if *c == close(CLOSE_REFUSED, reason)),
        "{closed:?}"
    );
}

#[test]
fn a_refusing_close_reads_as_a_refusal_on_the_agent() {
    let (mut client, _) = ClientSession::new(secs(0), &hello("agent-1", "token-1")).unwrap();
    let lost = client.handle_lost(
        secs(1),
        Interrupted::ClosedByPeer {
            code: CLOSE_REFUSED,
            reason: "wrong token".into(),
        },
    );
    assert_eq!(
        lost,
        [ClientAction::Done {
            request: RequestId(0),
            kind: RequestKind::Hello,
            outcome: Err(ClientError::Refused {
                reason: "wrong token".into()
            }),
        }]
    );
}

#[test]
fn whatever_comes_first_must_be_a_hello_of_this_version() {
    // A batch first: refused, then closed as a refusal.
    let mut s = ServerSession::new(secs(0));
    assert!(s.wants_stream());
    assert_eq!(
        s.handle_stream(secs(0), StreamId(0)),
        [ServerAction::ReadFrame {
            stream: StreamId(0),
            max: 64 * 1024
        }]
    );
    assert!(!s.wants_stream(), "one stream before the Hello");
    let body = postcard::to_stdvec(&AgentMessage::Batch(batch(1, 1))).unwrap();
    let refused = CollectorMessage::Refused {
        reason: "the first request must be a Hello".into(),
        retry: false,
    };
    assert_eq!(
        s.handle_frame(secs(0), StreamId(0), Ok(body)),
        [ServerAction::Reply {
            stream: StreamId(0),
            message: refused
        }]
    );
    assert!(matches!(
        &s.handle_settled(secs(0), StreamId(0))[..],
        [ServerAction::Close { close: c, .. }] if c.code == CLOSE_REFUSED
    ));
    // Another protocol version: refused without asking the driver.
    let mut s = ServerSession::new(secs(0));
    s.handle_stream(secs(0), StreamId(0));
    let future = Hello {
        protocol_version: PROTOCOL_VERSION + 1,
        ..hello("agent-1", "token-1")
    };
    let body = postcard::to_stdvec(&AgentMessage::Hello(future)).unwrap();
    let refused = CollectorMessage::Refused {
        reason: "this collector speaks protocol 1, the agent 2".into(),
        retry: false,
    };
    assert_eq!(
        s.handle_frame(secs(0), StreamId(0), Ok(body)),
        [ServerAction::Reply {
            stream: StreamId(0),
            message: refused
        }]
    );
    // Garbage, or an oversized Hello: closed as a protocol error.
    for (frame, reason) in [
        (Ok(vec![0xff, 0xff]), "undecodable frame"),
        (
            Err(FrameError::TooLarge {
                len: 70_000,
                max: 65_536,
            }),
            "expected a Hello frame",
        ),
    ] {
        let mut s = ServerSession::new(secs(0));
        s.handle_stream(secs(0), StreamId(0));
        assert!(matches!(
            &s.handle_frame(secs(0), StreamId(0), frame)[..],
            [ServerAction::Close { close: c, .. }] if *c == close(CLOSE_PROTOCOL, reason)
        ));
    }
}

#[test]
fn broken_frames_of_an_admitted_agent_close_its_connection() {
    for (frame, reason) in [
        (Ok(vec![1, 9, 9]), "undecodable frame"),
        (
            Ok(
                postcard::to_stdvec(&AgentMessage::CompressedBatch(b"not deflate".to_vec()))
                    .unwrap(),
            ),
            "undecodable frame",
        ),
        (
            Err(FrameError::TooLarge {
                len: 40_000_000,
                max: 33_554_432,
            }),
            "frame of 40000000 bytes is over the limit",
        ),
    ] {
        let mut sim = Sim::admitted(secs(0), Store::default());
        let mut s = std::mem::replace(&mut sim.server, ServerSession::new(secs(0)));
        assert_eq!(
            s.handle_stream(secs(1), StreamId(7)),
            [ServerAction::ReadFrame {
                stream: StreamId(7),
                max: 32 * 1024 * 1024
            }]
        );
        let actions = s.handle_frame(secs(1), StreamId(7), frame);
        assert!(
            matches!(&actions[..], [ServerAction::Close { close: c, .. }] if *c == close(CLOSE_PROTOCOL, reason)),
            "{actions:?}"
        );
    }
    // A stream that ends mid-frame is only let go.
    let mut sim = Sim::admitted(secs(0), Store::default());
    sim.server.handle_stream(secs(1), StreamId(7));
    assert_eq!(
        sim.server.handle_frame(
            secs(1),
            StreamId(7),
            Err(FrameError::Truncated { got: 2, len: 4 })
        ),
        [ServerAction::EndStream {
            stream: StreamId(7),
            code: CLOSE_DONE
        }]
    );
    assert!(!sim.server.is_closed());
}

#[test]
fn health_is_noted_and_a_late_answer_keeps_the_connection() {
    let mut sim = Sim::admitted(secs(0), Store::default());
    let health = AgentHealth {
        at_ms: 5,
        sessions_open: 2,
        ..Default::default()
    };
    let send = sim.client.send_health(secs(0), &health).unwrap();
    sim.run(vec![Step::Client(send)]);
    assert_eq!(
        sim.take_outcomes(),
        [(RequestKind::Health, Ok(Answer::Noted))]
    );
    assert_eq!(
        sim.server_log,
        [ServerAction::NoteHealth {
            health: health.clone()
        }]
    );
    // No answer within thirty seconds: a timeout, and the connection stays.
    let send = sim.client.send_health(secs(10), &health).unwrap();
    assert!(matches!(send, ClientAction::Send { .. }));
    assert_eq!(sim.client.poll_timeout(), Some(secs(40)));
    assert_eq!(sim.client.handle_timeout(secs(40) - us(1)), []);
    let late = sim.client.handle_timeout(secs(40));
    assert!(
        matches!(&late[..], [ClientAction::Done { kind: RequestKind::Health, outcome: Err(ClientError::Timeout(t)), .. }] if *t == secs(30)),
        "{late:?}"
    );
    assert!(sim.client.is_ready());
}

#[test]
fn datagrams_count_only_from_an_admitted_agent() {
    let sample = LiveSample {
        at_ms: 7,
        entries: vec![],
    };
    let bytes = postcard::to_stdvec(&sample).unwrap();
    let mut s = ServerSession::new(secs(0));
    assert_eq!(s.handle_datagram(secs(0), &bytes), []);
    let mut sim = Sim::admitted(secs(0), Store::default());
    assert_eq!(
        sim.server.handle_datagram(secs(1), &bytes),
        [ServerAction::Live { sample }]
    );
    assert!(matches!(
        &sim.server.handle_datagram(secs(1), &[0xff; 3])[..],
        [ServerAction::DatagramRejected { .. }]
    ));
}

#[test]
fn a_welcome_of_another_version_or_an_ack_instead_is_a_protocol_error() {
    for (reply, error, reason) in [
        (
            CollectorMessage::Welcome {
                protocol_version: 2,
            },
            "the collector speaks protocol 2, this agent 1",
            "version mismatch",
        ),
        (
            CollectorMessage::Ack { seq: 1 },
            "the collector answered Hello with Ack { seq: 1 }",
            "unexpected ack",
        ),
    ] {
        let (mut client, _) = ClientSession::new(secs(0), &hello("agent-1", "token-1")).unwrap();
        let body = postcard::to_stdvec(&reply).unwrap();
        assert_eq!(
            client.handle_reply(secs(1), RequestId(0), Ok(body)),
            [
                ClientAction::Done {
                    request: RequestId(0),
                    kind: RequestKind::Hello,
                    outcome: Err(ClientError::Protocol(error.into())),
                },
                ClientAction::Close(close(CLOSE_DONE, reason)),
            ]
        );
    }
}

#[test]
fn close_codes_keep_their_numbers_on_the_wire() {
    // Agents and collectors of other versions read these numbers: they never change.
    assert_eq!((CLOSE_DONE, CLOSE_REFUSED, CLOSE_PROTOCOL), (0, 1, 2));
    // A stream the session did not ask for (after shutdown, before admission) is let go.
    let mut s = ServerSession::new(secs(0));
    s.handle_stream(secs(0), StreamId(0));
    assert_eq!(
        s.handle_stream(secs(0), StreamId(1)),
        [ServerAction::EndStream {
            stream: StreamId(1),
            code: CLOSE_DONE
        }]
    );
}
