//! One file per headless command; each turns its clap args into work and prints the result.

pub mod app;
pub mod ask;
pub mod bench;
pub mod config;
pub mod download;
pub mod fit;
pub mod generate;
pub mod limits;
pub mod load;
pub mod parse;
pub mod render;
pub mod replica;
pub mod score;
pub mod serve;
pub mod verify;
