//! Audit events as managed clusters deliver them (AKS resource-log envelopes, GKE Cloud Audit Logs entries), as
//! `palisade audit`'s Kafka sources read them: unwrapped, then every event parsed as the webhook parses one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_schemas::AuditEvent;
use palisade_schemas::managed_audit::{Envelope, unwrap};

fuzz_target!(|data: &[u8]| {
    for envelope in [Envelope::Aks, Envelope::Gke, Envelope::Audit] {
        let Ok(contents) = unwrap(envelope, data) else { continue };
        for unwrapped in contents.events.into_iter().flatten() {
            let _ = AuditEvent::from_k8s_json(&unwrapped.event, unwrapped.cluster.as_deref().unwrap_or("fuzz"));
        }
    }
});
