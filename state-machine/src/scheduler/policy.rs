//! How the scheduler places: the strategy and bounds on the work of one plan.

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
    /// Job classes (same resources and constraints) that get a pool index in one plan; jobs
    /// of further classes are placed by a scan of every pool. Changes speed, not the plan.
    pub max_indexed_classes: usize,
}

impl Default for SchedulerPolicy {
    fn default() -> Self {
        SchedulerPolicy {
            strategy: Strategy::BinPack,
            max_placements: 512,
            max_indexed_classes: 32,
        }
    }
}
