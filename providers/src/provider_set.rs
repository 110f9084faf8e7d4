//! The providers a node can drive, by the kind pools name (`provider: docker`), each behind
//! its own retry and circuit breaker so one provider's outage leaves the others working.

use crate::any_provider::AnyProvider;
use crate::guarded::{GuardConfig, Guarded};
use flotilla_state_machine::ProviderKind;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct ProviderSet {
    providers: BTreeMap<ProviderKind, Guarded<AnyProvider>>,
}

impl ProviderSet {
    pub fn new() -> Self {
        ProviderSet::default()
    }

    pub fn with(mut self, kind: ProviderKind, provider: AnyProvider, guard: GuardConfig) -> Self {
        self.providers.insert(kind, Guarded::new(provider, guard));
        self
    }

    pub fn get(&self, kind: ProviderKind) -> Option<&Guarded<AnyProvider>> {
        self.providers.get(&kind)
    }

    pub fn iter(&self) -> impl Iterator<Item = (ProviderKind, &Guarded<AnyProvider>)> {
        self.providers.iter().map(|(k, p)| (*k, p))
    }
}
