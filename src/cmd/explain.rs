//! `kubectl realip explain`: manifests read from files and stdin, or a Service read from the
//! cluster, handed to the core's explain; refusals and bad input become exit codes and hints.

use crate::cli::ExplainArgs;
use crate::cluster::explain_reads::{gather, KubeSource};
use crate::cluster::Cluster;
use crate::error::{Failure, Kind, Result};
use crate::explain::{self, model::Explanation, ExplainError};
use realip_core::explain::objects::{Objects, Read};
use std::io::Read as _;

/// `kubectl realip explain`.
pub async fn run(args: &ExplainArgs) -> Result<()> {
    let explanations = if let Some(target) = &args.target {
        explain_live(args, target).await?
    } else {
        let objects = read_inputs(args)?;
        explain::explain_objects(&objects, args.entry_node.as_deref())?
    };
    crate::output::emit(&explain::render_as(args.output, &explanations))
        .map_err(|err| Failure::new(Kind::Usage, format!("writing to stdout: {err}")))
}

/// Explains the Service from the cluster the kubectl flags point at.
pub async fn explain_live(args: &ExplainArgs, target: &str) -> Result<Vec<Explanation>> {
    let name = crate::cluster::parse_target(target).map_err(|err| {
        Failure::usage(err.to_string())
            .hint("name the Service as svc/NAME, or explain manifests with -f FILE")
    })?;
    let cluster = Cluster::new(crate::cluster::clients(&args.kube.connection()).await?);
    let namespace = cluster.default_namespace().to_string();
    let source = KubeSource { cluster };
    let objects = gather(&source, &namespace, name).await?;
    if let Some(node) = args.entry_node.as_deref() {
        explain::gather::check_entry_node(&objects, node)?;
    }
    Ok(vec![explain::explain_gathered(
        &objects,
        args.entry_node.as_deref(),
    )])
}

/// Reads every `-f` input into one set of objects; errors name the file.
fn read_inputs(args: &ExplainArgs) -> Result<Objects> {
    let mut objects = Objects::default();
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
fn what_inputs_hold(held: &[(String, Read)]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_service_is_a_usage_error_with_a_hint() {
        let err =
            explain::explain_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
                .unwrap_err();
        let failure = Failure::from(err);
        assert_eq!(failure.kind, Kind::Usage);
        assert!(failure.hint.unwrap().contains("-f"));
    }
}
