//! ossterm: a terminal chat app for gpt-oss-20b, with its engine on candle.
//!
//! Data goes one way: keys and engine events -> `tui::App::update` -> state -> `tui::ui::draw`.
//! The engine thread owns the model; the UI owns the app; they share only `engine::Command`
//! (in) and `engine::Event` (out).

pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod engine;
pub mod harmony;
pub mod hub;
pub mod memory;
pub mod model;
pub mod server;
pub mod store;
pub mod tools;
pub mod tui;
