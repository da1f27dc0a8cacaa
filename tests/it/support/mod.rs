//! Test support shared by integration tests: the fake API server and cluster fixtures.
#![allow(dead_code)]

pub mod cluster;
pub mod fake_api;
/// What the kernel tests need of the machine: the probe crate's one check helper.
#[path = "../../../probe/tests/it/common/mod.rs"]
pub mod kernel;
pub mod netns_kubelet;

#[allow(unused_imports)]
pub use fake_api::{Change, FakeApi, Fault, Key, LiveLog, LogScript, PodSecurity, Seen};
