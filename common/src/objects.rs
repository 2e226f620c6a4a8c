//! Object storage: the source behind [`crate::location::Location::Object`], through the
//! `object_store` crate. S3 and S3-compatible servers (`s3://`, `s3a://`), Google Cloud Storage
//! (`gs://`) and Azure Blob Storage (`az://`, `abfs://`, `abfss://`, `azure://`).
//!
//! Credentials, endpoints and regions come from each cloud's usual environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ALLOW_HTTP`; `GOOGLE_SERVICE_ACCOUNT`...; `AZURE_STORAGE_ACCOUNT_NAME`...), read by the
//! crate's builders when a bucket is first used; nothing here logs or prints them. One client
//! per bucket is kept for the life of the process. Transient errors (timeouts, 5xx,
//! throttling) are retried inside each call with backoff, up to [`RETRY_TIMEOUT`]; a missing
//! object or a refused credential is not retried.
//!
//! Callers are synchronous (planning and mapping run on blocking threads): every call runs on
//! a small runtime of its own and the caller waits for it, so it works from any thread that
//! is not itself driving async tasks.

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

/// How long one call keeps retrying transient errors.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// Parts of an upload larger than this go up as a multipart upload, in parts this large.
pub const MULTIPART_BYTES: usize = 8 << 20;

/// An object URL cut into its parts: `scheme://bucket/key`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectUrl {
    pub scheme: String,
    pub bucket: String,
    /// The key, without a leading `/`; empty for the whole bucket.
    pub key: String,
}

/// Whether `scheme` names an object store fanfold reads.
pub fn is_object_scheme(scheme: &str) -> bool {
    matches!(
        scheme,
        "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "azure"
    )
}

impl ObjectUrl {
    /// Cuts `text` (`s3://bucket/key`); `None` if it is not an object URL with a bucket.
    /// Glob characters and `?` are kept in the key as written: the text is not parsed as a
    /// URL with a query.
    pub fn parse(text: &str) -> Option<ObjectUrl> {
        let (scheme, rest) = text.split_once("://")?;
        if !is_object_scheme(scheme) {
            return None;
        }
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return None;
        }
        Some(ObjectUrl {
            scheme: scheme.to_owned(),
            bucket: bucket.to_owned(),
            key: key.trim_start_matches('/').to_owned(),
        })
    }

    /// `scheme://bucket`: what one client serves.
    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme, self.bucket)
    }

    /// The URL of `key` in the same bucket.
    pub fn with_key(&self, key: &str) -> String {
        format!("{}/{key}", self.base())
    }

    /// The key as the store names it: as listed, not percent-encoded (a key with `%`, `=` or
    /// `*` must reach the same object it was listed as).
    fn path(&self) -> ObjectPath {
        key_path(&self.key)
    }
}

impl std::fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base(), self.key)
    }
}

/// A key as a path: parsed as is where it is a valid path, encoded otherwise.
fn key_path(key: &str) -> ObjectPath {
    ObjectPath::parse(key).unwrap_or_else(|_| ObjectPath::from(key))
}

/// An ETag without quotes or a weak marker: listings and headers spell them differently
/// (Azure lists `0x8D..` and answers `"0x8D.."`).
fn plain_etag(etag: Option<String>) -> Option<String> {
    etag.map(|e| e.trim_start_matches("W/").trim_matches('"').to_owned())
}

/// One object found by a listing or a head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// The runtime every store call runs on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fanfold-store")
            .enable_all()
            .build()
            .expect("the object-store runtime starts")
    })
}

/// Runs `future` on the store runtime and waits for it.
fn wait<T: Send + 'static>(
    future: impl std::future::Future<Output = io::Result<T>> + Send + 'static,
) -> io::Result<T> {
    let handle = runtime().spawn(future);
    futures::executor::block_on(handle).map_err(|e| io::Error::other(e.to_string()))?
}

/// The client for `url`'s bucket, built from the environment the first time.
fn store(url: &ObjectUrl) -> io::Result<Arc<dyn ObjectStore>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let base = url.base();
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(store) = stores.get(&base) {
        return Ok(Arc::clone(store));
    }
    let retry = object_store::RetryConfig {
        retry_timeout: RETRY_TIMEOUT,
        ..Default::default()
    };
    let built: object_store::Result<Arc<dyn ObjectStore>> = match url.scheme.as_str() {
        "s3" | "s3a" => from_env(
            "AWS_",
            object_store::aws::AmazonS3Builder::new(),
            |b, k: object_store::aws::AmazonS3ConfigKey, v| b.with_config(k, v),
        )
        .with_url(&base)
        .with_retry(retry)
        .build()
        .map(|s| Arc::new(s) as _),
        "gs" => from_env(
            "GOOGLE_",
            object_store::gcp::GoogleCloudStorageBuilder::new(),
            |b, k: object_store::gcp::GoogleConfigKey, v| b.with_config(k, v),
        )
        .with_url(&base)
        .with_retry(retry)
        .build()
        .map(|s| Arc::new(s) as _),
        _ => from_env(
            "AZURE_",
            object_store::azure::MicrosoftAzureBuilder::new(),
            |b, k: object_store::azure::AzureConfigKey, v| b.with_config(k, v),
        )
        .with_url(&base)
        .with_retry(retry)
        .build()
        .map(|s| Arc::new(s) as _),
    };
    let store = built.map_err(|e| failure(&base, e))?;
    stores.insert(base, Arc::clone(&store));
    Ok(store)
}

/// A builder configured from the environment variables of one cloud (`prefix`), as the
/// crate's `from_env` does, except that empty ones are left out: a deployment that passes
/// every variable through, set or not, gets the cloud's defaults for the unset ones.
fn from_env<B, K: std::str::FromStr>(
    prefix: &str,
    builder: B,
    set: impl Fn(B, K, String) -> B,
) -> B {
    let mut builder = builder;
    for (key, value) in std::env::vars_os() {
        if let (Some(key), Some(value)) = (key.to_str(), value.to_str())
            && key.starts_with(prefix)
            && !value.is_empty()
            && let Ok(config) = key.to_ascii_lowercase().parse::<K>()
        {
            builder = set(builder, config, value.to_owned());
        }
    }
    builder
}

/// A store error as an I/O error of the matching kind, naming the URL. The crate's messages
/// name paths, statuses and the server's reply, never credentials.
fn failure(url: &str, error: object_store::Error) -> io::Error {
    use object_store::Error as E;
    let kind = match &error {
        E::NotFound { .. } => io::ErrorKind::NotFound,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
        E::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
        E::Precondition { .. } => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::Other,
    };
    let text = describe(&error);
    io::Error::new(kind, format!("{url}: {text}"))
}

fn describe(error: &object_store::Error) -> String {
    match error {
        object_store::Error::NotFound { .. } => "no such object or bucket".to_owned(),
        object_store::Error::Precondition { .. } => {
            "the object changed since the job was planned (its ETag differs)".to_owned()
        }
        other => redact_queries(&crate::error_chain(other)),
    }
}

/// `text` with the query of every URL in it cut: a signed or SAS URL carries its credential
/// there, and an error must not.
fn redact_queries(text: &str) -> String {
    static QUERY: OnceLock<regex::Regex> = OnceLock::new();
    QUERY
        .get_or_init(|| regex::Regex::new(r"(https?://[^\s?]*)\?[^\s]*").expect("a valid pattern"))
        .replace_all(text, "$1?…")
        .into_owned()
}

/// The object at `url` (size and ETag), or `None` if there is none.
pub fn head(url: &ObjectUrl) -> io::Result<Option<Object>> {
    let store = store(url)?;
    let (path, name) = (url.path(), url.to_string());
    wait(async move {
        match store.head(&path).await {
            Ok(meta) => Ok(Some(Object {
                key: meta.location.to_string(),
                size: meta.size,
                etag: plain_etag(meta.e_tag),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failure(&name, e)),
        }
    })
}

/// Every object whose key starts with `prefix` (a key prefix, or a "directory" ending in
/// `/`), in key order. Fails once more than `max` are found.
pub fn list(url: &ObjectUrl, max: usize) -> io::Result<Vec<Object>> {
    let store = store(url)?;
    let (prefix, name) = (url.key.clone(), url.to_string());
    wait(async move {
        // The crate lists by whole path segments: list the segments' directory, then keep
        // what starts with the prefix as written.
        let dir = match prefix.rfind('/') {
            Some(i) => key_path(&prefix[..i]),
            None => ObjectPath::from(""),
        };
        let mut found = Vec::new();
        let mut listing = store.list((!dir.as_ref().is_empty()).then_some(&dir));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| failure(&name, e))?;
            let key = meta.location.to_string();
            if key.starts_with(&prefix) {
                found.push(Object {
                    key,
                    size: meta.size,
                    etag: plain_etag(meta.e_tag),
                });
                if found.len() > max {
                    return Err(io::Error::other(format!(
                        "{name}: more than {max} objects are listed beneath it (--max-inputs)"
                    )));
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    })
}

/// Reads bytes `range` of the object at `url`. With `etag`, the object must still be that
/// version (checked by the server with If-Match, and again here on the reply).
pub fn read_range(url: &ObjectUrl, range: Range<u64>, etag: Option<&str>) -> io::Result<Bytes> {
    let store = store(url)?;
    let (path, name) = (url.path(), url.to_string());
    let etag = etag.map(str::to_owned);
    let want = range.end - range.start;
    wait(async move {
        if want == 0 {
            return Ok(Bytes::new());
        }
        let options = GetOptions {
            if_match: etag.as_ref().map(|e| format!("\"{e}\"")),
            range: Some(GetRange::Bounded(range)),
            ..Default::default()
        };
        let got = store
            .get_opts(&path, options)
            .await
            .map_err(|e| failure(&name, e))?;
        if let (Some(planned), Some(now)) = (&etag, plain_etag(got.meta.e_tag.clone()))
            && *planned != now
        {
            return Err(changed(&name));
        }
        let bytes = got.bytes().await.map_err(|e| failure(&name, e))?;
        if bytes.len() as u64 != want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: the object is shorter than when the job was planned"),
            ));
        }
        Ok(bytes)
    })
}

fn changed(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{name}: the object changed since the job was planned (its ETag differs)"),
    )
}

/// Whether `error` (from [`read_range`]) says the object is not the one planned: a changed
/// or shorter object, or one that is gone. Retrying cannot help.
pub fn is_changed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::NotFound
    )
}

/// Writes `data` to the object at `url`, as one request or, when large, a multipart upload.
/// Readers never see a partial object.
pub fn put(url: &ObjectUrl, data: Bytes) -> io::Result<()> {
    let store = store(url)?;
    let (path, name) = (url.path(), url.to_string());
    wait(async move {
        if data.len() <= MULTIPART_BYTES {
            store
                .put(&path, PutPayload::from(data))
                .await
                .map_err(|e| failure(&name, e))?;
            return Ok(());
        }
        let upload = store
            .put_multipart(&path)
            .await
            .map_err(|e| failure(&name, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_BYTES);
        for piece in data.chunks(MULTIPART_BYTES) {
            if let Err(e) = writer.wait_for_capacity(4).await {
                let _ = writer.abort().await;
                return Err(failure(&name, e));
            }
            writer.put(data.slice_ref(piece));
        }
        writer.finish().await.map_err(|e| failure(&name, e))?;
        Ok(())
    })
}

/// Deletes the object at `url`; one that is not there is no error.
pub fn delete(url: &ObjectUrl) -> io::Result<()> {
    let store = store(url)?;
    let (path, name) = (url.path(), url.to_string());
    wait(async move {
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failure(&name, e)),
        }
    })
}

/// Reads the whole object at `url`, or `None` if there is none.
pub fn read(url: &ObjectUrl) -> io::Result<Option<Bytes>> {
    let store = store(url)?;
    let (path, name) = (url.path(), url.to_string());
    wait(async move {
        match store.get(&path).await {
            Ok(got) => got.bytes().await.map(Some).map_err(|e| failure(&name, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failure(&name, e)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_cut_into_scheme_bucket_and_key() {
        let url = ObjectUrl::parse("s3://logs/2026-11-*/a?.jsonl.gz").unwrap();
        assert_eq!(
            (url.scheme.as_str(), url.bucket.as_str(), url.key.as_str()),
            ("s3", "logs", "2026-11-*/a?.jsonl.gz")
        );
        assert_eq!(url.to_string(), "s3://logs/2026-11-*/a?.jsonl.gz");
        assert_eq!(ObjectUrl::parse("gs://b").unwrap().key, "");
        assert_eq!(ObjectUrl::parse("az://c/").unwrap().key, "");
        assert!(ObjectUrl::parse("s3:///key").is_none());
        assert!(ObjectUrl::parse("http://host/key").is_none());
        assert!(ObjectUrl::parse("/local/path").is_none());
    }

    #[test]
    fn errors_keep_no_url_query() {
        let text = "Error performing GET https://acct.blob.core.windows.net/c/k?sv=2022&sig=SECRET \
                    in 1s: 403";
        let redacted = redact_queries(text);
        assert!(!redacted.contains("SECRET"), "{redacted}");
        assert!(
            redacted.contains("https://acct.blob.core.windows.net/c/k?…"),
            "{redacted}"
        );
        assert_eq!(redact_queries("http://h/k in 1s"), "http://h/k in 1s");
    }
}
