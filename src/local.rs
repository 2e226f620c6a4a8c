//! Local mode: a coordinator and workers in this process, talking gRPC over loopback through
//! the same code paths as a real fleet.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// An in-process cluster; [`LocalCluster::stop`] ends every task it started.
pub struct LocalCluster {
    pub address: String,
    coordinator: (CancellationToken, TaskTracker),
    workers: (CancellationToken, TaskTracker),
}

impl LocalCluster {
    /// Starts a coordinator on a free loopback port and `workers` workers of `slots` slots; the
    /// workers use the coordinator's operation registry.
    /// `http` is the status pages' address, if they are to be served.
    pub async fn start(
        workers: u32,
        slots: u32,
        config: fanfold_coordinator::Config,
        http: Option<&str>,
    ) -> std::io::Result<Self> {
        let listeners = fanfold_coordinator::Listeners::bind("127.0.0.1:0", http).await?;
        let address = format!("http://{}", listeners.grpc.local_addr()?);
        let registry = config.registry.clone();
        let coordinator = (CancellationToken::new(), TaskTracker::new());
        let token = coordinator.0.clone();
        coordinator.1.spawn(async move {
            if let Err(e) = fanfold_coordinator::run(listeners, config, token).await {
                tracing::error!(error = %e, "local coordinator failed");
            }
        });
        let fleet = (CancellationToken::new(), TaskTracker::new());
        for i in 0..workers {
            let mut worker = fanfold_worker::Config::new(&address, format!("local-{i}"), slots);
            worker.max_backoff = Duration::from_millis(200);
            worker.registry = registry.clone();
            // Same machine, same files: workers read their chunks themselves.
            worker.shared_storage = true;
            let token = fleet.0.clone();
            fleet.1.spawn(async move {
                if let Err(e) = fanfold_worker::run(worker, token).await {
                    tracing::error!(error = %fanfold_common::error_chain(&e), "local worker failed");
                }
            });
        }
        Ok(LocalCluster {
            address,
            coordinator,
            workers: fleet,
        })
    }

    /// Stops the workers, then the coordinator, and waits for all of them.
    pub async fn stop(self) {
        for (token, tasks) in [self.workers, self.coordinator] {
            token.cancel();
            tasks.close();
            tasks.wait().await;
        }
    }
}
