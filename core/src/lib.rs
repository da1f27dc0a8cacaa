//! The decisions of kubectl realip, without I/O and without the command line: correlation of
//! SYN sightings into connections and their verdicts ([`analyze`]), the prediction of what a pod
//! sees from configuration ([`explain`]), and the text, JSON and Mermaid renderings of their
//! reports ([`output`] holds what they share).
//!
//! Everything here takes plain values and returns plain values (readers and writers it is given
//! are the only way bytes come and go); the plugin crate opens files, talks to the cluster,
//! drives network namespaces and parses flags. The compiler holds this line: this crate
//! depends on neither clap, kube, tokio nor indicatif.
#![forbid(unsafe_code)]

pub mod analyze;
pub mod explain;
pub mod output;
