//! ossterm's entry point: parse the command line and dispatch.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use ossterm::cli::{Cli, Command};
use ossterm::commands;

fn main() -> ExitCode {
    // Large blocks (the preallocated KV cache) stay untouched zero pages until used, so
    // resident memory follows the planner's figures.
    ossterm::memory::allocator::map_large_blocks();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`ossterm render ... | head`): stop quietly with success, as
        // ripgrep does; nobody is left to read an error.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // stderr may be closed too; there is nothing more to do then.
            let _ = writeln!(std::io::stderr(), "Error: {error:?}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
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
        Some(Command::Serve(args)) => commands::serve::run(&args),
        Some(Command::Ask(args)) => commands::ask::run(&args),
    }
}

/// Whether `error` comes from writing to a pipe whose reader has closed it.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
