//! An S3-compatible server (`s3s-fs`) serving `--root` (bucket `B` is directory `B`), for the
//! object-storage row of `bench/run` (on a free loopback port) and the compose walkthrough's
//! `objects` service (its own image, `deploy/build-image.sh`). Prints
//! `{"endpoint": "http://HOST:PORT"}` once listening; serves until killed. It accepts the one
//! key pair it is given.

use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    root: std::path::PathBuf,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.access_key.is_empty() || args.secret_key.is_empty() {
        anyhow::bail!("an access key and a secret key are needed");
    }
    let fs = s3s_fs::FileSystem::new(&args.root)
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", args.root.display()))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        args.access_key,
        args.secret_key,
    ));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!(
        "{}",
        serde_json::json!({ "endpoint": format!("http://{}", listener.local_addr()?) })
    );
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
