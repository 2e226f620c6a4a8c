//! `submit-job`: submit, follow, inspect and cancel fanfold jobs, or run one locally. The
//! commands live in `fanfold::commands`; this parses and calls.

use std::process::ExitCode;

use clap::Parser;
use fanfold::commands::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    fanfold_common::telemetry::init(false, "warn");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(cli.execute()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("submit-job: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
