//! ossterm's entry point: parse the command line and dispatch.

use clap::Parser;
use ossterm::cli::{Cli, Command};
use ossterm::commands;

fn main() -> anyhow::Result<()> {
    // Large blocks (the preallocated KV cache) stay untouched zero pages until used, so
    // resident memory follows the planner's figures.
    ossterm::memory::allocator::map_large_blocks();
    let cli = Cli::parse();
    match cli.command {
        None => commands::app::run(&cli.app),
        Some(Command::Score(args)) => commands::score::run(&args),
        Some(Command::Generate(args)) => commands::generate::run(&args),
        Some(Command::Bench(args)) => commands::bench::run(&args),
        Some(Command::Fit(args)) => commands::fit::run(&args),
        Some(Command::Render(args)) => commands::render::run(&args),
        Some(Command::Parse(args)) => commands::parse::run(&args),
        Some(Command::Download(args)) => commands::download::run(&args),
        Some(Command::Config(args)) => commands::config::run(&args),
        Some(Command::Verify(args)) => commands::verify::run(&args),
        Some(Command::Replica(args)) => commands::replica::run(&args),
    }
}
