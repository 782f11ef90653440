//! Maps `audit.k8s.io/v1` (and v1beta1) Event JSON onto `AuditEvent`, keeping the event verbatim. Also splits
//! the shapes audit JSON arrives in: one Event, or an EventList.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::types::AuditEvent;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuditParseError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not an audit.k8s.io Event or EventList (kind `{0}`)")]
    NotAnEvent(String),
    #[error("audit event lacks `{0}`")]
    Missing(&'static str),
    #[error("audit event has an unparsable timestamp in `{field}`: {value}")]
    Timestamp { field: &'static str, value: String },
    #[error("EventList without an `items` array")]
    ListWithoutItems,
}

/// Splits a JSON document into the audit events it carries (an `EventList` or one `Event`).
pub fn split_events(document: &Value) -> Result<Vec<&Value>, AuditParseError> {
    match document.get("kind").and_then(Value::as_str) {
        // An EventList whose items are missing or not an array carried nothing readable: an error, not an empty
        // success (the webhook would answer 200 to a batch it dropped).
        Some("EventList") => match document.get("items") {
            Some(Value::Array(items)) => Ok(items.iter().collect()),
            _ => Err(AuditParseError::ListWithoutItems),
        },
        Some("Event") => Ok(vec![document]),
        // Some forwarders strip `kind`; an object with auditID and verb is an event.
        None if document.get("auditID").is_some() && document.get("verb").is_some() => Ok(vec![document]),
        other => Err(AuditParseError::NotAnEvent(other.unwrap_or("none").to_owned())),
    }
}

fn string(value: &Value, pointer: &str) -> Option<String> {
    value.pointer(pointer).and_then(Value::as_str).map(str::to_owned)
}

/// Parses RFC 3339 (`2024-05-01T10:00:00.123456Z`, offsets allowed) into Unix milliseconds. Anything else,
/// including non-ASCII text and out-of-range fields, is `None`: these strings come from the people Palisade watches.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    // Every slice below is by byte offset: only ASCII makes each offset a character boundary.
    if !text.is_ascii()
        || bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest.as_bytes() {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (number(text.len() - 5..text.len() - 3)?, number(text.len() - 2..text.len())?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            (if *sign == b'-' { -1 } else { 1 }) * (hours * 60 + minutes)
        }
        _ => return None,
    };
    // Days from civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60) * 1000) + millis)
}

/// One `%XX`/`+` decoding of a query component as Go's `url.QueryUnescape` does it; `None` where Go refuses it.
fn query_unescape(component: &str) -> Option<String> {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = component.get(index + 1..index + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok().filter(|_| hex.bytes().all(|b| b.is_ascii_hexdigit()))?);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            other => {
                out.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The values of query parameter `name` in a request URI, read the way the API server (Go's `url.ParseQuery`)
/// reads them: pairs split on `&`, a pair holding `;` or a bad escape ignored, keys and values unescaped and
/// compared exactly. A substring search would take `?xdryRun=1` (ignored by the API server) for a dry run.
pub fn query_values<'a>(request_uri: &'a str, name: &'a str) -> impl Iterator<Item = String> + 'a {
    let query = request_uri.split_once('?').map_or("", |(_, query)| query);
    query.split('&').filter(|pair| !pair.is_empty() && !pair.contains(';')).filter_map(move |pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (query_unescape(key)? == name).then(|| query_unescape(value))?
    })
}

/// Top-level fields of an audit event kept whole when it is shrunk.
const ENVELOPE: [&str; 12] = [
    "kind",
    "apiVersion",
    "level",
    "auditID",
    "stage",
    "requestURI",
    "verb",
    "objectRef",
    "responseStatus",
    "requestReceivedTimestamp",
    "stageTimestamp",
    "sourceIPs",
];

/// A copy of an oversized event within the bound: the request and response objects share what the envelope
/// leaves, and any other bulky field (annotations, user extras) is shrunk too.
fn shrink_event(event: &Value) -> Value {
    use crate::bounds::{MAX_AUDIT_EVENT_JSON_BYTES, shrink_json};
    let mut copy = event.clone();
    let Some(fields) = copy.as_object_mut() else { return copy };
    let objects = ["requestObject", "responseObject"];
    let rest: usize = fields
        .iter()
        .filter(|(key, _)| !objects.contains(&key.as_str()))
        .map(|(key, value)| key.len() + value.to_string().len() + 4)
        .sum();
    // Fields outside the envelope and the objects get a small share each when the rest alone is too big.
    if rest > MAX_AUDIT_EVENT_JSON_BYTES / 4 {
        for (key, value) in fields.iter_mut() {
            if !ENVELOPE.contains(&key.as_str()) && !objects.contains(&key.as_str()) {
                shrink_json(value, 4096);
            }
        }
    }
    let rest: usize = fields
        .iter()
        .filter(|(key, _)| !objects.contains(&key.as_str()))
        .map(|(key, value)| key.len() + value.to_string().len() + 4)
        .sum();
    // The two objects' keys and separators take a few bytes beside them.
    let share = MAX_AUDIT_EVENT_JSON_BYTES.saturating_sub(rest + 64) / 2;
    for key in objects {
        if let Some(object) = fields.get_mut(key) {
            shrink_json(object, share.max(1024));
        }
    }
    copy
}

impl AuditEvent {
    /// True when the API server ran the request as a dry run (`dryRun=All`): it stored nothing. Any other
    /// `dryRun` value is refused by the API server, so its event has an error status anyway. A delete with a body
    /// takes its options (dryRun among them) from the body and ignores the query, so when the event holds the
    /// delete's options (the audit policy logs deletes at Request level) they decide: `?dryRun=All` with a body
    /// `{}` deletes for real.
    pub fn is_dry_run(&self) -> bool {
        if matches!(self.verb.as_str(), "delete" | "deletecollection")
            && let Some(options) = self.request_object.as_deref()
        {
            return serde_json::from_str::<Value>(options).ok().is_some_and(|options| {
                options.get("dryRun").and_then(Value::as_array).is_some_and(|d| d.iter().any(|v| v == "All"))
            });
        }
        query_values(&self.request_uri, "dryRun").any(|value| value == "All")
    }

    /// Builds an `AuditEvent` from one audit Event object; `cluster` names the cluster it came from.
    pub fn from_k8s_json(event: &Value, cluster: &str) -> Result<Self, AuditParseError> {
        // An event over the bound is mapped from a shrunk copy and says so. Only its objects and other bulky
        // fields are shrunk (long strings cut, long lists shortened, shape kept); the envelope detectors and the
        // dead-letter path need (ID, verb, user, object reference, URI, status, times) is never touched.
        // The event's text is made once: it is the record's `raw`, unless the event had to be shrunk.
        let mut raw = event.to_string();
        let mut shrunk = None;
        let mut truncated_from = None;
        if raw.len() > crate::bounds::MAX_AUDIT_EVENT_JSON_BYTES {
            let copy = shrink_event(event);
            truncated_from = Some(raw.len());
            raw = copy.to_string();
            shrunk = Some(copy);
        }
        let event = shrunk.as_ref().unwrap_or(event);
        let audit_id = string(event, "/auditID").ok_or(AuditParseError::Missing("auditID"))?;
        let verb = string(event, "/verb").ok_or(AuditParseError::Missing("verb"))?;
        let time = |field: &'static str| -> Result<Option<i64>, AuditParseError> {
            match event.get(field).and_then(Value::as_str) {
                None => Ok(None),
                Some(text) => parse_rfc3339_ms(text)
                    .map(Some)
                    .ok_or_else(|| AuditParseError::Timestamp { field, value: text.to_owned() }),
            }
        };
        let received = time("requestReceivedTimestamp")?;
        let stage_ms = time("stageTimestamp")?.or(received).ok_or(AuditParseError::Missing("stageTimestamp"))?;
        let strings = |pointer: &str| -> Vec<String> {
            event
                .pointer(pointer)
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let object_json = |field: &str| event.get(field).filter(|v| !v.is_null()).map(Value::to_string);
        let mut annotations: BTreeMap<String, String> = event
            .get("annotations")
            .and_then(Value::as_object)
            .map(|map| map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default();
        if let Some(bytes) = truncated_from {
            annotations.insert(crate::bounds::TRUNCATED_FROM_BYTES.to_owned(), bytes.to_string());
        }
        Ok(AuditEvent {
            audit_id,
            cluster: cluster.to_owned(),
            stage: string(event, "/stage").unwrap_or_else(|| "ResponseComplete".to_owned()),
            level: string(event, "/level").unwrap_or_default(),
            verb,
            request_uri: string(event, "/requestURI").unwrap_or_default(),
            username: string(event, "/user/username").unwrap_or_default(),
            user_groups: strings("/user/groups"),
            impersonated_user: string(event, "/impersonatedUser/username"),
            source_ips: strings("/sourceIPs"),
            user_agent: string(event, "/userAgent"),
            resource: string(event, "/objectRef/resource"),
            subresource: string(event, "/objectRef/subresource"),
            namespace: string(event, "/objectRef/namespace"),
            name: string(event, "/objectRef/name"),
            api_group: string(event, "/objectRef/apiGroup"),
            api_version: string(event, "/objectRef/apiVersion"),
            response_code: event.pointer("/responseStatus/code").and_then(Value::as_i64),
            request_object: object_json("requestObject"),
            response_object: object_json("responseObject"),
            request_received_ms: received.unwrap_or(stage_ms),
            stage_ms,
            annotations,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_with_fractions_and_offsets() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2024-05-01T10:00:00.123456Z"), Some(1_714_557_600_123));
        assert_eq!(parse_rfc3339_ms("2024-05-01T12:00:00.5+02:00"), Some(1_714_557_600_500));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(parse_rfc3339_ms("2024-05-01T12:00:00-01:30"), Some(1_714_570_200_000));
    }

    #[test]
    fn hostile_timestamps_are_refused_without_panicking() {
        // Each of these once panicked (a slice inside a multibyte character) or parsed as a wrong time.
        for text in [
            "2026-12-01T10:00:00\u{20ac}000",
            "2026-12-01T10:00:00.\u{20ac}",
            "2026-12-01T10:00:00+\u{e9}:00",
            "2026-12-01T10:00:00+0\u{e9}:0",
            "2026-\u{e9}1-01T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-12-01T25:00:00Z",
            "2026-12-01T10:00:00+-1:00",
            "2026-12-01T10:00:00.Z",
            "+026-12-01T10:00:00Z",
            "2026-12-01T10:00:00+99:00",
            "2026-12-01X10:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(text), None, "{text:?}");
        }
    }

    #[test]
    fn dry_run_is_read_as_the_api_server_reads_it() {
        let event = |uri: &str| AuditEvent { request_uri: uri.to_owned(), ..sample_event() };
        for uri in [
            "/api/v1/namespaces/default/pods?dryRun=All",
            "/api/v1/namespaces/default/pods?fieldManager=kubectl&dryRun=All",
            "/api/v1/namespaces/default/pods?dry%52un=All",
            "/api/v1/namespaces/default/pods?dryRun=%41ll&dryRun=All",
        ] {
            assert!(event(uri).is_dry_run(), "{uri}");
        }
        for uri in [
            "/api/v1/namespaces/default/pods",
            "/api/v1/namespaces/default/pods?xdryRun=1",
            "/api/v1/namespaces/default/pods?xdryRun=All",
            "/api/v1/namespaces/default/pods?dryrun=All",
            "/api/v1/namespaces/default/pods?dryRun=All;x=1",
            "/api/v1/namespaces/default/pods?dryRun=%zzAll",
            "/api/v1/namespaces/default/pods?fieldManager=dryRun=All",
            "/api/v1/namespaces/default/pods/dryRun=All",
            "/api/v1/namespaces/default/pods?dryRun=",
        ] {
            assert!(!event(uri).is_dry_run(), "{uri}");
        }
    }

    #[test]
    fn an_oversized_event_is_shrunk_kept_valid_and_flagged() {
        let data = "d".repeat(300 * 1024);
        let json = serde_json::json!({"kind": "Event", "auditID": "big", "verb": "create", "stage": "ResponseComplete",
            "stageTimestamp": "2024-05-01T10:00:00Z", "objectRef": {"resource": "configmaps", "namespace": "kube-system"},
            "requestObject": {"kind": "ConfigMap", "metadata": {"name": "dashboards"}, "data": {"big.json": data}},
            "responseObject": {"kind": "ConfigMap", "metadata": {"name": "dashboards"}, "data": {"big.json": data}}});
        let original = json.to_string().len();
        let event = AuditEvent::from_k8s_json(&json, "c").unwrap();
        assert_eq!(event.annotations[crate::bounds::TRUNCATED_FROM_BYTES], original.to_string());
        assert!(event.raw.len() <= crate::bounds::MAX_AUDIT_EVENT_JSON_BYTES);
        let request: Value = serde_json::from_str(event.request_object.as_deref().unwrap()).unwrap();
        assert_eq!(request["metadata"]["name"], "dashboards", "detectors still read the object");
        assert_eq!(event.audit_id, "big");
        let encoded = crate::Codec::<AuditEvent>::new().unwrap().encode(&event).unwrap();
        assert!(encoded.len() < 512 * 1024, "{} bytes encoded", encoded.len());
    }

    #[test]
    fn an_event_of_many_small_items_keeps_its_envelope_and_its_privileged_container() {
        let env: Vec<Value> =
            (0..12_000).map(|i| serde_json::json!({"name": format!("V{i:05}"), "value": "x"})).collect();
        let pod = serde_json::json!({"kind": "Pod", "metadata": {"name": "padded"}, "spec": {"containers": [
            {"name": "c", "image": "busybox", "env": env, "securityContext": {"privileged": true}}]}});
        let json = serde_json::json!({"kind": "Event", "auditID": "padded-1", "verb": "create", "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/pods", "user": {"username": "mallory"},
            "stageTimestamp": "2024-05-01T10:00:00Z", "objectRef": {"resource": "pods", "namespace": "default"},
            "requestObject": pod, "responseObject": pod});
        assert!(json.to_string().len() > crate::bounds::MAX_AUDIT_EVENT_JSON_BYTES);
        let event = AuditEvent::from_k8s_json(&json, "c").expect("the envelope survives");
        assert_eq!((event.audit_id.as_str(), event.username.as_str()), ("padded-1", "mallory"));
        assert!(event.raw.len() <= crate::bounds::MAX_AUDIT_EVENT_JSON_BYTES);
        let request: Value = serde_json::from_str(event.request_object.as_deref().unwrap()).unwrap();
        assert_eq!(request["spec"]["containers"][0]["securityContext"]["privileged"], true);
    }

    #[test]
    fn a_delete_is_a_dry_run_by_its_options_when_the_event_holds_them() {
        let delete = |uri: &str, options: Option<&str>| AuditEvent {
            verb: "delete".into(),
            request_uri: uri.to_owned(),
            request_object: options.map(str::to_owned),
            ..sample_event()
        };
        let uri = "/api/v1/namespaces/x/events/e?dryRun=All";
        assert!(!delete(uri, Some(r#"{"kind":"DeleteOptions"}"#)).is_dry_run(), "the body decides: a real delete");
        assert!(delete("/api/v1/namespaces/x/events/e", Some(r#"{"dryRun":["All"]}"#)).is_dry_run());
        assert!(delete(uri, None).is_dry_run(), "no options logged: the query decides");
        assert!(!delete("/api/v1/namespaces/x/events/e", None).is_dry_run());
    }

    fn sample_event() -> AuditEvent {
        let json: Value = serde_json::from_str(
            r#"{"kind":"Event","auditID":"a","verb":"create","stageTimestamp":"2024-05-01T10:00:00Z"}"#,
        )
        .unwrap();
        AuditEvent::from_k8s_json(&json, "c").unwrap()
    }

    #[test]
    fn event_fields_map_and_raw_is_kept() {
        let json: Value = serde_json::from_str(
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a-1","stage":"ResponseComplete",
            "requestURI":"/api/v1/namespaces/default/pods","verb":"create","user":{"username":"alice","groups":["g1"]},
            "sourceIPs":["10.0.0.1"],"userAgent":"kubectl","objectRef":{"resource":"pods","namespace":"default","name":"p","apiVersion":"v1"},
            "responseStatus":{"code":201},"requestObject":{"kind":"Pod"},"requestReceivedTimestamp":"2024-05-01T10:00:00.000000Z",
            "stageTimestamp":"2024-05-01T10:00:00.250000Z","annotations":{"authorization.k8s.io/decision":"allow"}}"#,
        )
        .unwrap();
        let event = AuditEvent::from_k8s_json(&json, "c1").unwrap();
        assert_eq!(event.username, "alice");
        assert_eq!(event.resource.as_deref(), Some("pods"));
        assert_eq!(event.response_code, Some(201));
        assert_eq!(event.request_object.as_deref(), Some(r#"{"kind":"Pod"}"#));
        assert_eq!(event.stage_ms - event.request_received_ms, 250);
        assert_eq!(serde_json::from_str::<Value>(&event.raw).unwrap(), json);
    }

    #[test]
    fn lists_split_and_garbage_is_refused() {
        let list: Value = serde_json::from_str(
            r#"{"kind":"EventList","items":[{"auditID":"1","verb":"get"},{"auditID":"2","verb":"list"}]}"#,
        )
        .unwrap();
        assert_eq!(split_events(&list).unwrap().len(), 2);
        for list in
            [r#"{"kind":"EventList"}"#, r#"{"kind":"EventList","items":null}"#, r#"{"kind":"EventList","items":{}}"#]
        {
            let list: Value = serde_json::from_str(list).unwrap();
            assert_eq!(split_events(&list).unwrap_err(), AuditParseError::ListWithoutItems, "{list}");
        }
        let empty: Value = serde_json::from_str(r#"{"kind":"EventList","items":[]}"#).unwrap();
        assert!(split_events(&empty).unwrap().is_empty());
        let other: Value = serde_json::from_str(r#"{"kind":"Pod"}"#).unwrap();
        assert_eq!(split_events(&other).unwrap_err(), AuditParseError::NotAnEvent("Pod".into()));
        let no_verb: Value =
            serde_json::from_str(r#"{"kind":"Event","auditID":"x","stageTimestamp":"2024-05-01T10:00:00Z"}"#).unwrap();
        assert_eq!(AuditEvent::from_k8s_json(&no_verb, "c").unwrap_err(), AuditParseError::Missing("verb"));
    }
}
