//! Maps cloud control-plane activity JSON onto `CloudActivity`, keeping each record verbatim: AWS CloudTrail
//! records (one record, or a `{"Records": [...]}` file) and Azure activity log records (the diagnostic-settings
//! export form with `operationName` as a string and `identity.claims`, or the REST/CLI form with
//! `operationName.value` and `claims`; one record, or `{"records": [...]}` / `{"value": [...]}`).
//!
//! Identity types, which the cloud-identity baseline selects on: Azure `ManagedIdentity` (the token carries an
//! `xms_mirid` claim), `ServicePrincipal` (`idtyp` app), `User`; AWS `WebIdentity` (an assumed role with web-identity
//! federation, as IRSA gives pods), `PodIdentity` (an assumed role whose session EKS Pod Identity named `eks-…`),
//! else CloudTrail's own `userIdentity.type` (`AssumedRole`, `IAMUser`, `Root`, ...).

use serde_json::Value;

use crate::k8s_audit::parse_rfc3339_ms;
use crate::types::CloudActivity;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CloudParseError {
    #[error("not a CloudTrail or Azure activity log record")]
    UnknownShape,
    #[error("cloud record lacks `{0}`")]
    Missing(&'static str),
    #[error("cloud record has an unparsable time: {0}")]
    Timestamp(String),
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn time(value: &Value, pointers: &[&str]) -> Result<i64, CloudParseError> {
    let raw = pointers.iter().find_map(|p| text(value, p)).ok_or(CloudParseError::Missing("time"))?;
    parse_rfc3339_ms(raw).ok_or_else(|| CloudParseError::Timestamp(raw.to_owned()))
}

impl CloudActivity {
    /// The records one JSON document carries, each with its own verbatim `raw`.
    pub fn from_cloud_json(document: &Value) -> Result<Vec<Self>, CloudParseError> {
        for list in ["Records", "records", "value"] {
            if let Some(items) = document.get(list).and_then(Value::as_array) {
                return items.iter().map(Self::from_cloud_record).collect();
            }
        }
        Self::from_cloud_record(document).map(|record| vec![record])
    }

    pub fn from_cloud_record(record: &Value) -> Result<Self, CloudParseError> {
        if record.get("eventSource").is_some() && record.get("eventName").is_some() {
            cloudtrail(record)
        } else if record.get("operationName").is_some() {
            azure(record)
        } else {
            Err(CloudParseError::UnknownShape)
        }
    }
}

fn cloudtrail(record: &Value) -> Result<CloudActivity, CloudParseError> {
    let source = text(record, "/eventSource").ok_or(CloudParseError::Missing("eventSource"))?;
    let name = text(record, "/eventName").ok_or(CloudParseError::Missing("eventName"))?;
    let kind = text(record, "/userIdentity/type").unwrap_or("Unknown");
    // An assumed role's sessions differ per pod and per hour; the role is the identity.
    let identity = text(record, "/userIdentity/sessionContext/sessionIssuer/arn")
        .or_else(|| text(record, "/userIdentity/arn"))
        .or_else(|| text(record, "/userIdentity/principalId"))
        .ok_or(CloudParseError::Missing("userIdentity"))?;
    let session = text(record, "/userIdentity/principalId").and_then(|p| p.split_once(':')).map(|(_, s)| s);
    let identity_type = if kind == "AssumedRole"
        && record.pointer("/userIdentity/sessionContext/webIdFederationData/federatedProvider").is_some()
    {
        "WebIdentity"
    } else if kind == "AssumedRole" && session.is_some_and(|s| s.starts_with("eks-")) {
        "PodIdentity"
    } else {
        kind
    };
    let service = source.strip_suffix(".amazonaws.com").unwrap_or(source);
    Ok(CloudActivity {
        id: text(record, "/eventID").ok_or(CloudParseError::Missing("eventID"))?.to_owned(),
        provider: "aws".into(),
        identity: identity.to_owned(),
        identity_type: Some(identity_type.to_owned()),
        operation: format!("{service}:{name}"),
        resource: text(record, "/resources/0/ARN").map(str::to_owned),
        result: Some(text(record, "/errorCode").unwrap_or("Success").to_owned()),
        caller_ip: text(record, "/sourceIPAddress").map(str::to_owned),
        timestamp_ms: time(record, &["/eventTime"])?,
        raw: record.to_string(),
    })
}

const OBJECT_ID_CLAIM: &str = "http://schemas.microsoft.com/identity/claims/objectidentifier";

fn azure(record: &Value) -> Result<CloudActivity, CloudParseError> {
    let operation = text(record, "/operationName")
        .or_else(|| text(record, "/operationName/value"))
        .ok_or(CloudParseError::Missing("operationName"))?;
    let claims = record.pointer("/identity/claims").or_else(|| record.get("claims"));
    let claim = |name: &str| claims.and_then(|c| c.get(name)).and_then(Value::as_str).filter(|s| !s.is_empty());
    let identity = claim(OBJECT_ID_CLAIM)
        .or_else(|| claim("oid"))
        .or_else(|| text(record, "/caller"))
        .or_else(|| claim("appid"))
        .ok_or(CloudParseError::Missing("caller"))?;
    let identity_type = if claim("xms_mirid").is_some() {
        "ManagedIdentity"
    } else if claim("idtyp") == Some("app") {
        "ServicePrincipal"
    } else {
        "User"
    };
    let timestamp_ms = time(record, &["/time", "/eventTimestamp"])?;
    let id = match text(record, "/eventDataId") {
        Some(id) => id.to_owned(),
        None => {
            let correlation = text(record, "/correlationId").ok_or(CloudParseError::Missing("correlationId"))?;
            format!("{correlation}/{operation}/{timestamp_ms}")
        }
    };
    Ok(CloudActivity {
        id,
        provider: "azure".into(),
        identity: identity.to_owned(),
        identity_type: Some(identity_type.to_owned()),
        operation: operation.to_owned(),
        resource: text(record, "/resourceId").map(str::to_owned),
        result: text(record, "/resultType").or_else(|| text(record, "/status/value")).map(str::to_owned),
        caller_ip: text(record, "/callerIpAddress")
            .or_else(|| text(record, "/httpRequest/clientIpAddress"))
            .map(str::to_owned),
        timestamp_ms,
        raw: record.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Shaped like the CloudTrail record reference (AWS CloudTrail User Guide, "CloudTrail record contents") for a
    /// call by an IRSA role; values are made up.
    fn cloudtrail_irsa() -> Value {
        json!({"eventVersion": "1.08", "eventID": "3dc5a2b4-0000-4000-8000-000000000001",
            "eventTime": "2026-11-27T10:00:00Z", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
            "awsRegion": "eu-west-1", "sourceIPAddress": "203.0.113.7",
            "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:botocore-session-1",
                "arn": "arn:aws:sts::111122223333:assumed-role/ebs-csi/botocore-session-1",
                "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/ebs-csi"},
                    "webIdFederationData": {"federatedProvider": "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/X"}}},
            "errorCode": "UnauthorizedOperation",
            "resources": [{"ARN": "arn:aws:ec2:eu-west-1:111122223333:instance/*"}]})
    }

    #[test]
    fn cloudtrail_records_map_the_role_and_the_action() {
        let records = CloudActivity::from_cloud_json(&json!({"Records": [cloudtrail_irsa()]})).unwrap();
        let record = &records[0];
        assert_eq!(record.provider, "aws");
        assert_eq!(record.identity, "arn:aws:iam::111122223333:role/ebs-csi");
        assert_eq!(record.identity_type.as_deref(), Some("WebIdentity"));
        assert_eq!(record.operation, "ec2:RunInstances");
        assert_eq!(record.result.as_deref(), Some("UnauthorizedOperation"));
        assert_eq!(record.timestamp_ms, 1_795_773_600_000);
        let mut pod_identity = cloudtrail_irsa();
        pod_identity["userIdentity"]["principalId"] = json!("AROAEXAMPLE:eks-prod-ebs-csi-c1d2");
        pod_identity["userIdentity"]["sessionContext"].as_object_mut().unwrap().remove("webIdFederationData");
        assert_eq!(
            CloudActivity::from_cloud_record(&pod_identity).unwrap().identity_type.as_deref(),
            Some("PodIdentity")
        );
    }

    #[test]
    fn azure_records_in_both_forms() {
        // Diagnostic-settings export form (Azure Monitor "Azure Activity Log event schema", storage/Event Hubs).
        let exported = json!({"time": "2026-11-27T10:00:00.1234567Z", "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/V",
            "operationName": "MICROSOFT.KEYVAULT/VAULTS/SECRETS/READ", "category": "Administrative", "resultType": "Success",
            "callerIpAddress": "10.1.2.3", "correlationId": "c-1",
            "identity": {"claims": {"xms_mirid": "/subscriptions/s/resourcegroups/mc_rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aks-agentpool",
                "http://schemas.microsoft.com/identity/claims/objectidentifier": "0000-mi"}}});
        let record = &CloudActivity::from_cloud_json(&json!({"records": [exported]})).unwrap()[0];
        assert_eq!(record.identity, "0000-mi");
        assert_eq!(record.identity_type.as_deref(), Some("ManagedIdentity"));
        assert_eq!(record.operation, "MICROSOFT.KEYVAULT/VAULTS/SECRETS/READ");
        assert_eq!(record.id, format!("c-1/MICROSOFT.KEYVAULT/VAULTS/SECRETS/READ/{}", record.timestamp_ms));
        // REST/CLI form (`az monitor activity-log list`).
        let rest = json!({"eventDataId": "e-1", "eventTimestamp": "2026-11-27T10:00:00Z", "caller": "alice@example.com",
            "operationName": {"value": "Microsoft.Compute/virtualMachines/write"}, "status": {"value": "Succeeded"},
            "claims": {"idtyp": "user"}, "httpRequest": {"clientIpAddress": "198.51.100.4"}});
        let record = CloudActivity::from_cloud_record(&rest).unwrap();
        assert_eq!((record.identity.as_str(), record.identity_type.as_deref()), ("alice@example.com", Some("User")));
        assert_eq!(record.caller_ip.as_deref(), Some("198.51.100.4"));
    }

    #[test]
    fn other_json_is_refused_with_a_reason() {
        assert_eq!(CloudActivity::from_cloud_json(&json!({"hello": 1})), Err(CloudParseError::UnknownShape));
        let mut no_time = cloudtrail_irsa();
        no_time.as_object_mut().unwrap().remove("eventTime");
        assert_eq!(CloudActivity::from_cloud_record(&no_time), Err(CloudParseError::Missing("time")));
    }
}
