//! Test support shared by integration tests: the fake API server and cluster fixtures.
#![allow(dead_code)]

pub mod cluster;
pub mod fake_api;

#[allow(unused_imports)]
pub use fake_api::{Change, FakeApi, Fault, Key, LogScript, PodSecurity, Seen};
