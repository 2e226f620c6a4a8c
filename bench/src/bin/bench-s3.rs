//! An S3-compatible server (`s3s-fs`) serving `--root` (bucket `B` is directory `B`), for the
//! object-storage row of `bench/run` (on a free loopback port) and the compose walkthrough's
//! `objects` service (its own image, `deploy/build-image.sh`). Prints
//! `{"endpoint": "http://HOST:PORT"}` once listening; serves until killed. It accepts the one
//! key pair it is given.

use clap::Parser;
use object_store::ObjectStoreExt;

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
    /// Before printing the endpoint, upload each file of DIR as an object of BUCKET (made if
    /// missing), through the server itself (repeatable). Objects uploaded so carry their
    /// ETag; files put beneath --root by hand make the server hash the whole file for every
    /// read, which no real store does.
    #[arg(long, value_name = "DIR=BUCKET")]
    upload: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.access_key.is_empty() || args.secret_key.is_empty() {
        anyhow::bail!("an access key and a secret key are needed");
    }
    if !args.root.is_dir() {
        anyhow::bail!("{}: not a directory", args.root.display());
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let (root, access, secret) = (
        args.root.clone(),
        args.access_key.clone(),
        args.secret_key.clone(),
    );
    let serving =
        tokio::spawn(
            async move { fanfold_bench::s3::serve(listener, &root, &access, &secret).await },
        );
    for upload in &args.upload {
        let (dir, bucket) = upload
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--upload {upload}: DIR=BUCKET"))?;
        std::fs::create_dir_all(args.root.join(bucket))?;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id(&args.access_key)
            .with_secret_access_key(&args.secret_key)
            .build()?;
        let mut files: Vec<_> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.sort();
        for file in files.iter().filter(|f| f.is_file()) {
            let key = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let data = bytes::Bytes::from(std::fs::read(file)?);
            store.put(&key.into(), data.into()).await?;
        }
    }
    println!("{}", serde_json::json!({ "endpoint": endpoint }));
    serving.await?
}
