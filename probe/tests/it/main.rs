//! The probe's integration tests, as one binary: each former test file is a module here. One
//! file's tests: `cargo test -p realip-probe --test it capture_netns::`.

mod common;

mod capture_caps;
mod capture_netns;
mod deadline;
mod echo;
mod evidence_golden;
mod evidence_kernel;
mod evidence_props;
mod parse_bench;
mod parse_captured;
mod parse_fixtures;
mod parse_frames;
mod parse_pcapfile;
mod parse_props;
