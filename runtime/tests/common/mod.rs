//! Helpers shared by the bus tests on the real broker.
#![allow(dead_code)]

use std::time::Duration;

use palisade_runtime::Subscription;

/// A topic or group name no other run uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("test.{name}.{}.{nanos}", std::process::id())
}

/// The next delivery, within 30 s.
pub async fn next(subscription: &mut Subscription) -> palisade_runtime::Delivery {
    tokio::time::timeout(Duration::from_secs(30), subscription.next())
        .await
        .expect("a message within 30 s")
        .expect("subscription open")
        .expect("no Kafka error")
}
