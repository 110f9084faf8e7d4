//! How the scheduler places: the strategy and a bound on the size of one plan.

/// `BinPack` fills the fullest pool that fits (fewer, fuller hosts); `Spread` picks the pool
/// with the most room left (load balanced, smaller blast radius).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    #[default]
    BinPack,
    Spread,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerPolicy {
    pub strategy: Strategy,
    /// Most placements in one plan (one Raft entry).
    pub max_placements: usize,
}

impl Default for SchedulerPolicy {
    fn default() -> Self {
        SchedulerPolicy { strategy: Strategy::BinPack, max_placements: 512 }
    }
}
