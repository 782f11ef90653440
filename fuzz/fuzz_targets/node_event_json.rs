//! Node events as `scan --node` reads them (JSON lines), run through every detector, and through the NodeEvent
//! codec (the hand-written datum writer and reader) both ways.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use palisade_detect::{Engine, Event};
use palisade_schemas::{Codec, NodeEvent};

static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine::new(&Default::default()).unwrap());
static CODEC: LazyLock<Codec<NodeEvent>> = LazyLock::new(|| Codec::new().unwrap());

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<NodeEvent>(data) else { return };
    let encoded = CODEC.encode(&event).expect("every node event encodes");
    assert_eq!(CODEC.decode(&encoded).expect("and decodes"), event);
    let _ = ENGINE.process(&Event::Node(&event), 0);
});
