//! Choosing a pool for one job among those with room.

use super::{PoolRoom, Strategy};
use crate::{Job, State};
use std::collections::BTreeMap;

/// The best pool for `job` under `strategy`, or `None` if none has room.
///
/// Keys, smallest wins: (GPU pool for a job without GPUs, strategy score, name). The name makes
/// the choice deterministic.
pub(super) fn choose_pool<'a>(state: &'a State, rooms: &BTreeMap<&'a str, PoolRoom>, job: &Job, strategy: Strategy) -> Option<&'a str> {
    let req = &job.spec.resources;
    rooms
        .iter()
        .filter(|(_, room)| room.workers_left > 0 && req.fits_within(&room.free))
        .filter_map(|(name, room)| {
            let pool = state.pool(name)?;
            if pool.static_misfit(&job.spec).is_some() {
                return None;
            }
            let left = room.free.saturating_sub(req);
            let left_share = left.dominant_share_ppm(&pool.spec.capacity);
            let score = match strategy {
                Strategy::BinPack => left_share,
                Strategy::Spread => 1_000_000 - left_share.min(1_000_000),
            };
            let wastes_gpu = req.gpus == 0 && pool.spec.capacity.gpus > 0;
            Some(((wastes_gpu, score, *name), *name))
        })
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, name)| name)
}
