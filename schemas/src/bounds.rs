//! Size bounds for records built from what the watched cluster sends. A 300 KB ConfigMap logged at
//! RequestResponse makes an audit event over Kafka's 1 MB record limit; a record the bus cannot take must be made
//! smaller where it is built, keeping it valid JSON for the detectors, and say that it was.

use serde_json::Value;

/// The most an audit event's verbatim JSON may hold; its request and response objects are parts of it, so the
/// encoded `AuditEvent` stays under about twice this, well below Kafka's default 1 MB record limit.
pub const MAX_AUDIT_EVENT_JSON_BYTES: usize = 192 * 1024;

/// Annotation set on an audit event that was shrunk: the size in bytes of the event as it arrived.
pub const TRUNCATED_FROM_BYTES: &str = "palisade.io/truncated-from-bytes";

/// The most evidence text one alert carries in all: an alert folds up to five evidence events, each up to an audit
/// event's bound, and the record must stay well inside Kafka's 1 MB.
pub const MAX_ALERT_EVIDENCE_BYTES: usize = 384 * 1024;

/// Strings are never cut below this many bytes.
const MIN_STRING_BYTES: usize = 256;

/// Cuts `text` to at most `keep` bytes on a character boundary, saying how much went.
fn cut(text: &str, keep: usize) -> String {
    let mut end = keep.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...[truncated {} bytes]", &text[..end], text.len() - end)
}

fn string_lengths(value: &Value, lengths: &mut Vec<usize>) {
    match value {
        Value::String(text) => lengths.push(text.len()),
        Value::Array(items) => items.iter().for_each(|item| string_lengths(item, lengths)),
        Value::Object(map) => map.values().for_each(|item| string_lengths(item, lengths)),
        _ => {}
    }
}

fn cap_strings(value: &mut Value, cap: usize) {
    match value {
        Value::String(text) if text.len() > cap => *text = cut(text, cap),
        Value::Array(items) => items.iter_mut().for_each(|item| cap_strings(item, cap)),
        Value::Object(map) => map.values_mut().for_each(|item| cap_strings(item, cap)),
        _ => {}
    }
}

fn cap_arrays(value: &mut Value, length: usize) {
    match value {
        Value::Array(items) => {
            items.truncate(length);
            items.iter_mut().for_each(|item| cap_arrays(item, length));
        }
        Value::Object(map) => map.values_mut().for_each(|item| cap_arrays(item, length)),
        _ => {}
    }
}

/// Array lengths tried, longest first, when cutting strings is not enough.
const ARRAY_CAPS: [usize; 10] = [4096, 1024, 256, 64, 32, 16, 8, 4, 2, 1];

/// Makes `value`'s JSON text at most `max_bytes` long, if it is longer: first by cutting its longest string values
/// to one common length (the shape, keys and short values stay, so detectors still read it); then, if that is not
/// enough (thousands of small items: env variables, subjects, resource names), by cutting every array to the
/// longest common length that fits, so short lists (containers, rules) keep their items; only as a last resort by
/// replacing it with `{"palisade.truncated": true, "head": "..."}` holding the start of its text. Returns the
/// original length when it shrank the value.
pub fn shrink_json(value: &mut Value, max_bytes: usize) -> Option<usize> {
    let original = value.to_string().len();
    if original <= max_bytes {
        return None;
    }
    let mut lengths = Vec::new();
    string_lengths(value, &mut lengths);
    let total: usize = lengths.iter().sum();
    let structure = original.saturating_sub(total);
    // Largest common cap whose strings (plus the cut marker) fit beside the structure.
    let fits = |cap: usize| {
        let strings: usize = lengths.iter().map(|&len| if len > cap { cap + 32 } else { len }).sum();
        structure + strings <= max_bytes
    };
    let (mut low, mut high) = (MIN_STRING_BYTES, lengths.iter().copied().max().unwrap_or(0));
    if high > low && fits(low) {
        while low < high {
            let middle = low + (high - low).div_ceil(2);
            if fits(middle) { low = middle } else { high = middle - 1 }
        }
        cap_strings(value, low);
    }
    if value.to_string().len() > max_bytes {
        for cap in ARRAY_CAPS {
            let mut candidate = value.clone();
            cap_arrays(&mut candidate, cap);
            if candidate.to_string().len() <= max_bytes {
                *value = candidate;
                break;
            }
        }
    }
    if value.to_string().len() > max_bytes {
        let text = value.to_string();
        let head = cut(&text, max_bytes.saturating_sub(128) / 2);
        *value = serde_json::json!({"palisade.truncated": true, "head": head});
    }
    Some(original)
}

/// `text` within `max_bytes`: as it is when it fits; shrunk with `shrink_json` when it is JSON (evidence events
/// are), so it stays readable; otherwise cut on a character boundary with a marker.
pub fn fit_text(text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(mut value) => {
            shrink_json(&mut value, max_bytes);
            value.to_string()
        }
        Err(_) => cut(&text, max_bytes.saturating_sub(40)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn evidence_is_fitted_as_json_or_cut_as_text() {
        let event = json!({"kind": "Event", "requestObject": {"data": "z".repeat(50_000)}}).to_string();
        let fitted = fit_text(event, 4096);
        assert!(fitted.len() <= 4096);
        assert_eq!(serde_json::from_str::<Value>(&fitted).unwrap()["kind"], "Event");
        let plain = fit_text("p".repeat(10_000), 1000);
        assert!(plain.len() <= 1000 && plain.ends_with("bytes]"), "{plain}");
        assert_eq!(fit_text("short".into(), 1000), "short");
    }

    #[test]
    fn small_values_are_left_alone() {
        let mut value = json!({"a": "b", "n": [1, 2, 3]});
        assert_eq!(shrink_json(&mut value, 1024), None);
        assert_eq!(value, json!({"a": "b", "n": [1, 2, 3]}));
    }

    #[test]
    fn long_strings_are_cut_and_the_shape_is_kept() {
        let big = "x".repeat(300_000);
        let mut value =
            json!({"kind": "ConfigMap", "metadata": {"name": "dashboards"}, "data": {"a.json": big, "b": "short"}});
        let original = value.to_string().len();
        assert_eq!(shrink_json(&mut value, 16 * 1024), Some(original));
        assert!(value.to_string().len() <= 16 * 1024);
        assert_eq!(value["kind"], "ConfigMap");
        assert_eq!(value["data"]["b"], "short");
        let cut_text = value["data"]["a.json"].as_str().unwrap();
        let (kept, marker) = cut_text.split_once("...[truncated ").unwrap();
        let dropped: usize = marker.trim_end_matches(" bytes]").parse().unwrap();
        assert_eq!(kept.len() + dropped, 300_000, "the marker says how much went");
    }

    #[test]
    fn multibyte_text_is_cut_on_a_character_boundary() {
        let mut value = json!({"s": "\u{20ac}".repeat(100_000)});
        assert!(shrink_json(&mut value, 8 * 1024).is_some());
        assert!(value.to_string().len() <= 8 * 1024);
    }

    #[test]
    fn long_lists_are_cut_before_short_ones() {
        // A privileged pod padded with thousands of environment variables: the container and its flag stay.
        let env: Vec<Value> = (0..5_000).map(|i| json!({"name": format!("V{i}"), "value": "x"})).collect();
        let mut value = json!({"kind": "Pod", "spec": {"containers": [
            {"name": "a", "image": "busybox", "env": env},
            {"name": "b", "image": "busybox", "securityContext": {"privileged": true}}]}});
        assert!(shrink_json(&mut value, 16 * 1024).is_some());
        assert!(value.to_string().len() <= 16 * 1024);
        assert_eq!(value["spec"]["containers"][1]["securityContext"]["privileged"], true);
        assert!(value["spec"]["containers"][0]["env"].as_array().unwrap().len() < 5_000);
    }

    #[test]
    fn what_cannot_be_shaped_falls_back_to_the_head_of_the_text() {
        let deep = (0..120).fold(json!("x"), |inner, _| json!({"k": [inner, "y".repeat(300)]}));
        let mut value = json!({"deep": deep});
        assert!(shrink_json(&mut value, 1024).is_some());
        assert!(value.to_string().len() <= 1024);
    }
}
