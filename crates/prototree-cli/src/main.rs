//! `prototree`: neural prototype trees from the command line.

mod commands;
mod overrides;
mod progress;

use clap::Parser;
use prototree::prelude::Interrupter;

use crate::commands::Command;
use crate::progress::CliProgress;

/// Tensor buffers are large and short-lived: mimalloc reuses them instead of mapping
/// fresh pages for each (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "prototree",
    version,
    about = "Interpretable image classification with neural prototype trees"
)]
struct Cli {
    /// Threads for CPU computation (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

/// Ctrl-C (or SIGTERM) during training: the first one lets the current step finish and
/// the run save itself (training polls `interrupter` between batches); a second one quits
/// at once.
fn stop_training_on_interrupt(interrupter: Interrupter) {
    let installed = ctrlc::set_handler(move || {
        if interrupter.is_stopped() {
            eprintln!("\ninterrupted again: quitting now (the last saved checkpoint is intact)");
            std::process::exit(130);
        }
        interrupter.stop();
        eprintln!("\ninterrupt: finishing the current step and saving (Ctrl-C again to quit now)");
    });
    if let Err(e) = installed {
        eprintln!("warning: Ctrl-C will stop training at once, without saving: {e}");
    }
}

/// The command line, or the process ends: help and version print and exit 0; a flag or
/// value clap refuses gives its one-line message and exit code 1, as every other refused
/// input does.
fn parse_command_line() -> Cli {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            // The message's first paragraph on one line: clap puts the names of missing
            // arguments on the lines below its first.
            let rendered = e.render().to_string();
            let head: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
                .collect();
            let first = if head.is_empty() {
                "error: invalid command line".to_string()
            } else {
                head.join(" ")
            };
            eprintln!("{first} (`prototree help` lists the commands and their options)");
            std::process::exit(1)
        }
    }
}

fn main() {
    let cli = parse_command_line();
    if let Some(n) = cli.threads {
        // Read by candle's and rayon's thread pools when they first start.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if prototree::ops::generic_ops_forced() {
        // Said even with --quiet: the environment changed what runs.
        eprintln!(
            "note: {} is set: every op takes its generic (device-independent) path",
            prototree::ops::GENERIC_OPS_ENV
        );
    }
    let interrupter = Interrupter::new();
    if cli.command.trains() {
        stop_training_on_interrupt(interrupter.clone());
    }
    let mut obs = CliProgress::new(cli.quiet);
    let result = cli.command.run(&interrupter, &mut obs);
    if interrupter.is_stopped() {
        eprintln!("interrupted");
    }
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
