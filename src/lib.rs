//! What the `coordinator`, `worker` and `submit-job` binaries are made of, so a custom build can
//! reuse it: the coordinator's and worker's flags (`config`), `submit-job`'s commands
//! (`commands`), flag parsing helpers, shutdown on signals, the job client, result output and
//! local mode.

pub mod client;
pub mod commands;
pub mod config;
pub mod flags;
pub mod local;
pub mod output;
pub mod progress;

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    token
}
