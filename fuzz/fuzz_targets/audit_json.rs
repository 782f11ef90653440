//! Audit JSON as the webhook, the log tailer and `scan` receive it (an Event or an EventList), mapped to
//! `AuditEvent`s, encoded and decoded again, and run through every detector.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use palisade_detect::{Engine, Event};
use palisade_schemas::{AuditEvent, Codec, split_events};

static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine::new(&Default::default()).unwrap());
static CODEC: LazyLock<Codec<AuditEvent>> = LazyLock::new(|| Codec::new().unwrap());

fuzz_target!(|data: &[u8]| {
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(events) = split_events(&document) else { return };
    for raw in events {
        let Ok(event) = AuditEvent::from_k8s_json(raw, "fuzz") else { continue };
        let encoded = CODEC.encode(&event).expect("every mapped event encodes");
        assert_eq!(CODEC.decode(&encoded).expect("and decodes"), event);
        let _ = event.is_dry_run();
        let _ = ENGINE.process(&Event::Audit(&event), 0);
    }
});
