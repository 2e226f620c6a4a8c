//! An S3-compatible server (`s3s-fs`) on a free loopback port, serving `--root` (bucket `B`
//! is directory `B`), for the object-storage row of `bench/run`. Prints
//! `{"endpoint": "http://127.0.0.1:PORT"}` once listening; serves until killed.

use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    root: std::path::PathBuf,
    #[arg(long)]
    access_key: String,
    #[arg(long)]
    secret_key: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fs = s3s_fs::FileSystem::new(&args.root)
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", args.root.display()))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        args.access_key,
        args.secret_key,
    ));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
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
