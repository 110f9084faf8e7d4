//! How good a pool is for one job: the ranking both the class index and the linear scan use.

use super::Strategy;
use crate::{Pool, Resources};

/// Smaller is better. Fields compare in order: a GPU pool for a job without GPUs comes last,
/// then the strategy's score. Ties are broken by pool name by the callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rank {
    wastes_gpu: bool,
    score: u64,
}

/// The rank of `pool`, with `free` room and `workers_left` in this plan, for a job asking
/// `req`; `None` if the job does not fit now. Static fit (labels, images) is the caller's.
///
/// Bin-packing scores the dominant share of the room left after placing (the tightest fit
/// wins); spread scores the opposite (the most room left wins).
pub(super) fn rank(
    pool: &Pool,
    free: Resources,
    workers_left: u32,
    req: &Resources,
    strategy: Strategy,
) -> Option<Rank> {
    if workers_left == 0 || !req.fits_within(&free) {
        return None;
    }
    let left_share = free.saturating_sub(req).dominant_share_ppm(&pool.spec.capacity);
    let score = match strategy {
        Strategy::BinPack => left_share,
        Strategy::Spread => 1_000_000 - left_share.min(1_000_000),
    };
    Some(Rank {
        wastes_gpu: req.gpus == 0 && pool.spec.capacity.gpus > 0,
        score,
    })
}
