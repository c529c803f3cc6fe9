//! The terminal app: state and update (`app`), keys, terminal setup/restore, markdown and
//! code highlighting, themes, and one drawing module per pane (`ui`).

pub mod app;
pub mod doc;
pub mod highlight;
pub mod input;
pub mod keys;
pub mod markdown;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod wrap;
