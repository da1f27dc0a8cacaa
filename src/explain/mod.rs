//! Predict what the pod sees, from configuration alone.
//!
//! Pure core: [`facts`] (what the configuration says) and [`rules`] (`explain(&Facts)`), with
//! rendering in [`render`]. Thin adapters build the facts: [`objects`] + [`gather`] from
//! manifests, [`live`] from a cluster through the [`live::Source`] trait.

pub mod documents;
pub mod facts;
pub mod gather;
pub mod live;
pub mod model;
pub mod objects;
pub mod render;
pub mod rules;

use std::io::Read;

use crate::cli::{ExplainArgs, OutputFormat};
use crate::error::{Failure, Kind, Result};

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

fn render(format: OutputFormat, explanations: &[model::Explanation]) -> String {
    match format {
        OutputFormat::Text => render_text(explanations),
        OutputFormat::Json => render_json(explanations),
        OutputFormat::Mermaid => render_mermaid(explanations),
    }
}

/// Reads every `-f` input into one set of objects; errors name the file.
fn read_inputs(args: &ExplainArgs) -> Result<objects::Objects> {
    let mut objects = objects::Objects::default();
    let mut held = Vec::new();
    for path in &args.filename {
        let (name, text) = if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|err| Failure::usage(format!("reading stdin: {err}")))?;
            ("stdin".to_string(), text)
        } else {
            let text = std::fs::read_to_string(path).map_err(|err| {
                Failure::usage(format!("cannot read {}: {err}", path.display()))
                    .hint("pass manifest files with -f FILE (or -f - for stdin)")
            })?;
            (path.display().to_string(), text)
        };
        let read = objects.add_yaml(&text).map_err(|err| {
            let failure = Failure::from(err);
            Failure {
                message: format!("{name}: {}", failure.message),
                ..failure
            }
        })?;
        held.push((name, read));
    }
    if objects.services.is_empty() {
        return Err(
            Failure::usage(format!("no Service in {}", what_inputs_hold(&held)))
                .hint("explain needs at least one Service; add its manifest with -f"),
        );
    }
    Ok(objects)
}

/// `a.yaml (empty, or only comments)`, `b.yaml (2 ConfigMap; Foo, which explain does not read)`.
fn what_inputs_hold(held: &[(String, objects::Read)]) -> String {
    let each: Vec<String> = held
        .iter()
        .map(|(name, read)| {
            if read.kinds.is_empty() {
                return format!("{name} (empty, or only comments)");
            }
            let read_kinds: Vec<String> = read
                .kinds
                .iter()
                .filter(|(kind, _)| !read.unread.contains(*kind))
                .map(|(kind, count)| format!("{count} {kind}"))
                .collect();
            let unread: Vec<&str> = read.unread.iter().map(String::as_str).collect();
            let mut parts = Vec::new();
            if !read_kinds.is_empty() {
                parts.push(read_kinds.join(", "));
            }
            if !unread.is_empty() {
                parts.push(format!(
                    "only kinds explain does not read: {}",
                    unread.join(", ")
                ));
            }
            format!("{name} ({})", parts.join("; "))
        })
        .collect();
    each.join(", nor in ")
}

impl From<ExplainError> for Failure {
    fn from(err: ExplainError) -> Self {
        let hint = match err {
            ExplainError::NoService => {
                "explain needs at least one Service; add its manifest with -f"
            }
            ExplainError::UnknownEntryNode { .. } => {
                "name the node where connections enter (`kubectl get nodes` lists them)"
            }
            ExplainError::Object { .. } => {
                "fix the manifest: the API server refuses it too (kubectl apply --dry-run=server -f FILE)"
            }
            ExplainError::Yaml { .. } => {
                "fix the manifest (kubectl apply --dry-run=client -f FILE shows the same problem)"
            }
        };
        Failure::new(Kind::Usage, err.to_string()).hint(hint)
    }
}

/// `kubectl realip explain`.
pub async fn run(args: &ExplainArgs) -> Result<()> {
    let explanations = if let Some(target) = &args.target {
        live::explain_live(args, target).await?
    } else {
        let objects = read_inputs(args)?;
        explain_objects(&objects, args.entry_node.as_deref())?
    };
    crate::output::emit(&render(args.output, &explanations))
        .map_err(|err| Failure::new(Kind::Usage, format!("writing to stdout: {err}")))
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
    fn no_service_is_an_error_with_a_hint() {
        let err = explain_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
            .unwrap_err();
        assert!(matches!(err, ExplainError::NoService));
        let failure = Failure::from(err);
        assert_eq!(failure.kind, Kind::Usage);
        assert!(failure.hint.unwrap().contains("-f"));
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
