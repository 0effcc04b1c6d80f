//! `host export RUN --format prov-json|json`: a run as W3C PROV-JSON (entities are content
//! digests, activities the run's stages and transforms, agents the host and each plugin build)
//! or as the whole run record with its tags, notes and verifications.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use record::{Edge, Relation};
use store::Store;

use crate::storage::StoreOptions;

/// The PROV qualified name of one of the store's node ids.
fn qualified(id: &str) -> String {
    if let Some(sha) = id.strip_prefix("plugin:") {
        format!("plugin:{sha}")
    } else if let Some(version) = id.strip_prefix("host:") {
        format!("host:{version}")
    } else if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("sha256:{id}")
    } else {
        format!("run:{id}")
    }
}

fn prov_json(store: &dyn Store, edges: &[Edge]) -> anyhow::Result<Value> {
    let (mut entities, mut activities, mut agents) = (Map::new(), Map::new(), Map::new());
    let mut relations: Map<String, Value> = Map::new();
    let add_entity = |id: &str, entities: &mut Map<String, Value>| -> anyhow::Result<()> {
        let name = qualified(id);
        if !entities.contains_key(&name) {
            let (kind, label) = store.entity_description(id)?;
            entities.insert(name, json!({"host:kind": kind, "prov:label": label}));
        }
        Ok(())
    };
    for (index, edge) in edges.iter().enumerate() {
        let id = format!("_:{}{index}", &edge.relation.as_str()[..1]);
        let (subject, object) = (qualified(&edge.subject), qualified(&edge.object));
        let record = match edge.relation {
            Relation::Used => {
                activities.entry(subject.clone()).or_insert_with(|| json!({}));
                add_entity(&edge.object, &mut entities)?;
                json!({"prov:activity": subject, "prov:entity": object})
            }
            Relation::WasGeneratedBy => {
                add_entity(&edge.subject, &mut entities)?;
                activities.entry(object.clone()).or_insert_with(|| json!({}));
                json!({"prov:entity": subject, "prov:activity": object})
            }
            Relation::WasDerivedFrom => {
                add_entity(&edge.subject, &mut entities)?;
                add_entity(&edge.object, &mut entities)?;
                let mut record = json!({"prov:generatedEntity": subject, "prov:usedEntity": object});
                if let Some(activity) = &edge.activity {
                    record["prov:activity"] = json!(qualified(activity));
                    activities.entry(qualified(activity)).or_insert_with(|| json!({}));
                }
                if let Some(parameters) = &edge.parameters {
                    record["host:parameters"] = json!(parameters.to_string());
                }
                record
            }
            Relation::WasAssociatedWith => {
                activities.entry(subject.clone()).or_insert_with(|| json!({}));
                agents.entry(object.clone()).or_insert_with(|| json!({"prov:type": "prov:SoftwareAgent"}));
                json!({"prov:activity": subject, "prov:agent": object})
            }
        };
        relations.entry(edge.relation.as_str().to_owned()).or_insert_with(|| json!({}))[&id] = record;
    }
    let mut document = json!({
        "prefix": {
            "sha256": "urn:sha256:",
            "run": "urn:host-run:",
            "plugin": "urn:host-plugin:sha256:",
            "host": "urn:host:version:",
        },
        "entity": entities,
        "activity": activities,
        "agent": agents,
    });
    for (relation, records) in relations {
        document[relation] = records;
    }
    Ok(document)
}

/// The batch job a run ran in: an agent the run's activity was associated with, and the
/// job's facts as attributes of the activity.
fn add_scheduler(document: &mut Value, run_id: &str, scheduler: &record::SchedulerContext) {
    let run = qualified(run_id);
    let job = format!("job:{}/{}/{}", scheduler.cluster, scheduler.job_id, scheduler.restart_count);
    document["prefix"]["job"] = json!("urn:host-job:");
    let facts = json!({
        "host:scheduler": scheduler.scheduler,
        "host:cluster": scheduler.cluster,
        "host:job_id": scheduler.job_id,
        "host:restart_count": scheduler.restart_count,
        "host:node": scheduler.node,
        "host:partition": scheduler.partition,
        "host:cpus": scheduler.cpus,
        "host:gpus": scheduler.gpus,
        "host:time_limit": scheduler.time_limit,
        "host:submit_time": scheduler.submit_time,
    });
    let activity = document["activity"].as_object_mut().map(|a| a.entry(run.clone()).or_insert_with(|| json!({})));
    if let Some(Value::Object(attributes)) = activity {
        attributes.extend(facts.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
    }
    document["agent"][&job] = json!({"prov:type": "prov:SoftwareAgent", "prov:label": scheduler.describe()});
    document["wasAssociatedWith"]["_:scheduler"] = json!({"prov:activity": run, "prov:agent": job});
}

/// The whole run record with its lineage and what was added beside it since (tags, notes,
/// verifications): `host export --format json`, and `host/run.json` in an MLflow export.
pub fn run_document(store: &dyn Store, run_id: &str) -> anyhow::Result<Value> {
    let record = store.run_record(run_id)?;
    let mut document = serde_json::to_value(&record)?;
    document["lineage"] = serde_json::to_value(store.lineage_edges(run_id)?)?;
    let annotations = store.annotations(run_id)?;
    document["tags"] = serde_json::to_value(store::current_tags(&annotations))?;
    document["annotations"] = serde_json::to_value(&annotations)?;
    document["verifications"] = serde_json::to_value(store.verifications(run_id)?)?;
    Ok(document)
}

pub fn export(store: &StoreOptions, run_id: &str, format: &str, output: Option<PathBuf>) -> anyhow::Result<()> {
    let store = store.open_read()?;
    let document = match format {
        "prov-json" => {
            let record = store.run_record(run_id)?;
            let mut document = prov_json(&*store, &store.lineage_edges(run_id)?)?;
            if let Some(scheduler) = &record.scheduler {
                add_scheduler(&mut document, &record.run_id, scheduler);
            }
            document
        }
        "json" => run_document(&*store, run_id)?,
        other => bail!("unknown export format {other}; use prov-json, json or mlflow"),
    };
    let text = serde_json::to_string_pretty(&document)?;
    match output {
        Some(path) => std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}
