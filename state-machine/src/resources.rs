//! The resource vector that jobs request and pools offer.
//!
//! All arithmetic is checked: an overflow is a bug in the caller, never a wrap-around that
//! would let a pool look emptier than it is.

use serde::{Deserialize, Serialize};
use std::fmt;

/// CPU in thousandths of a core, memory in MiB, whole GPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_mib: u64,
    #[serde(default)]
    pub gpus: u32,
}

impl Resources {
    pub const ZERO: Resources = Resources {
        cpu_millis: 0,
        memory_mib: 0,
        gpus: 0,
    };

    pub const fn new(cpu_millis: u64, memory_mib: u64, gpus: u32) -> Self {
        Resources {
            cpu_millis,
            memory_mib,
            gpus,
        }
    }

    /// True when every dimension of `self` is at most the same dimension of `other`.
    pub fn fits_within(&self, other: &Resources) -> bool {
        self.cpu_millis <= other.cpu_millis && self.memory_mib <= other.memory_mib && self.gpus <= other.gpus
    }

    pub fn checked_add(&self, other: &Resources) -> Option<Resources> {
        Some(Resources {
            cpu_millis: self.cpu_millis.checked_add(other.cpu_millis)?,
            memory_mib: self.memory_mib.checked_add(other.memory_mib)?,
            gpus: self.gpus.checked_add(other.gpus)?,
        })
    }

    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        Some(Resources {
            cpu_millis: self.cpu_millis.checked_sub(other.cpu_millis)?,
            memory_mib: self.memory_mib.checked_sub(other.memory_mib)?,
            gpus: self.gpus.checked_sub(other.gpus)?,
        })
    }

    /// Saturating difference, for free-capacity views where allocation may exceed a bound.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_mib: self.memory_mib.saturating_sub(other.memory_mib),
            gpus: self.gpus.saturating_sub(other.gpus),
        }
    }

    /// The largest share, in parts per million, that `self` takes of `total` over the
    /// dimensions `total` has (the "dominant share" of DRF). A dimension `total` lacks but
    /// `self` needs counts as a full share.
    pub fn dominant_share_ppm(&self, total: &Resources) -> u64 {
        fn share(used: u64, total: u64) -> u64 {
            match (used, total) {
                (0, _) => 0,
                (_, 0) => 1_000_000,
                (u, t) => ((u as u128 * 1_000_000) / t as u128).min(1_000_000) as u64,
            }
        }
        share(self.cpu_millis, total.cpu_millis)
            .max(share(self.memory_mib, total.memory_mib))
            .max(share(self.gpus as u64, total.gpus as u64))
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu={}m mem={}MiB gpus={}",
            self.cpu_millis, self.memory_mib, self.gpus
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_and_arithmetic() {
        let a = Resources::new(500, 256, 0);
        let b = Resources::new(1000, 512, 1);
        assert!(a.fits_within(&b));
        assert!(!b.fits_within(&a));
        assert_eq!(b.checked_sub(&a), Some(Resources::new(500, 256, 1)));
        assert_eq!(a.checked_sub(&b), None);
        assert_eq!(a.checked_add(&a), Some(Resources::new(1000, 512, 0)));
        assert_eq!(
            Resources::new(u64::MAX, 0, 0).checked_add(&Resources::new(1, 0, 0)),
            None
        );
    }

    #[test]
    fn dominant_share_takes_the_largest_dimension() {
        let total = Resources::new(4000, 1000, 0);
        assert_eq!(Resources::new(1000, 500, 0).dominant_share_ppm(&total), 500_000);
        assert_eq!(Resources::new(0, 0, 1).dominant_share_ppm(&total), 1_000_000);
        assert_eq!(Resources::ZERO.dominant_share_ppm(&total), 0);
    }
}
