//! Tenant names interned to numbers, so that an index entry or a compact record holds a
//! number rather than a copy of the name.
//!
//! Numbers are given in the log's order, so every replica gives the same ones, and never
//! reused. Each name counts the records that use it and goes with the last of them, so the
//! table is bounded by the records, not by every name ever seen.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A tenant's number, given in the log's order (the same on every replica).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct TenantNo(pub(crate) u64);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TenantNames {
    numbers: BTreeMap<String, (TenantNo, u64)>,
    names: BTreeMap<TenantNo, String>,
    next: u64,
}

impl TenantNames {
    /// The number of `tenant`, given now if it has none; one more record uses it.
    pub(crate) fn acquire(&mut self, tenant: &str) -> TenantNo {
        if let Some((no, uses)) = self.numbers.get_mut(tenant) {
            *uses += 1;
            return *no;
        }
        let no = TenantNo(self.next);
        self.next += 1;
        self.numbers.insert(tenant.to_string(), (no, 1));
        self.names.insert(no, tenant.to_string());
        no
    }

    /// One record of `tenant` fewer.
    pub(crate) fn release(&mut self, tenant: &str) {
        if let Some((no, uses)) = self.numbers.get_mut(tenant) {
            *uses = uses.saturating_sub(1);
            if *uses == 0 {
                let no = *no;
                self.numbers.remove(tenant);
                self.names.remove(&no);
            }
        }
    }

    pub(crate) fn get(&self, tenant: &str) -> Option<TenantNo> {
        self.numbers.get(tenant).map(|(no, _)| *no)
    }

    /// The name numbered `no`, while a record uses it.
    pub(crate) fn name(&self, no: TenantNo) -> Option<&str> {
        self.names.get(&no).map(String::as_str)
    }

    pub(crate) fn uses(&self, tenant: &str) -> u64 {
        self.numbers.get(tenant).map_or(0, |(_, uses)| *uses)
    }

    /// Every name in use, in name order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.numbers.keys().map(String::as_str)
    }

    /// Whether the two maps agree (an invariant).
    pub(crate) fn consistent(&self) -> bool {
        self.numbers.len() == self.names.len()
            && self
                .numbers
                .iter()
                .all(|(name, (no, uses))| *uses > 0 && self.names.get(no) == Some(name))
    }
}
