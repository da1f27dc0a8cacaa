//! The plugin's integration tests, as one binary: each former test file is a module here, so
//! kube, tokio and rustls are linked once rather than once per file. One file's tests:
//! `cargo test --test it lab::`; one test: `cargo test --test it lab::NAME -- --exact`.

mod support;

mod analyze_cli;
mod analyze_evidence;
mod analyze_golden;
mod analyze_inputs;
mod analyze_netns;
mod analyze_partial_props;
mod analyze_props;
mod cleanup;
mod cluster_errors;
mod complete_kubectl;
mod e2e_cluster;
mod e2e_netns;
mod explain_cli;
mod explain_corpus;
mod explain_input;
mod explain_live;
mod explain_props;
mod explain_render;
mod flag_checks;
mod krew_manifest;
mod lab;
mod layering;
mod manifest_schema;
mod mermaid_render;
mod rbac_doc;
mod trace_delivery;
mod trace_fake_api;
mod trace_flow;
mod trace_signal;
mod trace_tty;
