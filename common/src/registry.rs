//! Operations by name: the built-in ones, and what a custom build adds. The coordinator and the
//! workers build each job's operation from its name and options here.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::operation::{Factory, Operation, Options, SpecError};
use crate::ops;

/// Operations by name.
#[derive(Clone)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
    programs_allowed: bool,
}

impl Registry {
    /// The operations that ship with fanfold.
    pub fn builtin() -> Self {
        let mut registry = Self {
            factories: BTreeMap::new(),
            programs_allowed: false,
        };
        registry.register(ops::wordcount::NAME, ops::wordcount::factory);
        registry.register(ops::grep::NAME, ops::grep::factory);
        registry.register(ops::groupby::NAME, ops::groupby::factory);
        registry.register(ops::distinct::NAME, ops::distinct::factory);
        registry.register(ops::histogram::NAME, ops::histogram::factory);
        registry.register(ops::index::NAME, ops::index::factory);
        registry.register(ops::sort::NAME, ops::sort::factory);
        registry.register(ops::streaming::NAME, ops::streaming::factory);
        registry
    }

    /// Adds (or replaces) an operation under `name`.
    pub fn register(&mut self, name: &str, factory: Factory) {
        self.factories.insert(name.to_owned(), factory);
    }

    /// Allows (or forbids, the default) operations that run programs, such as streaming.
    pub fn allow_programs(mut self, allowed: bool) -> Self {
        self.programs_allowed = allowed;
        self
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
        let operation = factory(options)?;
        if operation.runs_programs() && !self.programs_allowed {
            return Err(SpecError::ProgramsNotAllowed(name.to_owned()));
        }
        Ok(operation)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_run_only_where_allowed() {
        let options: Options = [("mapper".to_string(), "cat".to_string())].into();
        let err = Registry::builtin()
            .build("streaming", &options)
            .err()
            .unwrap();
        assert_eq!(err, SpecError::ProgramsNotAllowed("streaming".into()));
        assert!(
            Registry::builtin()
                .allow_programs(true)
                .build("streaming", &options)
                .is_ok()
        );
    }

    #[test]
    fn unknown_operation_lists_known_ones() {
        let err = Registry::builtin()
            .build("shuffle", &Options::new())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "unknown operation 'shuffle' (known: distinct, grep, groupby, histogram, index, sort, streaming, wordcount)"
        );
    }
}
