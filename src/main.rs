//! `eastwest`: the command line. Parses flags, environment and config file, then runs the
//! gateway (`run`), runs the self-contained two-cluster demonstration (`demo`), or makes the
//! mesh's certificates (`certs`), or shows what a running gateway routes to (`clusters`).

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod certs;
mod cli;
mod clusters;
mod demo;
mod logging;
mod run;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run(args) => run::main(*args),
        cli::Command::Demo(args) => demo::main(args),
        cli::Command::Certs(command) => certs::main(command),
        cli::Command::Clusters(args) => clusters::main(args),
    }
}
