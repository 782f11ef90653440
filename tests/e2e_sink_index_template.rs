//! The sink's index template on a real OpenSearch node: installed with the configured shards and replicas when
//! absent, kept across restarts when a user edited it (today's default used to overwrite it at every start),
//! replaced only when told to; an alert indexed under it carries ECS `threat.*` complete.

mod common;

use palisade_schemas::Alert;
use palisade_sink::{OpenSearchConfig, OpenSearchWriter};
use serde_json::{Value, json};

async fn get(url: String) -> Value {
    reqwest::Client::new().get(url).send().await.unwrap().json().await.unwrap()
}

fn writer(prefix: &str, template: &str) -> OpenSearchWriter {
    let config: OpenSearchConfig = serde_json::from_value(json!({
        "url": common::env("PALISADE_TEST_OPENSEARCH"), "index_prefix": prefix, "retention_days": 0,
        "number_of_shards": 2, "number_of_replicas": 0, "template": template,
    }))
    .unwrap();
    OpenSearchWriter::new(&config).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_index_template_is_installed_when_absent_kept_when_edited_and_replaced_when_told() {
    let base = common::env("PALISADE_TEST_OPENSEARCH");
    let prefix = format!("palisade-test-template-{}", std::process::id());
    let template_url = format!("{base}/_index_template/{prefix}");
    let _ = reqwest::Client::new().delete(&template_url).send().await;

    writer(&prefix, "keep").prepare().await.unwrap();
    let installed = get(template_url.clone()).await;
    let settings = &installed["index_templates"][0]["index_template"]["template"]["settings"]["index"];
    assert_eq!(settings["number_of_shards"], "2", "{installed}");
    assert_eq!(settings["number_of_replicas"], "0");
    assert_eq!(
        installed["index_templates"][0]["index_template"]["version"],
        palisade_sink::ecs::INDEX_TEMPLATE_VERSION
    );

    // A user raises the replicas in the template; a restart keeps the edit.
    let mut edited = installed["index_templates"][0]["index_template"].clone();
    edited["template"]["settings"]["index"]["number_of_replicas"] = json!("3");
    let response = reqwest::Client::new().put(&template_url).json(&edited).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
    writer(&prefix, "keep").prepare().await.unwrap();
    let kept = get(template_url.clone()).await;
    assert_eq!(
        kept["index_templates"][0]["index_template"]["template"]["settings"]["index"]["number_of_replicas"],
        "3"
    );

    writer(&prefix, "replace").prepare().await.unwrap();
    let replaced = get(template_url.clone()).await;
    assert_eq!(
        replaced["index_templates"][0]["index_template"]["template"]["settings"]["index"]["number_of_replicas"],
        "0"
    );

    // An alert indexed under it: the daily index has the template's shards, the document ECS threat.* whole.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/alert.v4.json")).unwrap();
    let mut alert: Alert = serde_json::from_str(&text).unwrap();
    alert.id = format!("{prefix}-1");
    alert.techniques = vec!["T1098.006".into(), "T1610".into()];
    let outcome = writer(&prefix, "keep").write(std::slice::from_ref(&alert)).await.unwrap();
    assert_eq!(outcome.indexed, 1, "{outcome:?}");
    let _ = reqwest::Client::new().post(format!("{base}/{prefix}-*/_refresh")).send().await;
    let index_settings = get(format!("{base}/{prefix}-*/_settings")).await;
    let (_, index) = index_settings.as_object().unwrap().iter().next().expect("the daily index exists");
    assert_eq!(index["settings"]["index"]["number_of_shards"], "2");
    let found = reqwest::Client::new()
        .post(format!("{base}/{prefix}-*/_search"))
        .json(&json!({"query": {"term": {"threat.technique.subtechnique.name": "Additional Container Cluster Roles"}}}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(found["hits"]["total"]["value"], 1, "the sub-technique's name is searchable as a keyword: {found}");
    let threat = &found["hits"]["hits"][0]["_source"]["threat"];
    assert_eq!(threat["technique"]["id"], json!(["T1098", "T1610"]));
    assert_eq!(threat["technique"]["reference"][1], "https://attack.mitre.org/techniques/T1610/");
    assert!(threat["tactic"]["id"].as_array().is_some_and(|ids| !ids.is_empty()), "{threat}");

    let _ = reqwest::Client::new().delete(format!("{base}/{prefix}-*")).send().await;
    let _ = reqwest::Client::new().delete(&template_url).send().await;
}
