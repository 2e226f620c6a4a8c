//! A real S3-compatible server (`s3s-fs`, `fanfold_bench::s3`, the one `bench-s3` serves) on
//! a loopback port, in the test process, serving a temporary directory: bucket `B` is
//! directory `B`, object `B/K` is file `B/K`, so a test writes, changes and inspects objects
//! as files. Requests are signed and checked with the server's one key pair.

use std::path::{Path, PathBuf};

pub const ACCESS_KEY: &str = "fanfold-test-access";
pub const SECRET_KEY: &str = "fanfold-test-secret-key";

/// The running server; stopped when dropped.
pub struct S3 {
    pub endpoint: String,
    root: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
}

impl S3 {
    pub fn start() -> S3 {
        let root = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let dir = root.path().to_path_buf();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            fanfold_bench::s3::serve(listener, &dir, ACCESS_KEY, SECRET_KEY).await
        });
        S3 {
            endpoint,
            root,
            runtime: Some(runtime),
        }
    }

    /// Creates bucket `name`; returns its directory.
    pub fn bucket(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Where object `bucket/key` lives as a file.
    pub fn file(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }

    /// Writes object `bucket/key`.
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) -> PathBuf {
        let path = self.file(bucket, key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        path
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The environment a process reads this server with, as each cloud's variables say.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_with_secret(SECRET_KEY)
    }

    /// The same with another secret key: every request is refused.
    pub fn env_with_secret(&self, secret: &str) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
