//! Parsers for human-friendly flag values, shared by every binary's clap struct.

use std::time::Duration;

/// Parses a size such as `64MiB`, `512KiB`, `1GB` or `4096`.
pub fn size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|s| s.as_u64())
        .map_err(|e| format!("'{text}' is not a size (try 8MiB): {e}"))
}

/// Parses a chunk size and checks it is one a job may ask for (0 would otherwise be taken
/// for "the coordinator's default" on the wire).
pub fn chunk_size(text: &str) -> Result<u64, String> {
    let bytes = size(text)?;
    fanfold_common::spec::check_chunk_size(bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Parses a duration such as `30s`, `500ms` or `2m`.
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("'{text}' is not a duration (try 10s): {e}"))
}

/// How long something is kept: a duration, or `forever` (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime(pub Option<Duration>);

/// Parses a duration, or `forever`.
pub fn lifetime(text: &str) -> Result<Lifetime, String> {
    if text.trim() == "forever" {
        Ok(Lifetime(None))
    } else {
        duration(text).map(|d| Lifetime(Some(d)))
    }
}

/// Turns `host:port` into `http://host:port`; leaves URLs alone.
pub fn endpoint(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty coordinator address".into());
    }
    Ok(if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_size_outside_the_allowed_range_is_refused() {
        assert_eq!(chunk_size("8MiB"), Ok(8 << 20));
        for bad in ["0", "1023", "257MiB"] {
            let error = chunk_size(bad).unwrap_err();
            assert!(
                error.contains("is outside 1024..=268435456 bytes"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn sizes_and_durations_parse_from_human_forms() {
        assert_eq!(size("8MiB"), Ok(8 << 20));
        assert_eq!(size("64 KiB"), Ok(64 << 10));
        assert_eq!(size("4096"), Ok(4096));
        assert!(size("lots").is_err());
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(endpoint("10.0.0.5:7077").unwrap(), "http://10.0.0.5:7077");
        assert_eq!(endpoint("https://c:1").unwrap(), "https://c:1");
    }
}
