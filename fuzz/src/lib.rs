//! The fuzz targets' bodies as plain functions: cargo-fuzz calls them from `fuzz_targets/`
//! (nightly), and `tests/e2e/fault_mangled.rs` calls them on stable with mutated samples.
//! Each must return (never panic, never allocate without bound) whatever the bytes.

use earshot_agent::ingest::SessionConfig;
use earshot_agent::route::{Router, RoutingConfig};
use earshot_common::sketch::UniqueSketch;
use earshot_common::wire::{self, AgentMessage, CollectorMessage, LiveSample};
use std::sync::LazyLock;

/// A HAProxy log line, as the agent's parser and the default routing see it.
pub fn log_line(data: &[u8]) {
    static ROUTER: LazyLock<Router> = LazyLock::new(|| {
        Router::new(
            &RoutingConfig::default(),
            SessionConfig::default().patterns(),
        )
    });
    if let Ok(Some(record)) = earshot_agent::logline::parse_line(data)
        && let Some(request) = &record.request
    {
        let _ = ROUTER.route(
            record.backend,
            Some(request.method),
            request.path,
            request.authority,
        );
        let (_, name) = earshot_agent::layout::dir_and_name(request.path);
        let _ = earshot_agent::layout::rendition_of_name(name);
    }
}

/// A frame body from the network, in every role it can have: an agent's message (and the
/// batch inside a compressed one), a collector's reply, a live-sample datagram.
pub fn wire_frame(data: &[u8]) {
    if let Ok(AgentMessage::CompressedBatch(z)) = wire::decode_body::<AgentMessage>(data) {
        let _ = wire::decompress_batch(&z);
    }
    let _ = wire::decompress_batch(data);
    let _ = wire::decode_body::<CollectorMessage>(data);
    let _ = postcard::from_bytes::<LiveSample>(data);
}

/// A stored or received sketch; a decoded one must also survive merging and counting.
pub fn sketch(data: &[u8]) {
    if let Ok(s) = UniqueSketch::from_bytes(data) {
        let mut m = UniqueSketch::new();
        m.insert(1);
        m.merge(&s);
        let _ = s.estimate();
        let _ = UniqueSketch::from_bytes(&s.to_bytes());
    }
}
