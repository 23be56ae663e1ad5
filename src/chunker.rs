//! Content-defined chunking: FastCDC (2020) with a gear table derived from the key,
//! so chunk boundaries (and so chunk sizes) do not fingerprint content to outsiders.
//!
//! One rule is added to FastCDC: a run of at least `run` copies of one byte value ends a
//! chunk where the run ends (format-spec §15, "Runs"). Zero-filled regions (preallocated
//! database pages, disk images, padding) are where FastCDC's gear hash cannot cut: the hash
//! is constant over a run, so the chunk around a run ends at a random point in the data
//! after it, and an edit anywhere before that point changes the whole chunk. Cutting at the
//! run's end makes the data after a run start a chunk of its own. A run counts from where it
//! begins in the region, also when a cut divided it (the `Carry` between chunks).
//!
//! The cut points are the dedup contract: the same key, parameters and bytes must give
//! the same chunks forever. `tests::golden_cut_points` and `tests::golden_run_cuts` pin them.

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
    /// A run of at least this many copies of one byte value ends a chunk where the run
    /// ends; 0 turns the rule off (repositories made before config version 2).
    pub run: u32,
    /// Finer chunks for large files (config version 3; `None` in older repositories):
    /// every file of at least `from` bytes is cut with these sizes instead.
    pub large: Option<LargeFiles>,
}

/// The chunk sizes of large files: disk images, databases and archives change in small
/// scattered places, and each change costs a whole chunk in the next backup. On a 2 GiB
/// VM-like image, 1000 scattered 4 KiB writes added 425 MB with 1 MiB chunks and 149 MB
/// with 256 KiB ones, and the image itself stored 19% smaller (its repeated regions dedup
/// at a finer grain); a tree of small and middle-sized files keeps larger chunks, which
/// compress better (it stored 2.2% larger with 256 KiB chunks everywhere than with 1 MiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LargeFiles {
    /// Files of at least this many bytes (their size when the backup opens them).
    pub from: u64,
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

/// `LargeFiles::from` of new repositories, and the smallest a config may hold.
pub const LARGE_FROM: u64 = 64 * 1024 * 1024;
const LARGE_FROM_MIN: u64 = 1024 * 1024;

/// The outer sizes of new repositories: chunks of about 512 KiB, at least 256 KiB. Those
/// made before 2026-12-07 keep what their config holds ([`ChunkerParams::BEFORE_512K`]).
/// On this project's benchmark trees, 3 repositories (3 keys) each: the default corpus
/// without its small files stored 1.7% smaller than with 1 MiB chunks (798.8-802.4 MB
/// against 814.7-816.1), the low-duplication one 1.2% smaller (443.5-444.3 against
/// 446.3-451.0), and a cargo `target/` of near-identical `.rlib` files 4% smaller with a
/// quarter of the spread between keys (353.6-356.0 MB over 4 keys against 368.7-372.9): more
/// of such files deduplicates at the finer cuts, and chunks of this size compress as well
/// (stored/raw 0.31 either way). Backups took the same time and less memory.
impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min: 256 * 1024,
            avg: 512 * 1024,
            max: 8 * 1024 * 1024,
            normalization: 1,
            run: 64 * 1024,
            large: Some(LargeFiles {
                from: LARGE_FROM,
                min: 128 * 1024,
                avg: 256 * 1024,
                max: 2 * 1024 * 1024,
            }),
        }
    }
}

impl ChunkerParams {
    /// The outer sizes new repositories had before 2026-12-07 (512 KiB / 1 MiB / 8 MiB):
    /// the golden cut points of format-spec §15 are pinned with these.
    pub const BEFORE_512K: (u32, u32, u32) = (512 * 1024, 1024 * 1024, 8 * 1024 * 1024);

    pub fn validate(&self) -> Result<()> {
        let sizes_ok = |p: &ChunkerParams| {
            use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
            (MINIMUM_MIN..=MINIMUM_MAX).contains(&(p.min as usize))
                && (AVERAGE_MIN..=AVERAGE_MAX).contains(&(p.avg as usize))
                && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&(p.max as usize))
                && p.min < p.avg
                && p.avg < p.max
                && p.min.is_multiple_of(2)
                && p.avg.is_power_of_two()
                && p.max.is_multiple_of(2)
                && (p.run == 0 || (RUN_MIN..=p.max).contains(&p.run))
        };
        let ok = sizes_ok(self)
            && self.normalization <= 3
            && self.large.is_none_or(|l| l.from >= LARGE_FROM_MIN && l.max <= self.max)
            && self.large_file_params().is_none_or(|(_, p)| sizes_ok(&p));
        if ok {
            Ok(())
        } else {
            Err(Error::corrupt(format!("config: invalid chunker parameters {self:?}")))
        }
    }
}

impl ChunkerParams {
    /// For repositories that cut large files finer: the size from which they are, and
    /// the parameters they are cut with (normalization and run rule shared).
    pub fn large_file_params(&self) -> Option<(u64, ChunkerParams)> {
        self.large.map(|l| {
            (
                l.from,
                ChunkerParams {
                    min: l.min,
                    avg: l.avg,
                    max: l.max,
                    large: None,
                    ..*self
                },
            )
        })
    }
}

/// A repository's chunkers: one for files (and streams) of any size, and a finer one for
/// large files where the repository has one.
pub struct FileChunkers {
    pub base: Chunker,
    /// From this size on, files are cut with this chunker.
    pub large: Option<(u64, Chunker)>,
}

impl FileChunkers {
    /// The chunker of a file of `size` bytes (its size when it is opened).
    pub fn for_size(&self, size: u64) -> &Chunker {
        match &self.large {
            Some((from, c)) if size >= *from => c,
            _ => &self.base,
        }
    }
}

/// The smallest accepted `run` other than 0.
pub const RUN_MIN: u32 = 64;

/// The run of equal bytes at the end of a region's data before a chunk: `len` copies of
/// `byte`, counted up to `run`. A run that a cut divided still ends a chunk where it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carry {
    byte: u8,
    len: u32,
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
        // Configs are validated on read (`ChunkerParams::validate`): run is 0 or >= 64.
        assert!(p.run == 0 || p.run >= 2, "run rule of fewer than 2 bytes");
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

    /// Length of the first chunk of a region that starts with `buf`. `buf` must hold at
    /// least `max` bytes unless it is the end of the region.
    pub fn next_cut(&self, buf: &[u8]) -> usize {
        self.next_cut_after(Carry::default(), buf)
    }

    /// Length of the next chunk at the start of `buf`, where `carry` describes the run of
    /// equal bytes that ended the chunks before it in the same region (`Chunker::carry`).
    /// `buf` must hold at least `max` bytes unless it is the end of the region.
    pub fn next_cut_after(&self, carry: Carry, buf: &[u8]) -> usize {
        if self.p.run == 0 {
            return self.gear_cut(buf);
        }
        // The cut is the gear cut or the end of the first long run before it, whichever
        // comes first. Finding the run first bounds the gear scan: `gear_cut` on a prefix
        // finds exactly the cuts that the whole buffer has inside that prefix (the property
        // `stream` relies on too), and the prefix `..p + 1` tests every position up to `p`.
        let limit = buf.len().min(self.p.max as usize);
        match first_run_end(&buf[..limit], self.p.run as usize, carry) {
            None => self.gear_cut(buf),
            Some(p) => self.gear_cut(&buf[..p + 1]).min(p),
        }
    }

    /// The carry for the chunk after `chunk`, which followed `carry`: how many copies of
    /// its last byte end the region's data so far, counted up to `run`.
    pub fn carry(&self, carry: Carry, chunk: &[u8]) -> Carry {
        let (run, Some(&byte)) = (self.p.run, chunk.last()) else {
            return Carry::default();
        };
        // Only the last `run` bytes matter: a long run is counted up to `run`.
        let look = &chunk[chunk.len().saturating_sub(run as usize)..];
        let tail = look.len() - look.iter().rposition(|&b| b != byte).map_or(0, |i| i + 1);
        let before = if tail == chunk.len() && carry.byte == byte {
            carry.len
        } else {
            0
        };
        Carry {
            byte,
            len: (tail as u64 + before as u64).min(run as u64) as u32,
        }
    }

    /// FastCDC's cut (format-spec §15, "Cut routine").
    fn gear_cut(&self, buf: &[u8]) -> usize {
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
        let mut carry = Carry::default();
        loop {
            let avail = end - start;
            if !eof && avail < max {
                if avail > min {
                    let n = self.next_cut_after(carry, &buf[start..end]);
                    if n < avail {
                        emit(&buf[start..start + n])?;
                        carry = self.carry(carry, &buf[start..start + n]);
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
            let n = self.next_cut_after(carry, &buf[start..end]);
            emit(&buf[start..start + n])?;
            carry = self.carry(carry, &buf[start..start + n]);
            start += n;
        }
    }

    /// All cut lengths of a complete buffer (tests and benchmarks).
    pub fn cuts(&self, mut buf: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut carry = Carry::default();
        while !buf.is_empty() {
            let n = self.next_cut_after(carry, buf);
            out.push(n);
            carry = self.carry(carry, &buf[..n]);
            buf = &buf[n..];
        }
        out
    }
}

/// The smallest `p` with `0 < p < buf.len()` such that the `run` bytes before `p` are one
/// byte value repeated and `buf[p]` differs from it: the end of the first run of at least
/// `run` equal bytes that ends inside `buf`. The bytes before `p` may reach back before
/// `buf`, into the `carry` (the same region's data before this chunk). `run >= 2`.
///
/// A run that continues from the carry is measured directly. Every other such run lies in
/// `buf` and contains a whole window `[k·s, (k+1)·s)` with `s = run / 2`, so only those
/// windows are probed (three bytes each, then the whole window if they agree), and data
/// without runs costs three loads per `s` bytes.
fn first_run_end(buf: &[u8], run: usize, carry: Carry) -> Option<usize> {
    if carry.len > 0 && buf.first() == Some(&carry.byte) {
        let l = leading_equal(buf, carry.byte);
        if l == buf.len() {
            return None;
        }
        if carry.len as usize + l >= run {
            return Some(l);
        }
        // Too short with its carry: the window scan below measures it as starting at 0,
        // shorter still, and passes over it.
    }
    let s = run / 2;
    let mut w = 0;
    while w + s <= buf.len() {
        let win = &buf[w..w + s];
        let v = win[0];
        if win[s / 2] != v || win[s - 1] != v || !all_equal(win, v) {
            w += s;
            continue;
        }
        let start = buf[..w].iter().rposition(|&b| b != v).map_or(0, |i| i + 1);
        let end = w + s + leading_equal(&buf[w + s..], v);
        if end == buf.len() {
            return None; // the run reaches the end of what may be cut
        }
        if end - start >= run {
            return Some(end);
        }
        w = end.div_ceil(s) * s;
    }
    None
}

/// Whether every byte of `b` is `v`.
fn all_equal(b: &[u8], v: u8) -> bool {
    leading_equal(b, v) == b.len()
}

/// How many bytes at the start of `b` equal `v`. Compares 64 bytes at a time (a `memcmp`),
/// which is what makes long zero runs cheap to scan.
fn leading_equal(b: &[u8], v: u8) -> usize {
    const W: usize = 64;
    let pattern = [v; W];
    let mut n = 0;
    for block in b.chunks_exact(W) {
        if block != pattern {
            break;
        }
        n += W;
    }
    n + b[n..].iter().take_while(|&&x| x == v).count()
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
        let c = Chunker::new(before_512k(), keys.gear_table());
        let data = pseudo_random(24 * 1024 * 1024, 0x9E3779B97F4A7C15);
        let cuts = c.cuts(&data);
        assert_eq!(cuts.iter().sum::<usize>(), data.len());
        assert_eq!(cuts, GOLDEN, "FastCDC cut points changed: this breaks dedup");
    }

    #[test]
    fn golden_cut_points_of_the_defaults() {
        // Pinned like `golden_cut_points`: the outer sizes of repositories made since
        // 2026-12-07 (256 KiB / 512 KiB / 8 MiB).
        let keys = Keys::from_master([42; 32]);
        let c = Chunker::new(ChunkerParams::default(), keys.gear_table());
        let data = pseudo_random(24 * 1024 * 1024, 0x9E3779B97F4A7C15);
        let cuts = c.cuts(&data);
        assert_eq!(cuts.iter().sum::<usize>(), data.len());
        assert!(cuts[..cuts.len() - 1].iter().all(|&n| n >= 256 << 10));
        assert_eq!(cuts, GOLDEN_DEFAULTS, "FastCDC cut points changed: this breaks dedup");
    }

    const GOLDEN_DEFAULTS: &[usize] = &[
        308450, 788090, 839259, 602553, 467249, 418833, 806966, 563494, 854332, 581538, 267964, 384536, 582237, 1551763,
        840851, 647803, 1137280, 900169, 599463, 588625, 448737, 842079, 683909, 1159482, 1180388, 800560, 541250, 621000,
        914433, 302879, 573596, 554231, 573366, 914997, 335165, 697065, 291232,
    ];

    /// The outer sizes of repositories made before 2026-12-07, which the golden cut points
    /// of format-spec §15 were pinned with (those repositories still cut with them).
    fn before_512k() -> ChunkerParams {
        let (min, avg, max) = ChunkerParams::BEFORE_512K;
        ChunkerParams {
            min,
            avg,
            max,
            ..ChunkerParams::default()
        }
    }

    #[test]
    fn golden_large_file_cut_points() {
        // Pinned like `golden_cut_points`: the cuts of files of 64 MiB and more.
        let keys = Keys::from_master([42; 32]);
        let (from, p) = ChunkerParams::default()
            .large_file_params()
            .expect("new repositories have it");
        assert_eq!(from, LARGE_FROM);
        let c = Chunker::new(p, keys.gear_table());
        let data = pseudo_random(6 * 1024 * 1024, 0x9E3779B97F4A7C15);
        let cuts = c.cuts(&data);
        assert_eq!(cuts.iter().sum::<usize>(), data.len());
        assert!(cuts.iter().all(|&n| n <= 2 << 20));
        assert_eq!(
            cuts, GOLDEN_LARGE,
            "FastCDC cut points of large files changed: this breaks dedup"
        );
    }

    const GOLDEN_LARGE: &[usize] = &[
        308450, 422863, 365227, 193969, 199472, 325837, 454973, 267561, 234949, 232300, 418833, 400253, 325353, 388422,
        256432, 268117, 375828, 437407, 354518, 60692,
    ];

    #[test]
    fn large_file_sizes_are_validated_and_chosen_by_size() {
        let mut p = ChunkerParams::default();
        p.validate().unwrap();
        let keys = Keys::from_master([1; 32]);
        let chunkers = FileChunkers {
            base: Chunker::new(p, keys.gear_table()),
            large: p
                .large_file_params()
                .map(|(f, q)| (f, Chunker::new(q, keys.gear_table()))),
        };
        assert_eq!(chunkers.for_size(LARGE_FROM - 1).max_size(), 8 << 20);
        assert_eq!(chunkers.for_size(LARGE_FROM).max_size(), 2 << 20);
        for bad in [
            LargeFiles {
                from: 1000,
                min: 128 << 10,
                avg: 256 << 10,
                max: 2 << 20,
            },
            LargeFiles {
                from: LARGE_FROM,
                min: 128 << 10,
                avg: 300 << 10,
                max: 2 << 20,
            },
            LargeFiles {
                from: LARGE_FROM,
                min: 512 << 10,
                avg: 256 << 10,
                max: 2 << 20,
            },
            // Larger than the base chunks: the read buffer is sized for those.
            LargeFiles {
                from: LARGE_FROM,
                min: 1 << 20,
                avg: 2 << 20,
                max: 16 << 20,
            },
            // The run rule (64 KiB) must fit in a chunk.
            LargeFiles {
                from: LARGE_FROM,
                min: 8 << 10,
                avg: 16 << 10,
                max: 32 << 10,
            },
        ] {
            p.large = Some(bad);
            assert!(p.validate().is_err(), "{bad:?}");
        }
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

    /// The definition of format-spec §15 ("Runs"), written the slow way over a whole region:
    /// each chunk ends at its gear cut, or at the first position before it that ends a run
    /// of at least `run` equal bytes of the region (which may have begun before the chunk).
    fn reference_cuts(c: &Chunker, data: &[u8]) -> Vec<usize> {
        let run = c.p.run as usize;
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let gear = c.gear_cut(&data[at..]);
            let n = if run == 0 {
                gear
            } else {
                (at + 1..at + gear)
                    .find(|&p| p >= run && data[p] != data[p - 1] && data[p - run..p].iter().all(|&b| b == data[p - 1]))
                    .map_or(gear, |p| p - at)
            };
            out.push(n);
            at += n;
        }
        out
    }

    /// A reader that hands out its bytes in short reads of irregular length, so that
    /// `stream` cuts in partial buffers with more data to come.
    struct Trickle<'a> {
        data: &'a [u8],
        x: u64,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let n = (1 + self.x % 700) as usize;
            let n = n.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// 4 MiB of zeros, random data, 100 KiB of 0xff, random data, a 40 KiB zero run (too
    /// short to cut), random data, and 20 MiB of zeros at the end.
    fn with_runs() -> Vec<u8> {
        let mut d = vec![0u8; 4 << 20];
        d.extend(pseudo_random(3 << 20, 11));
        d.extend(vec![0xffu8; 100 << 10]);
        d.extend(pseudo_random(5 << 20, 12));
        d.extend(vec![0u8; 40 << 10]);
        d.extend(pseudo_random(2 << 20, 13));
        d.extend(vec![0u8; 20 << 20]);
        d
    }

    #[test]
    fn golden_run_cuts() {
        // Pinned like `golden_cut_points`: the run rule of format-spec §15.
        let c = Chunker::new(before_512k(), Keys::from_master([42; 32]).gear_table());
        let data = with_runs();
        let cuts = c.cuts(&data);
        assert_eq!(cuts.iter().sum::<usize>(), data.len());
        let ends: Vec<usize> = cuts
            .iter()
            .scan(0, |s, n| {
                *s += n;
                Some(*s)
            })
            .collect();
        assert!(ends.contains(&(4 << 20)), "the first zero run ends a chunk");
        assert!(ends.contains(&((7 << 20) + (100 << 10))), "the 0xff run ends a chunk");
        assert_eq!(cuts, reference_cuts(&c, &data));
        assert_eq!(cuts, GOLDEN_RUNS);
    }

    const GOLDEN_RUNS: &[usize] = &[
        4194304, 1059534, 872343, 1118581, 197670, 777996, 2140026, 1247619, 1850137, 1173158, 8388608, 8388608,
        4386360,
    ];

    #[test]
    fn a_run_rule_of_zero_is_plain_fastcdc() {
        let keys = Keys::from_master([42; 32]);
        let plain = Chunker::new(
            ChunkerParams {
                run: 0,
                ..before_512k()
            },
            keys.gear_table(),
        );
        let data = with_runs();
        let cuts = plain.cuts(&data);
        assert!(
            cuts[0] > 4 << 20,
            "without the rule the first chunk runs on past the zeros"
        );
        assert_eq!(plain.cuts(&pseudo_random(24 * 1024 * 1024, 0x9E3779B97F4A7C15)), GOLDEN);
    }

    #[test]
    fn an_edit_before_a_zero_run_changes_only_the_chunk_it_is_in() {
        // The case of the benchmark's 2 GiB file: an insert inside a long leading zero
        // run. Without the rule the first chunk runs on into the data after the zeros.
        let c = Chunker::new(ChunkerParams::default(), Keys::from_master([3; 32]).gear_table());
        let mut data = vec![0u8; 4_041_012];
        data.extend(pseudo_random(12 << 20, 5));
        let mut edited = data[..4096].to_vec();
        edited.extend(pseudo_random(1024, 6));
        edited.extend_from_slice(&data[4096..]);
        let (a, b) = (c.cuts(&data), c.cuts(&edited));
        assert_eq!(a[0], 4_041_012);
        assert_eq!(b[0], 4_041_012 + 1024);
        assert_eq!(a[1..], b[1..], "every chunk after the zero run is the same");
    }

    #[test]
    fn a_run_longer_than_max_still_ends_a_chunk_where_it_ends() {
        // The cut at `max` falls inside the run with 10 KiB of it left: less than `run`
        // counted from that chunk's start, but the run began before it.
        let c = Chunker::new(ChunkerParams::default(), Keys::from_master([3; 32]).gear_table());
        let zeros = (8 << 20) + (10 << 10);
        let mut data = vec![0u8; zeros];
        data.extend(pseudo_random(6 << 20, 7));
        let mut edited = data[..4096].to_vec();
        edited.extend(pseudo_random(1024, 8));
        edited.extend_from_slice(&data[4096..]);
        let (a, b) = (c.cuts(&data), c.cuts(&edited));
        assert_eq!(a[..2], [8 << 20, 10 << 10]);
        assert_eq!(b[..2], [8 << 20, (10 << 10) + 1024]);
        assert_eq!(a[2..], b[2..], "every chunk after the zero run is the same");
        assert_eq!(a, reference_cuts(&c, &data));
    }

    #[test]
    fn carry_counts_the_run_across_chunks_up_to_run() {
        let c = Chunker::new(
            ChunkerParams {
                min: 256,
                avg: 1024,
                max: 4096,
                normalization: 1,
                run: 100,
                large: None,
            },
            Keys::from_master([5; 32]).gear_table(),
        );
        let none = Carry::default();
        let a = c.carry(none, b"xyz\0\0\0");
        assert_eq!(a, Carry { byte: 0, len: 3 });
        assert_eq!(c.carry(a, &[0; 50]), Carry { byte: 0, len: 53 });
        assert_eq!(c.carry(a, &[0; 500]), Carry { byte: 0, len: 100 });
        assert_eq!(c.carry(a, &[1; 5]), Carry { byte: 1, len: 5 });
        assert_eq!(c.carry(a, b"\0\0a"), Carry { byte: b'a', len: 1 });
        // A run continuing from the carry ends a chunk when the two together reach `run`.
        assert_eq!(
            c.next_cut_after(Carry { byte: 0, len: 90 }, &[&[0u8; 10][..], &[1; 500]].concat()),
            10
        );
        assert_eq!(
            c.next_cut_after(Carry { byte: 0, len: 89 }, &[&[0u8; 10][..], &[1; 500]].concat()),
            510
        );
    }

    proptest::proptest! {
        /// Random mixtures of data and runs, with small parameters so that every rule is
        /// reached: the fast scan equals the definition, and streaming equals whole-buffer.
        #[test]
        fn run_cuts_match_the_definition(
            parts in proptest::collection::vec((0u8..4, 1usize..3000, proptest::prelude::any::<u8>()), 0..40),
            run in 64u32..400,
            seed in 0u64..1000,
        ) {
            let mut data = Vec::new();
            for (i, (kind, len, v)) in parts.into_iter().enumerate() {
                match kind {
                    0 => data.extend(pseudo_random(len, seed + i as u64 + 1)),
                    _ => data.extend(std::iter::repeat_n(v, len)),
                }
            }
            let p = ChunkerParams { min: 256, avg: 1024, max: 4096, normalization: 1, run, large: None };
            p.validate().unwrap();
            let c = Chunker::new(p, Keys::from_master([5; 32]).gear_table());
            let cuts = c.cuts(&data);
            proptest::prop_assert_eq!(&cuts, &reference_cuts(&c, &data));
            let mut got = Vec::new();
            let mut buf = Vec::new();
            let mut r = Trickle { data: &data, x: seed + 1 };
            c.stream(&mut r, u64::MAX, &mut buf, |ch| {
                got.push(ch.len());
                Ok(())
            })
            .unwrap();
            proptest::prop_assert_eq!(got, cuts);
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
