//! The operation model: map a chunk of whole records to a keyed [`Partial`]; partials merge
//! associatively ([`Partial::merge`]); the job's partial is finalized by sorting and limiting.
//!
//! Built-in operations implement [`Operation`] and are found by name in a [`Registry`]. A
//! custom build registers its own factories; the coordinator and the worker reject a name they
//! do not know, listing what they know.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::partial::{MergeError, Partial};

/// Operation options by name, as given in the job spec.
pub type Options = BTreeMap<String, String>;

/// What a chunk's map saw, beyond its partial.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    pub records_in: u64,
    pub bytes_in: u64,
    pub bad_records: u64,
}

/// Why a chunk's map failed.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error("{0}")]
    Failed(String),
}

/// A map-reduce operation over chunks of newline-delimited records.
pub trait Operation: Send + Sync + 'static {
    /// Maps one chunk (whole records, in file order) to its partial, folding locally.
    fn map(&self, chunk: &[u8], stats: &mut ChunkStats) -> Result<Partial, MapError>;
}

/// Builds an operation from its options, rejecting options it does not take.
pub type Factory = fn(&Options) -> Result<Arc<dyn Operation>, SpecError>;

/// An operation name or option that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("unknown operation '{name}' (known: {})", known.join(", "))]
    UnknownOperation { name: String, known: Vec<String> },
    #[error("operation '{operation}': {message}")]
    BadOption { operation: String, message: String },
}

/// Operations by name.
#[derive(Clone)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl Registry {
    /// The operations that ship with fanfold.
    pub fn builtin() -> Self {
        let mut registry = Self {
            factories: BTreeMap::new(),
        };
        registry.register(crate::wordcount::NAME, crate::wordcount::factory);
        registry
    }

    /// Adds (or replaces) an operation under `name`.
    pub fn register(&mut self, name: &str, factory: Factory) {
        self.factories.insert(name.to_owned(), factory);
    }

    pub fn names(&self) -> Vec<String> {
        self.factories.keys().cloned().collect()
    }

    /// Builds the named operation with its options.
    pub fn build(&self, name: &str, options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
        let factory = self
            .factories
            .get(name)
            .ok_or_else(|| SpecError::UnknownOperation {
                name: name.to_owned(),
                known: self.names(),
            })?;
        factory(options)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

/// Fails if `options` holds a name outside `allowed`.
pub fn check_options(
    operation: &str,
    options: &Options,
    allowed: &[&str],
) -> Result<(), SpecError> {
    match options.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(SpecError::BadOption {
            operation: operation.to_owned(),
            message: if allowed.is_empty() {
                format!("takes no option, got '{key}'")
            } else {
                format!("unknown option '{key}' (known: {})", allowed.join(", "))
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operation_lists_known_ones() {
        let err = Registry::builtin()
            .build("sort", &Options::new())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "unknown operation 'sort' (known: wordcount)"
        );
    }
}
