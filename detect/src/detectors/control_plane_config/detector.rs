//! K8S_AdmissionController: a Mutating- or ValidatingWebhookConfiguration is created or changed (an attacker's
//! webhook sees, and may rewrite, every object it matches). K8S_CoreDnsModification: the CoreDNS ConfigMap
//! (`coredns` or `coredns-custom` in kube-system) is created, changed or deleted (DNS for every pod).

use serde_json::Value;

use crate::detectors::audit_object::{name_of, object, succeeded};
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, REQUEST_RESPONSE_ON_OBJECTS, Severity, Source};
use crate::unit::{Event, Finding, StatelessDetector};

pub const ADMISSION: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_AdmissionController",
    title: "Admission webhook configuration created or changed",
    severity: Severity::Informational,
    tactics: &["Credential Access", "Persistence"],
    techniques: &["T1546", "T1562"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when a MutatingWebhookConfiguration or ValidatingWebhookConfiguration is created or changed.",
    false_positives: "policy engines (Kyverno, Gatekeeper), cert-manager and service meshes installing their webhooks. Except by `workload` or `user`.",
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};
pub const COREDNS: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_CoreDnsModification",
    title: "CoreDNS configuration modified",
    severity: Severity::Low,
    tactics: &["Lateral Movement"],
    techniques: &["T1565.001"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when the CoreDNS configuration (ConfigMap coredns or coredns-custom in kube-system) is created, updated, patched or deleted.",
    false_positives: "planned DNS changes through GitOps. Except by `user`.",
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};

pub struct AdmissionController;

impl StatelessDetector for AdmissionController {
    fn meta(&self) -> &'static AlertTypeMeta {
        ADMISSION
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else { return Vec::new() };
        let resources = ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"];
        if !succeeded(audit, &["create", "update", "patch"], "admissionregistration.k8s.io", &resources) {
            return Vec::new();
        }
        let configuration = object(audit);
        let kind = if audit.resource.as_deref() == Some(resources[0]) {
            "MutatingWebhookConfiguration"
        } else {
            "ValidatingWebhookConfiguration"
        };
        let mut finding = Finding {
            workload: Some(format!("{kind}/{}", name_of(audit, configuration.as_ref()))),
            ..Finding::default()
        };
        let targets: Vec<String> = configuration
            .as_ref()
            .and_then(|c| c.get("webhooks"))
            .and_then(Value::as_array)
            .map(|hooks| {
                hooks
                    .iter()
                    .map(|hook| {
                        let config = hook.get("clientConfig");
                        config
                            .and_then(|c| c.get("url"))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .or_else(|| {
                                let service = config?.get("service")?;
                                Some(format!(
                                    "service {}/{}",
                                    service.get("namespace")?.as_str()?,
                                    service.get("name")?.as_str()?
                                ))
                            })
                            .unwrap_or_else(|| "?".into())
                    })
                    .collect()
            })
            .unwrap_or_default();
        finding.details.insert("webhook_targets".into(), targets.join(", "));
        finding.details.insert("verb".into(), audit.verb.clone());
        vec![finding]
    }
}

pub struct CoreDnsModification;

impl StatelessDetector for CoreDnsModification {
    fn meta(&self) -> &'static AlertTypeMeta {
        COREDNS
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else { return Vec::new() };
        if !succeeded(audit, &["create", "update", "patch", "delete"], "", &["configmaps"])
            || audit.namespace.as_deref() != Some("kube-system")
        {
            return Vec::new();
        }
        let configmap = object(audit);
        let name = name_of(audit, configmap.as_ref());
        if !matches!(name.as_str(), "coredns" | "coredns-custom") {
            return Vec::new();
        }
        let mut finding = Finding {
            namespace: Some("kube-system".into()),
            workload: Some(format!("ConfigMap/{name}")),
            ..Finding::default()
        };
        finding.details.insert("verb".into(), audit.verb.clone());
        if let Some(corefile) = configmap.as_ref().and_then(|c| c.pointer("/data/Corefile")).and_then(Value::as_str) {
            finding.details.insert("corefile".into(), corefile.to_owned());
        }
        vec![finding]
    }
}
