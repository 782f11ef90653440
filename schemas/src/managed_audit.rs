//! Audit events as managed clusters deliver them, turned back into `audit.k8s.io/v1` Events:
//! - **AKS**: diagnostic settings stream the `kube-audit` and `kube-audit-admin` categories to Event Hubs, whose
//!   messages are Azure resource-log envelopes `{"records":[{"category":…,"resourceId":…,"properties":{"log":
//!   "<audit event JSON>",…}},…]}`; records of other categories (a hub shared with `kube-apiserver` logs) are
//!   skipped and counted.
//! - **GKE**: Cloud Audit Logs entries (`LogEntry` with an `AuditLog` `protoPayload`, service `k8s.io`), one per
//!   message or an array of them, as a Log Router sink exports them; entries of other services are skipped.
//! - **Audit**: plain `audit.k8s.io` Events or EventLists, as a log shipper forwards the API server's log.
//!
//! Each event comes with the cluster its envelope names (the AKS resource ID's cluster, GKE's `cluster_name`
//! label), if any.

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// What a source's messages hold.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    Aks,
    Gke,
    Audit,
}

/// One audit event taken out of an envelope: the Event, and the cluster the envelope names.
#[derive(Debug, Clone, PartialEq)]
pub struct Unwrapped {
    pub event: Value,
    pub cluster: Option<String>,
}

/// What one message held: its events (each, or why it is refused, with the part it came from), and how many parts
/// were for something else.
#[derive(Debug, Default)]
pub struct Contents {
    pub events: Vec<Result<Unwrapped, (String, Value)>>,
    pub skipped: usize,
}

/// Why a whole message is refused.
pub type Refused = String;

pub fn unwrap(envelope: Envelope, payload: &[u8]) -> Result<Contents, Refused> {
    let document: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    match envelope {
        Envelope::Aks => azure_records(&document),
        Envelope::Gke => gke_entries(document),
        Envelope::Audit => {
            let events = crate::split_events(&document).map_err(|e| e.to_string())?;
            Ok(Contents {
                events: events.into_iter().map(|event| Ok(Unwrapped { event: event.clone(), cluster: None })).collect(),
                skipped: 0,
            })
        }
    }
}

// ---- AKS ------------------------------------------------------------------------------------------------------

const AKS_AUDIT_CATEGORIES: [&str; 2] = ["kube-audit", "kube-audit-admin"];
/// What AKS writes in place of an object it did not keep.
const AKS_SKIPPED_OBJECT: &str = "skipped-too-big-size-object";

fn azure_records(document: &Value) -> Result<Contents, Refused> {
    let records = document
        .get("records")
        .and_then(Value::as_array)
        .ok_or("not an Azure resource-log envelope: no `records` array")?;
    let mut contents = Contents::default();
    for record in records {
        let category = record.get("category").and_then(Value::as_str).unwrap_or_default();
        if !AKS_AUDIT_CATEGORIES.iter().any(|c| c.eq_ignore_ascii_case(category)) {
            contents.skipped += 1;
            continue;
        }
        contents.events.push(azure_record(record).map_err(|reason| (reason, record.clone())));
    }
    Ok(contents)
}

fn azure_record(record: &Value) -> Result<Unwrapped, String> {
    // Some pipelines re-serialise `properties` as a string; `log` is a string of JSON, or already an object.
    let properties = match record.get("properties") {
        Some(Value::String(text)) => {
            serde_json::from_str(text).map_err(|e| format!("properties is a string but not JSON: {e}"))?
        }
        Some(properties) => properties.clone(),
        None => return Err("kube-audit record without properties".into()),
    };
    let mut event = match properties.get("log") {
        Some(Value::String(text)) => {
            serde_json::from_str::<Value>(text).map_err(|e| format!("properties.log is not JSON: {e}"))?
        }
        Some(log @ Value::Object(_)) => log.clone(),
        _ => return Err("kube-audit record without properties.log".into()),
    };
    if let Some(object) = event.as_object_mut() {
        for field in ["requestObject", "responseObject"] {
            if object.get(field).and_then(Value::as_str) == Some(AKS_SKIPPED_OBJECT) {
                object.remove(field);
                let annotations = object.entry("annotations").or_insert_with(|| json!({}));
                if let Some(annotations) = annotations.as_object_mut() {
                    annotations.insert(format!("palisade.io/aks-{field}"), json!(AKS_SKIPPED_OBJECT));
                }
            }
        }
    }
    let cluster = record.get("resourceId").and_then(Value::as_str).and_then(aks_cluster);
    Ok(Unwrapped { event, cluster })
}

/// The cluster a resource ID names (`…/providers/Microsoft.ContainerService/managedClusters/<name>`), lower-cased
/// (Azure upper-cases the IDs it writes in diagnostics; resource names are case-insensitive).
fn aks_cluster(resource_id: &str) -> Option<String> {
    let mut parts = resource_id.split('/');
    parts.by_ref().find(|part| part.eq_ignore_ascii_case("managedclusters"))?;
    parts.next().filter(|name| !name.is_empty()).map(str::to_lowercase)
}

// ---- GKE ------------------------------------------------------------------------------------------------------

fn gke_entries(document: Value) -> Result<Contents, Refused> {
    let entries = match document {
        Value::Array(entries) => entries,
        entry @ Value::Object(_) => vec![entry],
        _ => return Err("not a Cloud Logging entry: neither an object nor an array".into()),
    };
    let mut contents = Contents::default();
    for entry in entries {
        // Only Kubernetes audit entries; a broad export also carries other services' and plain log lines
        // (`textPayload`, `jsonPayload`), which are not for this source.
        let service = entry.pointer("/protoPayload/serviceName").and_then(Value::as_str);
        if entry.is_object() && service != Some("k8s.io") {
            contents.skipped += 1;
            continue;
        }
        contents.events.push(gke_entry(&entry).map_err(|reason| (reason, entry.clone())));
    }
    Ok(contents)
}

const VERBS: [&str; 10] =
    ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy", "connect"];

/// google.rpc.Code to the HTTP status the API server answered (as Google's HTTP mapping gives it).
fn http_status(code: i64, verb: &str) -> i64 {
    match code {
        0 if verb == "create" => 201,
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// `2024-02-13 12:45:06.073905000` (as some exports write it) → `2024-02-13T12:45:06.073905000Z`.
fn rfc3339(text: &str) -> String {
    let text = text.replacen(' ', "T", 1);
    // A zone is `Z` or `±hh:mm` at the end (bytes: the text is the sender's and may not be ASCII).
    let tail = &text.as_bytes()[text.len().saturating_sub(6)..];
    let zoned = text.ends_with('Z') || tail.contains(&b'+') || tail.contains(&b'-');
    if zoned { text } else { format!("{text}Z") }
}

fn without_type(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("@type");
        map.remove("at_sign_type");
    }
    object
}

/// One `LogEntry` as the `audit.k8s.io/v1` Event the API server logged.
fn gke_entry(entry: &Value) -> Result<Unwrapped, String> {
    let payload = entry.get("protoPayload").ok_or("not a Cloud Audit Logs entry: no protoPayload")?;
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let method = text(payload.get("methodName")).ok_or("protoPayload without methodName")?;
    let resource_name = text(payload.get("resourceName"))
        .or_else(|| text(payload.pointer("/authorizationInfo/0/resource")))
        .unwrap_or_default();
    let last = method.rsplit('.').next().unwrap_or_default().to_ascii_lowercase();
    let verb = if VERBS.contains(&last.as_str()) {
        last
    } else if resource(&resource_name, "get").1.is_none() {
        // A non-resource request (`io.k8s.readyz`, `/healthz`): the API server logs it as a get.
        "get".to_owned()
    } else {
        // Taking an unknown verb for a read could hide a change.
        return Err(format!("methodName `{method}` names no verb the API server logs"));
    };
    let timestamp = text(entry.get("timestamp"))
        .or_else(|| text(entry.get("receiveTimestamp")))
        .map(|t| rfc3339(&t))
        .ok_or("entry without timestamp")?;

    let mut event = Map::new();
    event.insert("kind".into(), json!("Event"));
    event.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
    event.insert("stage".into(), json!("ResponseComplete"));
    event.insert("verb".into(), json!(verb));
    let id = text(entry.pointer("/operation/id")).or_else(|| text(entry.get("insertId")));
    let id = id.unwrap_or_else(|| {
        // No ID in the entry: one derived from what it says, so a redelivered entry keeps it (alert IDs follow
        // from it) — with a digest that stays the same across builds, which std's hasher does not promise.
        use sha2::Digest as _;
        format!("gke-{}", hex::encode(&sha2::Sha256::digest(entry.to_string().as_bytes())[..16]))
    });
    event.insert("auditID".into(), json!(id));

    // The principal (`principalSubject` for identities without an e-mail). A service account's groups follow
    // from its name. An entry naming nobody is refused rather than taken for an anonymous request.
    let authentication = payload.get("authenticationInfo");
    let username = text(authentication.and_then(|a| a.get("principalEmail")))
        .or_else(|| text(authentication.and_then(|a| a.get("principalSubject"))))
        .or_else(|| text(authentication.and_then(|a| a.get("authoritySelector"))).filter(|s| s == "system:anonymous"))
        .filter(|name| !name.is_empty())
        .ok_or("authenticationInfo names no principal")?;
    let mut groups = Vec::new();
    if let Some(namespace) = username.strip_prefix("system:serviceaccount:").and_then(|r| r.split(':').next()) {
        groups = vec!["system:serviceaccounts".to_owned(), format!("system:serviceaccounts:{namespace}")];
    }
    if username == "system:anonymous" {
        groups.push("system:unauthenticated".into());
    } else {
        groups.push("system:authenticated".into());
    }
    event.insert("user".into(), json!({"username": username, "groups": groups}));
    let metadata = payload.get("requestMetadata");
    let caller = metadata.and_then(|m| text(m.get("callerIp")).or_else(|| text(m.get("callerIP"))));
    event.insert("sourceIPs".into(), json!(caller.into_iter().collect::<Vec<_>>()));
    if let Some(agent) = text(metadata.and_then(|m| m.get("callerSuppliedUserAgent"))) {
        event.insert("userAgent".into(), json!(agent));
    }

    let (uri, object_ref) = resource(&resource_name, &verb);
    let uri = text(payload.get("requestURI")).unwrap_or(uri);
    event.insert("requestURI".into(), json!(uri));
    if let Some(object_ref) = object_ref {
        event.insert("objectRef".into(), object_ref);
    }

    let status = payload.get("status");
    let code = status.and_then(|s| s.get("code")).and_then(Value::as_i64).unwrap_or(0);
    let mut response_status = json!({"code": http_status(code, &verb)});
    if let Some(message) = text(status.and_then(|s| s.get("message"))) {
        response_status["message"] = json!(message);
    }
    event.insert("responseStatus".into(), response_status);
    let has_objects = payload.get("request").is_some() || payload.get("response").is_some();
    event.insert("level".into(), json!(if has_objects { "RequestResponse" } else { "Metadata" }));
    if let Some(request) = payload.get("request") {
        event.insert("requestObject".into(), without_type(request));
    }
    if let Some(response) = payload.get("response") {
        event.insert("responseObject".into(), without_type(response));
    }
    event.insert("requestReceivedTimestamp".into(), json!(timestamp));
    event.insert("stageTimestamp".into(), json!(timestamp));
    if let Some(granted) = payload.pointer("/authorizationInfo/0/granted").and_then(Value::as_bool) {
        let decision = if granted { "allow" } else { "forbid" };
        event.insert("annotations".into(), json!({"authorization.k8s.io/decision": decision}));
    }
    let cluster = text(entry.pointer("/resource/labels/cluster_name"));
    Ok(Unwrapped { event: Value::Object(event), cluster })
}

/// The request URI and object reference a Cloud Audit Logs resource name stands for:
/// `<group>/<version>[/namespaces/<ns>]/<resource>[/<name>[/<subresource>]]` (`core` is the legacy group), or a
/// non-resource path (`/readyz`, `core/v1/healthz`).
fn resource(name: &str, verb: &str) -> (String, Option<Value>) {
    if name.is_empty() || name.starts_with('/') {
        return (if name.is_empty() { "/".to_owned() } else { name.to_owned() }, None);
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() < 3 {
        return (format!("/{name}"), None);
    }
    let (group, version) = (parts[0], parts[1]);
    let mut rest = &parts[2..];
    let mut namespace = None;
    // `namespaces/<ns>/<resource>…`; `namespaces/<ns>` alone is the namespace object itself, and
    // `namespaces/<ns>/status` or `/finalize` its subresources.
    let namespace_subresource = rest.len() == 3 && rest[0] == "namespaces" && matches!(rest[2], "status" | "finalize");
    if rest.len() >= 3 && rest[0] == "namespaces" && !namespace_subresource {
        namespace = Some(rest[1]);
        rest = &rest[2..];
    }
    let resource = rest[0];
    if resource == "healthz" || resource == "readyz" || resource == "livez" {
        return (format!("/{}", rest.join("/")), None);
    }
    let object_name = rest.get(1).copied();
    let subresource = rest.get(2).copied();
    let api_group = if group == "core" { "" } else { group };
    let prefix = if api_group.is_empty() { format!("/api/{version}") } else { format!("/apis/{api_group}/{version}") };
    let mut uri = prefix;
    if let Some(namespace) = namespace {
        uri.push_str(&format!("/namespaces/{namespace}"));
    }
    uri.push('/');
    uri.push_str(resource);
    // A create is posted to the collection; the name is the object's.
    if let Some(object_name) = object_name.filter(|_| verb != "create" || subresource.is_some()) {
        uri.push('/');
        uri.push_str(object_name);
        if let Some(subresource) = subresource {
            uri.push('/');
            uri.push_str(subresource);
        }
    }
    let mut object_ref = json!({"resource": resource, "apiVersion": version});
    if !api_group.is_empty() {
        object_ref["apiGroup"] = json!(api_group);
    }
    if let Some(namespace) = namespace {
        object_ref["namespace"] = json!(namespace);
    }
    if let Some(object_name) = object_name {
        object_ref["name"] = json!(object_name);
    }
    if let Some(subresource) = subresource {
        object_ref["subresource"] = json!(subresource);
    }
    (uri, Some(object_ref))
}

#[cfg(test)]
mod tests;
