//! MITRE ATT&CK (Enterprise, v18) names and references for the tactics and techniques Palisade's alerts carry, so
//! the index holds ECS `threat.*` complete: a SIEM rule or dashboard keyed on `threat.technique.name` or
//! `threat.tactic.id` finds Palisade's alerts. Every technique a detector declares must be here (a test in the
//! root crate checks the catalogue against this table).

/// ATT&CK tactics by the name alerts use. The catalogue also uses Microsoft Defender's kill-chain intents
/// "Exploitation" and "Probing", which have no ATT&CK ID; they stay in `palisade.tactics` only.
const TACTICS: &[(&str, &str)] = &[
    ("Reconnaissance", "TA0043"),
    ("Resource Development", "TA0042"),
    ("Initial Access", "TA0001"),
    ("Execution", "TA0002"),
    ("Persistence", "TA0003"),
    ("Privilege Escalation", "TA0004"),
    ("Defense Evasion", "TA0005"),
    ("Credential Access", "TA0006"),
    ("Discovery", "TA0007"),
    ("Lateral Movement", "TA0008"),
    ("Collection", "TA0009"),
    ("Command and Control", "TA0011"),
    ("Exfiltration", "TA0010"),
    ("Impact", "TA0040"),
];

/// Techniques and sub-techniques by ID.
const TECHNIQUES: &[(&str, &str)] = &[
    ("T1003", "OS Credential Dumping"),
    ("T1003.008", "/etc/passwd and /etc/shadow"),
    ("T1016", "System Network Configuration Discovery"),
    ("T1021", "Remote Services"),
    ("T1021.004", "SSH"),
    ("T1033", "System Owner/User Discovery"),
    ("T1036", "Masquerading"),
    ("T1036.005", "Match Legitimate Resource Name or Location"),
    ("T1046", "Network Service Discovery"),
    ("T1057", "Process Discovery"),
    ("T1059", "Command and Scripting Interpreter"),
    ("T1059.004", "Unix Shell"),
    ("T1059.013", "Container CLI/API"),
    ("T1068", "Exploitation for Privilege Escalation"),
    ("T1070", "Indicator Removal"),
    ("T1070.002", "Clear Linux or Mac System Logs"),
    ("T1070.003", "Clear Command History"),
    ("T1070.006", "Timestomp"),
    ("T1071", "Application Layer Protocol"),
    ("T1078", "Valid Accounts"),
    ("T1078.004", "Cloud Accounts"),
    ("T1082", "System Information Discovery"),
    ("T1090", "Proxy"),
    ("T1090.003", "Multi-hop Proxy"),
    ("T1095", "Non-Application Layer Protocol"),
    ("T1098", "Account Manipulation"),
    ("T1098.004", "SSH Authorized Keys"),
    ("T1098.006", "Additional Container Cluster Roles"),
    ("T1105", "Ingress Tool Transfer"),
    ("T1133", "External Remote Services"),
    ("T1136", "Create Account"),
    ("T1136.001", "Local Account"),
    ("T1190", "Exploit Public-Facing Application"),
    ("T1204", "User Execution"),
    ("T1204.003", "Malicious Image"),
    ("T1489", "Service Stop"),
    ("T1496", "Resource Hijacking"),
    ("T1496.001", "Compute Hijacking"),
    ("T1498", "Network Denial of Service"),
    ("T1499", "Endpoint Denial of Service"),
    ("T1505", "Server Software Component"),
    ("T1505.003", "Web Shell"),
    ("T1528", "Steal Application Access Token"),
    ("T1546", "Event Triggered Execution"),
    ("T1550", "Use Alternate Authentication Material"),
    ("T1550.001", "Application Access Token"),
    ("T1552", "Unsecured Credentials"),
    ("T1552.001", "Credentials In Files"),
    ("T1552.005", "Cloud Instance Metadata API"),
    ("T1552.007", "Container API"),
    ("T1562", "Impair Defenses"),
    ("T1562.001", "Disable or Modify Tools"),
    ("T1564", "Hide Artifacts"),
    ("T1564.001", "Hidden Files and Directories"),
    ("T1565", "Data Manipulation"),
    ("T1565.001", "Stored Data Manipulation"),
    ("T1572", "Protocol Tunneling"),
    ("T1610", "Deploy Container"),
    ("T1611", "Escape to Host"),
    ("T1612", "Build Image on Host"),
    ("T1613", "Container and Resource Discovery"),
];

/// The ATT&CK ID of a tactic name, if it is one.
pub fn tactic_id(name: &str) -> Option<&'static str> {
    TACTICS.iter().find(|(tactic, _)| *tactic == name).map(|(_, id)| *id)
}

pub fn tactic_reference(id: &str) -> String {
    format!("https://attack.mitre.org/tactics/{id}/")
}

/// The name of a technique or sub-technique, if the table has it.
pub fn technique_name(id: &str) -> Option<&'static str> {
    TECHNIQUES.iter().find(|(technique, _)| *technique == id).map(|(_, name)| *name)
}

/// `https://attack.mitre.org/techniques/T1098/006/` for `T1098.006`.
pub fn technique_reference(id: &str) -> String {
    format!("https://attack.mitre.org/techniques/{}/", id.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sub_technique_has_its_parent_and_ids_are_well_formed() {
        for (id, name) in TECHNIQUES {
            assert!(!name.is_empty());
            let (parent, sub) = id.split_once('.').unwrap_or((id, ""));
            assert!(
                parent.len() == 5 && parent.starts_with('T') && parent[1..].bytes().all(|b| b.is_ascii_digit()),
                "{id}"
            );
            assert!(sub.is_empty() || (sub.len() == 3 && sub.bytes().all(|b| b.is_ascii_digit())), "{id}");
            assert!(technique_name(parent).is_some(), "{id} needs its parent {parent}");
        }
        assert_eq!(technique_reference("T1098.006"), "https://attack.mitre.org/techniques/T1098/006/");
        assert_eq!(tactic_id("Privilege Escalation"), Some("TA0004"));
        assert_eq!(tactic_id("Probing"), None, "a Defender intent is no ATT&CK tactic");
    }
}
