//! How much memory RocksDB may hold, and the options every column family opens with.
//!
//! Left to its defaults, RocksDB gives each column family its own memtables (64 MiB, and a
//! second one while the first flushes) and its own 32 MiB block cache, and keeps every table's
//! index and filter blocks in memory outside any cache. With four column families that is a
//! bound of about 700 MiB that a node fills slowly under a steady load, which reads as a leak:
//! resident memory grew for minutes at a constant state size. Here the memtables of all column
//! families share one budget (RocksDB's write buffer manager flushes the largest when the sum
//! passes it) and the blocks, indexes and filters of every table share one LRU cache, so what
//! RocksDB holds is bounded by two numbers a node's operator sets. Its write-ahead log, on
//! disk, is bounded by twice the memtables' budget.

use rocksdb::{BlockBasedOptions, Cache, Options};

/// RocksDB's memory budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageMemory {
    /// Memtables of all column families together.
    pub memtables_bytes: usize,
    /// The block cache every table shares (data, index and filter blocks).
    pub block_cache_bytes: usize,
}

/// 64 MiB of memtables and a 32 MiB cache (one column family's defaults, for all of them).
pub const DEFAULT_MEMTABLES_BYTES: usize = 64 << 20;
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 32 << 20;
/// Smallest budgets accepted: below them RocksDB flushes or evicts on nearly every write.
pub const MIN_MEMTABLES_BYTES: usize = 4 << 20;
pub const MIN_BLOCK_CACHE_BYTES: usize = 1 << 20;
/// Column families that take writes (logs, meta, output, history): each memtable gets an
/// equal share of the budget, so one busy family fills its share before it flushes.
const WRITTEN_FAMILIES: usize = 4;

impl Default for StorageMemory {
    fn default() -> Self {
        StorageMemory {
            memtables_bytes: DEFAULT_MEMTABLES_BYTES,
            block_cache_bytes: DEFAULT_BLOCK_CACHE_BYTES,
        }
    }
}

/// What RocksDB holds now, as it counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageMemoryReading {
    /// All memtables, including those being flushed.
    pub memtables_bytes: u64,
    /// The shared block cache's use.
    pub block_cache_bytes: u64,
    /// Table readers' memory outside the cache (small: indexes and filters are cached).
    pub table_readers_bytes: u64,
}

/// The options the database and each column family open with, and the cache they share.
pub(crate) struct RocksOptions {
    pub db: Options,
    pub family: Options,
    pub cache: Cache,
}

impl StorageMemory {
    pub(crate) fn options(&self) -> RocksOptions {
        let memtables = self.memtables_bytes.max(MIN_MEMTABLES_BYTES);
        let cache = Cache::new_lru_cache(self.block_cache_bytes.max(MIN_BLOCK_CACHE_BYTES));
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        // The newest tables' indexes stay in the cache, so reads of recent keys never miss them.
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut family = Options::default();
        family.set_block_based_table_factory(&table);
        family.set_write_buffer_size(memtables / WRITTEN_FAMILIES);
        family.set_max_write_buffer_number(2);
        let mut db = family.clone();
        db.create_if_missing(true);
        db.create_missing_column_families(true);
        db.set_db_write_buffer_size(memtables);
        // A family written rarely (`meta`: votes, the committed id) keeps its few writes in a
        // memtable that never fills, and every WAL file since its first write stays on disk
        // for it: 511 MiB after ten minutes of 200 pipelines a second. Past this total the
        // families holding the oldest WAL are flushed and it is deleted. (RocksDB's own bound
        // is four times all the memtables: 640 MiB here, 2.5 GiB with its defaults.)
        db.set_max_total_wal_size((2 * memtables) as u64);
        RocksOptions { db, family, cache }
    }
}

/// Reads RocksDB's own count of the memory `db` and `cache` hold.
pub(crate) fn read(db: &rocksdb::DB, cache: &Cache) -> Result<StorageMemoryReading, rocksdb::Error> {
    let stats = rocksdb::perf::get_memory_usage_stats(Some(&[db]), Some(&[cache]))?;
    Ok(StorageMemoryReading {
        memtables_bytes: stats.mem_table_total,
        block_cache_bytes: stats.cache_total,
        table_readers_bytes: stats.mem_table_readers_total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of `families` in `dir` with the smallest budgets, and its options.
    fn open_at_the_minimums(dir: &std::path::Path, families: &[&str]) -> (rocksdb::DB, RocksOptions) {
        let o = StorageMemory {
            memtables_bytes: MIN_MEMTABLES_BYTES,
            block_cache_bytes: MIN_BLOCK_CACHE_BYTES,
        }
        .options();
        let descriptors = families
            .iter()
            .map(|n| rocksdb::ColumnFamilyDescriptor::new(*n, o.family.clone()));
        let db = rocksdb::DB::open_cf_descriptors(&o.db, dir, descriptors).unwrap();
        (db, o)
    }

    #[test]
    fn the_memtables_stay_within_their_budget_under_writes_far_larger() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["a", "b", "c", "d"];
        let (db, o) = open_at_the_minimums(dir.path(), &names);
        let value = vec![7u8; 4096];
        let mut most = 0;
        // 64 MiB written across the families, 16 times the budget.
        for i in 0..16_384u32 {
            let cf = db.cf_handle(names[i as usize % names.len()]).unwrap();
            db.put_cf(&cf, i.to_be_bytes(), &value).unwrap();
            if i % 256 == 0 {
                most = most.max(read(&db, &o.cache).unwrap().memtables_bytes);
            }
        }
        let end = read(&db, &o.cache).unwrap();
        most = most.max(end.memtables_bytes);
        assert!(most > 0, "the reading sees the memtables");
        // Flushes run in the background while writes go on, so the sum may pass the budget for
        // a while; RocksDB's defaults would hold all 64 MiB (16 MiB a family, below their
        // 64 MiB memtables).
        let bound = 3 * MIN_MEMTABLES_BYTES as u64;
        assert!(
            most <= bound,
            "memtables reached {most} bytes, budget {MIN_MEMTABLES_BYTES}"
        );
        assert!(end.block_cache_bytes <= MIN_BLOCK_CACHE_BYTES as u64);
    }

    fn wal_bytes(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn a_family_written_once_does_not_keep_every_wal_file_since() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = open_at_the_minimums(dir.path(), &["logs", "meta"]);
        // One write to `meta` (as a vote is), then 96 MiB through the WAL to `logs`.
        db.put_cf(&db.cf_handle("meta").unwrap(), b"vote", b"1").unwrap();
        let logs = db.cf_handle("logs").unwrap();
        let value = vec![7u8; 4096];
        let mut most = 0;
        for i in 0..24_576u32 {
            db.put_cf(&logs, i.to_be_bytes(), &value).unwrap();
            if i % 1024 == 0 {
                most = most.max(wal_bytes(dir.path()));
            }
        }
        most = most.max(wal_bytes(dir.path()));
        // Bounded by twice the memtables (8 MiB) and the file being written; RocksDB's own
        // bound (four times every family's two memtables) would let it reach 24 MiB here.
        let bound = 4 * MIN_MEMTABLES_BYTES as u64;
        assert!(most <= bound, "the WAL reached {most} bytes");
    }
}
