//! Masks secret values in job output before the leader commits it, so a printed secret never
//! enters the Raft log (GitLab's masked variables are the model).
//!
//! Each occurrence is overwritten byte for byte with `*`: the masked output is as long as the
//! worker's, so the offsets `AppendLog` deduplicates by stay those of the worker's stream. A
//! value can straddle two reads, so the leader holds back the last `lookback()` bytes of a
//! running worker's output and reads them again with the next chunk: any occurrence that
//! touches a committed byte then lies wholly inside one masked window.

use memchr::memmem;

/// The byte every masked byte becomes.
pub const MASK_BYTE: u8 = b'*';

#[derive(Clone, Debug, Default)]
pub struct OutputMasker {
    needles: Vec<Vec<u8>>,
}

impl OutputMasker {
    /// A masker of these values (empty ones are ignored).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> OutputMasker {
        let mut needles: Vec<Vec<u8>> = values
            .into_iter()
            .filter(|v| !v.is_empty())
            .map(|v| v.as_bytes().to_vec())
            .collect();
        needles.sort();
        needles.dedup();
        OutputMasker { needles }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Bytes before a commit point that must be read again with the next chunk: one less
    /// than the longest value.
    pub fn lookback(&self) -> usize {
        self.needles.iter().map(Vec::len).max().unwrap_or(1).saturating_sub(1)
    }

    /// Overwrites every occurrence of every value in `window`. Every value is looked for in
    /// the output as it was, before any masking: a value overlapping another's occurrence is
    /// masked too.
    pub fn mask(&self, window: &mut [u8]) {
        let mut ranges = Vec::new();
        for needle in &self.needles {
            ranges.extend(memmem::find_iter(window, needle).map(|start| start..start + needle.len()));
        }
        for range in ranges {
            window[range].fill(MASK_BYTE);
        }
    }
}

/// What to commit of a window read from `window_start`: the masked bytes from `offset` up to
/// the commit point. The commit point holds back `lookback` bytes unless the window reaches
/// the end of a finished worker's output (`final_end`). `None`: nothing can be committed yet.
pub fn committable(
    masker: &OutputMasker,
    window_start: u64,
    mut window: Vec<u8>,
    offset: u64,
    final_end: Option<u64>,
) -> Option<Vec<u8>> {
    masker.mask(&mut window);
    let window_end = window_start + window.len() as u64;
    let commit_end = match final_end {
        Some(end) if window_end >= end => window_end,
        _ => window_end.saturating_sub(masker.lookback() as u64),
    };
    if commit_end <= offset {
        return None;
    }
    let from = (offset - window_start) as usize;
    let to = (commit_end - window_start) as usize;
    Some(window[from..to].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_is_masked_in_place() {
        let m = OutputMasker::new(["s3cr3t-value", "other-secret"]);
        let mut out = b"a s3cr3t-value b other-secret c s3cr3t-value".to_vec();
        let len = out.len();
        m.mask(&mut out);
        assert_eq!(out.len(), len);
        assert_eq!(out, b"a ************ b ************ c ************".to_vec());
    }

    #[test]
    fn overlapping_occurrences_are_both_masked() {
        let m = OutputMasker::new(["abab-abab", "b-abab-x"]);
        let mut out = b"<abab-abab-x>".to_vec();
        m.mask(&mut out);
        assert_eq!(out, b"<***********>".to_vec());
    }

    /// Commits a stream read in chunks of `chunk` bytes, as the leader does, and returns what
    /// was committed.
    fn commit_in_chunks(masker: &OutputMasker, stream: &[u8], chunk: usize, seen_per_round: usize) -> Vec<u8> {
        let mut committed = Vec::new();
        let mut available = 0usize;
        for _ in 0..10_000 {
            available = (available + seen_per_round).min(stream.len());
            let finished = available == stream.len();
            loop {
                let offset = committed.len() as u64;
                let back = (masker.lookback() as u64).min(offset);
                let start = (offset - back) as usize;
                let end = (start + chunk + back as usize).min(available);
                if end <= offset as usize {
                    break;
                }
                let window = stream[start..end].to_vec();
                let final_end = finished.then_some(stream.len() as u64);
                match committable(masker, start as u64, window, offset, final_end) {
                    Some(data) => committed.extend_from_slice(&data),
                    None => break,
                }
            }
            if finished && committed.len() == stream.len() {
                return committed;
            }
        }
        panic!("the stream was not committed within the bound");
    }

    #[test]
    fn a_value_split_across_reads_never_reaches_a_commit() {
        let secret = "split-across-chunks";
        let m = OutputMasker::new([secret]);
        let stream = format!("xx{secret}yyyy{secret}{secret}z").into_bytes();
        // The leader reads more than the lookback past each commit point (64 KiB against at
        // most 64 KiB - 1), so every read moves the commit point on.
        for chunk in m.lookback() + 1..stream.len() + 2 {
            for seen in 1..8 {
                let committed = commit_in_chunks(&m, &stream, chunk, seen);
                assert_eq!(committed.len(), stream.len(), "chunk {chunk} seen {seen}");
                assert!(
                    !committed
                        .windows(4)
                        .any(|w| w == b"spli" || w == b"unks" || w == b"acro"),
                    "chunk {chunk} seen {seen}: {}",
                    String::from_utf8_lossy(&committed)
                );
            }
        }
    }

    #[test]
    fn without_values_nothing_is_held_back() {
        let m = OutputMasker::new([]);
        assert_eq!(m.lookback(), 0);
        assert_eq!(committable(&m, 0, b"abc".to_vec(), 0, None), Some(b"abc".to_vec()));
    }
}
