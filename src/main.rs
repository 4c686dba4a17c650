//! `eastwest`: the command line. Parses flags, environment and config file, then runs the
//! gateway (`run`) or the self-contained two-cluster demonstration (`demo`).

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod cli;
mod demo;
mod logging;
mod run;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run(args) => run::main(*args),
        cli::Command::Demo(args) => demo::main(args),
    }
}
