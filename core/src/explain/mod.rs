//! Predict what the pod sees, from configuration alone.
//!
//! [`facts`] (what the configuration says) and [`rules`] (`explain(&Facts)`), with rendering in
//! [`render`]. [`objects`] + [`gather`] build the facts from API objects: parsed from manifests
//! ([`documents`]) or read from a cluster by the plugin.

pub mod documents;
pub mod facts;
pub mod gather;
pub mod model;
pub mod objects;
pub mod render;
pub mod rules;
pub mod validate;

use crate::output::OutputFormat;

pub use render::{render_json, render_mermaid, render_text, verdict_summary};
pub use rules::explain;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("YAML document {document} (line {line}): {message}")]
    Yaml {
        document: usize,
        /// Where the document starts in its input.
        line: usize,
        message: String,
    },
    /// What the API server would refuse: a field of the wrong type or an unsupported value.
    #[error(
        "YAML document {document} (line {line}){}: {kind} {name:?} is invalid: {message}",
        item.map(|i| format!(", List item {i}")).unwrap_or_default()
    )]
    Object {
        document: usize,
        line: usize,
        /// Its place (1-based) among a List's items, when it is one.
        item: Option<usize>,
        kind: String,
        name: String,
        message: String,
    },
    #[error("no Service in the manifests")]
    NoService,
    #[error("--entry-node {node:?} matches no node; the nodes are {}", known.join(", "))]
    UnknownEntryNode { node: String, known: Vec<String> },
}

/// One explanation per Service found in `yaml` (multi-document YAML or a List).
pub fn explain_manifests(yaml: &str) -> Result<Vec<model::Explanation>, ExplainError> {
    explain_manifests_entering(yaml, None)
}

/// Like [`explain_manifests`], for connections entering the cluster at `entry_node` (trace and
/// lab know it): a MASQUERADE then resolves to the node IP or the bridge IP exactly.
pub fn explain_manifests_entering(
    yaml: &str,
    entry_node: Option<&str>,
) -> Result<Vec<model::Explanation>, ExplainError> {
    let mut objects = objects::Objects::default();
    objects.add_yaml(yaml)?;
    explain_objects(&objects, entry_node)
}

/// One explanation per Service in `objects`.
pub fn explain_objects(
    objects: &objects::Objects,
    entry_node: Option<&str>,
) -> Result<Vec<model::Explanation>, ExplainError> {
    if objects.services.is_empty() {
        return Err(ExplainError::NoService);
    }
    if let Some(node) = entry_node {
        gather::check_entry_node(objects, node)?;
    }
    Ok(gather::all_facts(objects)
        .iter_mut()
        .map(|facts| {
            facts.cluster.entry_node = entry_node.map(str::to_string);
            rules::explain(facts)
        })
        .collect())
}

/// The explanations in `format`.
pub fn render_as(format: OutputFormat, explanations: &[model::Explanation]) -> String {
    match format {
        OutputFormat::Text => render_text(explanations),
        OutputFormat::Json => render_json(explanations),
        OutputFormat::Mermaid => render_mermaid(explanations),
    }
}

/// The target is the first Service; the others are ingress controllers read for context.
pub fn explain_gathered(
    objects: &objects::Objects,
    entry_node: Option<&str>,
) -> model::Explanation {
    let mut facts = gather::all_facts(objects)
        .into_iter()
        .next()
        .unwrap_or_default();
    facts.cluster.entry_node = entry_node.map(str::to_string);
    rules::explain(&facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_yaml_names_the_document() {
        let err = explain_manifests("kind: Service\n---\nfoo: [unclosed\n").unwrap_err();
        assert!(
            matches!(
                err,
                ExplainError::Yaml {
                    document: 2,
                    line: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_invalid_service_names_kind_and_name() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: oops}\n";
        let err = explain_manifests(yaml).unwrap_err();
        match err {
            ExplainError::Object { kind, name, .. } => {
                assert_eq!((kind.as_str(), name.as_str()), ("Service", "web"))
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn no_service_is_an_error() {
        let err = explain_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
            .unwrap_err();
        assert!(matches!(err, ExplainError::NoService));
    }

    #[test]
    fn lists_and_empty_documents_are_read() {
        let yaml = "---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: b}\n";
        let names: Vec<String> = explain_manifests(yaml)
            .unwrap()
            .into_iter()
            .map(|e| e.service)
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn every_way_in_is_either_explained_or_closed() {
        for yaml in [
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: NodePort}\n",
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: LoadBalancer}\n",
        ] {
            let e = &explain_manifests(yaml).unwrap()[0];
            for origin in model::Origin::ALL {
                let open = e.origins.iter().any(|v| v.origin == origin);
                let closed = e.closed.iter().any(|c| c.origin == origin);
                assert!(open != closed, "{origin:?} in {yaml}");
            }
        }
    }

    #[test]
    fn the_entry_node_decides_node_or_bridge() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: lab}\nspec: {type: NodePort, selector: {app: web}}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-b}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: lab, labels: {app: web}}\nspec: {nodeName: node-b, containers: [{name: web}]}\n";
        let seen = |entry: Option<&str>| {
            let e = &explain_manifests_entering(yaml, entry).unwrap()[0];
            let v = e
                .origins
                .iter()
                .find(|v| v.origin == model::Origin::NodePort)
                .unwrap();
            (v.l4_source_seen_by_pod, render::verdict_summary(v))
        };
        assert_eq!(seen(Some("node-b")).0, model::L4Source::Bridge);
        assert_eq!(seen(Some("node-a")).0, model::L4Source::Node);
        let (source, summary) = seen(None);
        assert_eq!(source, model::L4Source::Node);
        assert!(
            summary.starts_with("node-port via node-port: pod sees node"),
            "{summary}"
        );
        assert!(
            summary.contains("spec.externalTrafficPolicy=Cluster (default)"),
            "{summary}"
        );
        assert!(
            summary.contains("kubectl patch svc web -n lab"),
            "{summary}"
        );
    }
}
