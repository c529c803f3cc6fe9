//! Helpers shared by the integration tests.

// Each test binary uses only some of these.
#![allow(dead_code)]

pub mod cli;
pub mod demo_engine;
pub mod fake_hub;
pub mod harmony;
pub mod schema_check;
pub mod serve;
pub mod tmux;
