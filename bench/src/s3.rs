//! An S3-compatible server (`s3s-fs`) over a directory: bucket `B` is directory `B`, object
//! `B/K` is file `B/K`. Requests are signed and checked with one key pair. Served by
//! `bench-s3` (the benchmark's and the compose walkthrough's store) and by the tests, in
//! their own process.

use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;

/// Serves the buckets beneath `root` on `listener` until the task is dropped or aborted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    root: &Path,
    access_key: &str,
    secret_key: &str,
) -> anyhow::Result<()> {
    let fs =
        s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("{}: {e:?}", root.display()))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
    let service = builder.build();
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
