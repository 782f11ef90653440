//! The catalogue: the 58 alert types, in the order the product documents them. Each type's metadata is a `const`
//! declared by its unit beside its code (`unit` names the file); this list only gathers them. Tactics and
//! severities are the catalogue's; techniques follow `notes/attack-mapping.md`.

use crate::detectors::*;
use crate::unit::AlertTypeMeta;

pub const CATALOGUE: &[&AlertTypeMeta] = &[
    exposed::POSTGRES_TRUST,
    exposed::EXPOSED_POSTGRES_BROAD_IP_RANGE,
    baselines::ABNORMAL_MI,
    baselines::SA_RARE,
    sensitive_mount::META,
    control_plane_config::COREDNS,
    control_plane_config::ADMISSION,
    malicious_image::META,
    exposed::KUBEFLOW,
    exposed::EXPOSED_DASHBOARD,
    exposed::EXPOSED_SERVICE,
    exposed::EXPOSED_REDIS,
    ti_proxy::META,
    delete_events::META,
    kube_hunter::META,
    baselines::KUBE_SYSTEM,
    rbac::ROLE,
    privileged_container::META,
    rbac::BINDING,
    node_runtime::detector::NAMESPACE_CREATION,
    node_runtime::detector::HISTORY_FILE_CLEARED,
    node_runtime::detector::SUSPECT_CONNECTION,
    node_runtime::detector::TIMER_SERVICE_DISABLED,
    node_runtime::detector::COMMON_BOT,
    node_runtime::detector::PRIVILEGED_EXECUTION_IN_CONTAINER,
    node_runtime::detector::PRIVILEGED_CONTAINER_ARTIFACTS,
    node_runtime::detector::SUSPECT_DOWNLOAD,
    node_runtime::detector::SUSPECT_DOWNLOAD_ARTIFACTS,
    node_runtime::detector::SUSPECT_NOHUP,
    node_runtime::detector::SUSPECT_USER_ADDITION,
    node_runtime::detector::DIGITAL_CURRENCY_MINING,
    node_runtime::detector::IMAGE_BUILD_ON_NODE,
    node_runtime::detector::KNOWN_DDOS_TOOLKIT,
    eicar::META,
    node_runtime::detector::KNOWN_ATTACK_TOOL,
    node_windows::BACKDOOR,
    node_runtime::detector::EXPLOIT_ATTEMPT,
    node_runtime::detector::KNOWN_CREDENTIAL_ACCESS_TOOL,
    node_runtime::detector::MINER_DOWNLOAD,
    node_runtime::detector::SYSTEM_LOG_REMOVAL,
    node_runtime::detector::SUSPECT_PASSWORD_CHANGE,
    node_runtime::detector::SUSPECT_PORT_FORWARDING,
    node_runtime::detector::REVERSE_SHELL,
    node_runtime::detector::MINER_IN_CONTAINER,
    node_runtime::detector::SSH_KEY_ACCESS,
    node_runtime::detector::SUSPECT_PROCESS_TERMINATION,
    node_runtime::detector::CONTAINER_SSH,
    node_runtime::detector::TIMESTAMP_TAMPERING,
    node_runtime::detector::KUBERNETES_API,
    node_runtime::detector::KUBERNETES_DASHBOARD,
    node_runtime::detector::MINER_EXECUTION,
    node_runtime::detector::PASSWORD_FILE_ACCESS,
    node_runtime::detector::WEBSHELL,
    node_windows::RECON,
    node_runtime::detector::DOWNLOAD_AND_RUN_COMBO,
    node_runtime::detector::KUBECONFIG_ACCESS,
    node_runtime::detector::IMDS_CALL,
    node_runtime::detector::CALDERA_TOOLS,
];

/// The catalogue entry for `id`.
pub fn lookup(id: &str) -> Option<&'static AlertTypeMeta> {
    CATALOGUE.iter().copied().find(|meta| meta.id == id)
}
