use palisade_schemas::{NodeEvent, NodeEventKind};

use super::{Eicar, TEST_TRIGGER_NAME};
use crate::unit::{Event, StatelessDetector};

fn exec(executable: &str, argv: &[&str]) -> NodeEvent {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/fixtures/node_event.v1.json"))
        .unwrap();
    let mut event: NodeEvent = serde_json::from_str(&text).unwrap();
    event.kind = NodeEventKind::Exec;
    event.executable = Some(executable.to_owned());
    event.argv = argv.iter().map(|a| (*a).to_owned()).collect();
    event
}

#[test]
fn fires_for_the_palisade_and_microsoft_trigger_names_and_the_eicar_string() {
    let ours = exec(&format!("/tmp/x/{TEST_TRIGGER_NAME}"), &[TEST_TRIGGER_NAME, "palisade", "test"]);
    assert_eq!(Eicar.detect(&Event::Node(&ours)).len(), 1);
    let microsoft = exec("/root/asc_alerttest_662jfi039n", &["./asc_alerttest_662jfi039n", "testing", "eicar", "pipe"]);
    assert_eq!(Eicar.detect(&Event::Node(&microsoft)).len(), 1);
    let string = exec("/bin/echo", &["echo", r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"]);
    assert_eq!(Eicar.detect(&Event::Node(&string)).len(), 1);
}

#[test]
fn does_not_fire_for_look_alikes() {
    let grep = exec("/usr/bin/grep", &["grep", TEST_TRIGGER_NAME, "notes.txt"]);
    assert!(Eicar.detect(&Event::Node(&grep)).is_empty(), "the name as an argument is not a run of the trigger");
    let similar = exec("/tmp/palisade_alerttest", &["palisade_alerttest"]);
    assert!(Eicar.detect(&Event::Node(&similar)).is_empty());
    let mut not_exec = exec(&format!("/tmp/{TEST_TRIGGER_NAME}"), &[TEST_TRIGGER_NAME]);
    not_exec.kind = NodeEventKind::FileOpen;
    assert!(Eicar.detect(&Event::Node(&not_exec)).is_empty());
}
