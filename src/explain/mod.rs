//! Predict what the pod sees, from configuration alone.
//!
//! Pure core: [`facts`] (what the configuration says) and [`rules`] (`explain(&Facts)`), with
//! rendering in [`render`]. Thin adapters build the facts: [`objects`] + [`gather`] from
//! manifests, [`live`] from a cluster through the [`live::Source`] trait.

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

pub use render::{render_json, render_mermaid, render_text};
pub use rules::explain;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("YAML document {document}: {message}")]
    Yaml { document: usize, message: String },
    #[error("YAML document {document}: {kind} {name:?} is not valid: {message}")]
    Object {
        document: usize,
        kind: String,
        name: String,
        message: String,
    },
    #[error("no Service in the manifests")]
    NoService,
}

/// One explanation per Service found in `yaml` (multi-document YAML or a List).
pub fn explain_manifests(yaml: &str) -> Result<Vec<model::Explanation>, ExplainError> {
    let mut objects = objects::Objects::default();
    objects.add_yaml(yaml)?;
    explain_objects(&objects)
}

/// One explanation per Service in `objects`.
pub fn explain_objects(
    objects: &objects::Objects,
) -> Result<Vec<model::Explanation>, ExplainError> {
    if objects.services.is_empty() {
        return Err(ExplainError::NoService);
    }
    Ok(gather::all_facts(objects)
        .iter()
        .map(rules::explain)
        .collect())
}

fn render(format: OutputFormat, explanations: &[model::Explanation]) -> String {
    match format {
        OutputFormat::Text => render_text(explanations),
        OutputFormat::Json => render_json(explanations),
        OutputFormat::Mermaid => render_mermaid(explanations),
    }
}

fn read_inputs(args: &ExplainArgs) -> Result<String> {
    let mut all = String::new();
    for path in &args.filename {
        let text = if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|err| Failure::usage(format!("reading stdin: {err}")))?;
            text
        } else {
            std::fs::read_to_string(path).map_err(|err| {
                Failure::usage(format!("cannot read {}: {err}", path.display()))
                    .hint("pass manifest files with -f FILE (or -f - for stdin)")
            })?
        };
        // Keep files apart even when one does not end with a newline.
        all.push_str("\n---\n");
        all.push_str(&text);
    }
    Ok(all)
}

impl From<ExplainError> for Failure {
    fn from(err: ExplainError) -> Self {
        let hint = match err {
            ExplainError::NoService => {
                "explain needs at least one Service; add its manifest with -f"
            }
            _ => "fix the manifest (kubectl apply --dry-run=client -f FILE shows the same problem)",
        };
        Failure::new(Kind::Usage, err.to_string()).hint(hint)
    }
}

/// `kubectl realip explain`.
pub async fn run(args: &ExplainArgs) -> Result<()> {
    let explanations = if let Some(target) = &args.target {
        live::explain_live(args, target).await?
    } else {
        let yaml = read_inputs(args)?;
        explain_manifests(&yaml)?
    };
    crate::output::emit(&render(args.output, &explanations))
        .map_err(|err| Failure::new(Kind::Usage, format!("writing to stdout: {err}")))
}
