//! Content-defined chunking: FastCDC (2020) with a gear table derived from the key,
//! so chunk boundaries (and so chunk sizes) do not fingerprint content to outsiders.
//!
//! The cut points are the dedup contract: the same key, parameters and bytes must give
//! the same chunks forever. `tests::golden_cut_points` pins them.

use fastcdc::v2020::{Normalization, cut_gear, select_masks};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Chunker parameters as recorded in the repository config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
    /// FastCDC normalization level (0-3).
    pub normalization: u8,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min: 512 * 1024,
            avg: 1024 * 1024,
            max: 8 * 1024 * 1024,
            normalization: 1,
        }
    }
}

impl ChunkerParams {
    pub fn validate(&self) -> Result<()> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&(self.min as usize))
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&(self.avg as usize))
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&(self.max as usize))
            && self.min < self.avg
            && self.avg < self.max
            && self.min.is_multiple_of(2)
            && self.avg.is_power_of_two()
            && self.max.is_multiple_of(2)
            && self.normalization <= 3;
        if ok {
            Ok(())
        } else {
            Err(Error::corrupt(format!("config: invalid chunker parameters {self:?}")))
        }
    }
}

pub struct Chunker {
    p: ChunkerParams,
    gear: Vec<u64>,
    gear_ls: Vec<u64>,
    mask_s: u64,
    mask_l: u64,
}

impl Chunker {
    pub fn new(p: ChunkerParams, gear: Vec<u64>) -> Self {
        assert_eq!(gear.len(), 256, "gear table has 256 entries");
        let level = match p.normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        };
        let (mask_s, mask_l) = select_masks(p.avg as usize, level);
        let gear_ls = gear.iter().map(|g| g << 1).collect();
        Chunker {
            p,
            gear,
            gear_ls,
            mask_s,
            mask_l,
        }
    }

    pub fn max_size(&self) -> usize {
        self.p.max as usize
    }

    /// Length of the next chunk at the start of `buf`. `buf` must hold at least `max`
    /// bytes unless it is the end of the stream.
    pub fn next_cut(&self, buf: &[u8]) -> usize {
        if buf.len() <= self.p.min as usize {
            return buf.len();
        }
        let (_, n) = cut_gear(
            buf,
            self.p.min as usize,
            self.p.avg as usize,
            self.p.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        n.max(1)
    }

    /// Chunk up to `limit` bytes read from `r`, calling `emit` with each chunk in order.
    /// `buf` is a reusable buffer. Returns the bytes read. Cut points equal those of
    /// `cuts` on the same bytes: a cut found before the end of the data at hand is final,
    /// because the scan only looks forward.
    pub fn stream<R: std::io::Read>(
        &self,
        r: &mut R,
        limit: u64,
        buf: &mut Vec<u8>,
        mut emit: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<u64> {
        const READ: usize = 1024 * 1024;
        // `buf` keeps its length between calls (it is only ever grown), so its bytes are
        // zeroed once, not once per file; `start..end` is the live data.
        let (min, max) = (self.p.min as usize, self.p.max as usize);
        let (mut start, mut end) = (0usize, 0usize);
        let mut remaining = limit;
        let mut eof = limit == 0;
        let mut total = 0u64;
        loop {
            let avail = end - start;
            if !eof && avail < max {
                if avail > min {
                    let n = self.next_cut(&buf[start..end]);
                    if n < avail {
                        emit(&buf[start..start + n])?;
                        start += n;
                        continue;
                    }
                }
                if start > 0 {
                    buf.copy_within(start..end, 0);
                    end = avail;
                    start = 0;
                }
                let want = READ.min(remaining.min(READ as u64) as usize);
                if buf.len() < end + want {
                    buf.resize(end + want, 0);
                }
                let n = loop {
                    match r.read(&mut buf[end..end + want]) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        other => break other?,
                    }
                };
                end += n;
                remaining -= n as u64;
                total += n as u64;
                if n == 0 || remaining == 0 {
                    eof = true;
                }
                continue;
            }
            if avail == 0 {
                return Ok(total);
            }
            let n = self.next_cut(&buf[start..end]);
            emit(&buf[start..start + n])?;
            start += n;
        }
    }

    /// All cut lengths of a complete buffer (tests and benchmarks).
    pub fn cuts(&self, mut buf: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let n = self.next_cut(buf);
            out.push(n);
            buf = &buf[n..];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keys;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn golden_cut_points() {
        // Pinned: if this changes, every existing repository loses dedup against new data.
        let keys = Keys::from_master([42; 32]);
        let c = Chunker::new(ChunkerParams::default(), keys.gear_table());
        let data = pseudo_random(24 * 1024 * 1024, 0x9E3779B97F4A7C15);
        let cuts = c.cuts(&data);
        assert_eq!(cuts.iter().sum::<usize>(), data.len());
        assert_eq!(cuts, GOLDEN, "FastCDC cut points changed: this breaks dedup");
    }

    const GOLDEN: &[usize] = &[
        1096540, 1676761, 651133, 1370460, 1435870, 652500, 2134000, 840851, 3284715, 1346800, 2500990, 1055430,
        1400563, 1476680, 1430706, 573366, 1250162, 988297,
    ];

    #[test]
    fn streaming_equals_whole_buffer() {
        let keys = Keys::from_master([4; 32]);
        let c = Chunker::new(ChunkerParams::default(), keys.gear_table());
        for len in [0usize, 1, 1000, 600 * 1024, 3 * 1024 * 1024 + 17, 21 * 1024 * 1024] {
            let data = pseudo_random(len, len as u64 + 1);
            let mut got = Vec::new();
            let mut buf = Vec::new();
            let n = c
                .stream(&mut &data[..], u64::MAX, &mut buf, |ch| {
                    got.push(ch.len());
                    Ok(())
                })
                .unwrap();
            assert_eq!(n as usize, len);
            assert_eq!(got, c.cuts(&data), "len {len}");
        }
    }

    #[test]
    fn key_changes_cut_points() {
        let data = pseudo_random(8 * 1024 * 1024, 1);
        let a = Chunker::new(ChunkerParams::default(), Keys::from_master([1; 32]).gear_table());
        let b = Chunker::new(ChunkerParams::default(), Keys::from_master([2; 32]).gear_table());
        assert_ne!(a.cuts(&data), b.cuts(&data));
    }

    #[test]
    fn insertion_resynchronises() {
        let keys = Keys::from_master([3; 32]);
        let c = Chunker::new(ChunkerParams::default(), keys.gear_table());
        let data = pseudo_random(20 * 1024 * 1024, 5);
        let mut shifted = pseudo_random(1024, 9);
        shifted.extend_from_slice(&data);
        let ends = |cuts: Vec<usize>, off: usize| -> Vec<usize> {
            cuts.iter()
                .scan(0, |s, n| {
                    *s += n;
                    Some(*s)
                })
                .filter_map(|e| e.checked_sub(off))
                .collect()
        };
        let a = ends(c.cuts(&data), 0);
        let b = ends(c.cuts(&shifted), 1024);
        let common = a.iter().filter(|e| b.contains(e)).count();
        assert!(
            common + 3 >= a.len(),
            "cut points must resynchronise after an insertion"
        );
    }
}
