//! Per-blob compression. Each stored blob names its own codec, so codecs can be mixed
//! within a repository and changed without rewriting old data.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Codec byte stored inside every sealed blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Codec {
    None = 0,
    Zstd = 1,
    Lz4 = 2,
}

impl Codec {
    pub fn from_u8(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::None),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::Lz4),
            _ => None,
        }
    }
}

/// What the user asked for: `zstd[:level]`, `lz4` or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd(i32),
    Lz4,
}

/// The zstd level of `--compression zstd` and of the default. On the 1.5 GB reference tree
/// (`benches/compare.sh`), level 4 stored 1.6% less than level 3 (three runs each: 376.8-378.4
/// against 381.8-385.6 MB) for a first backup 0.2-0.6 s slower (6.05-6.34 against 5.43-6.17 s);
/// `check` and restore read it as fast. Level 5 saved 2.6% for 1.6 s more, level 6 4.7% for
/// 2.7 s more.
pub const DEFAULT_ZSTD_LEVEL: i32 = 4;

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd(DEFAULT_ZSTD_LEVEL)
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd(DEFAULT_ZSTD_LEVEL)),
            _ => match s.strip_prefix("zstd:").map(str::parse::<i32>) {
                Some(Ok(l)) if (1..=22).contains(&l) => Ok(Compression::Zstd(l)),
                _ => Err(format!(
                    "unknown compression {s:?}: use zstd, zstd:LEVEL (1-22), lz4 or none"
                )),
            },
        }
    }
}

thread_local! {
    // One zstd context per worker thread, reused across blobs.
    /// One compressor per level in use (data and trees use different levels).
    static ZSTD_C: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(Vec::new()) };
    static ZSTD_D: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Blobs at least this long are probed before zstd runs on them ([`looks_incompressible`]).
const PROBE_MIN: usize = 128 * 1024;
/// Bytes in one probe sample, and the most samples taken from one blob.
const PROBE_SAMPLE: usize = 16 * 1024;
const PROBE_SAMPLES: usize = 8;

/// Whether `raw` is, by every sample, data no codec shrinks (already compressed or
/// encrypted: git packs, wheels, media, random regions of a disk image). Up to 8 samples of
/// 16 KiB spread evenly over the blob go through LZ4, which skips through such data at
/// several GB/s; when none of them shrinks by 3%, zstd is not run on the blob at all. zstd
/// spends about as long failing on incompressible bytes as it spends compressing others,
/// and on a tree of such files that was the largest share of a backup's CPU time. A blob
/// with any sample that shrinks is compressed as before, so a mostly compressible blob
/// never loses its compression; a blob whose compressible part falls between the samples
/// is stored raw (at most the gaps' worth of compression).
fn looks_incompressible(raw: &[u8]) -> bool {
    if raw.len() < PROBE_MIN {
        return false;
    }
    let samples = (raw.len() / (PROBE_MIN / 2)).min(PROBE_SAMPLES);
    let stride = (raw.len() - PROBE_SAMPLE) / (samples - 1);
    let mut out = [0u8; lz4_flex::block::get_maximum_output_size(PROBE_SAMPLE)];
    (0..samples).all(|i| {
        let sample = &raw[i * stride..i * stride + PROBE_SAMPLE];
        match lz4_flex::block::compress_into(sample, &mut out) {
            Ok(n) => n * 100 >= PROBE_SAMPLE * 97,
            Err(_) => false,
        }
    })
}

/// Compress `raw` into `out` (appending). Returns the codec actually used: when the
/// result would not be smaller, the blob is stored raw and no second codec is tried.
pub fn compress_into(c: Compression, raw: &[u8], out: &mut Vec<u8>) -> Codec {
    let start = out.len();
    let codec = match c {
        Compression::None => Codec::None,
        Compression::Zstd(_) if looks_incompressible(raw) => Codec::None,
        Compression::Zstd(level) => {
            let ok = ZSTD_C.with(|cell| {
                let mut slots = cell.borrow_mut();
                let i = match slots.iter().position(|(l, _)| *l == level) {
                    Some(i) => i,
                    None => {
                        let Ok(z) = zstd::bulk::Compressor::new(level) else {
                            return false;
                        };
                        if slots.len() >= 4 {
                            slots.remove(0);
                        }
                        slots.push((level, z));
                        slots.len() - 1
                    }
                };
                let z = &mut slots[i].1;
                let bound = zstd::zstd_safe::compress_bound(raw.len());
                out.reserve(bound);
                let spare = out.spare_capacity_mut();
                // SAFETY: zstd writes only initialised bytes into the spare capacity and
                // reports how many; we set the length to exactly that.
                let buf = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), spare.len()) };
                match z.compress_to_buffer(raw, buf) {
                    Ok(n) => {
                        // SAFETY: see above, `n` bytes were written.
                        unsafe { out.set_len(start + n) };
                        true
                    }
                    Err(_) => false,
                }
            });
            if ok { Codec::Zstd } else { Codec::None }
        }
        Compression::Lz4 => {
            let bound = lz4_flex::block::get_maximum_output_size(raw.len());
            out.resize(start + bound, 0);
            match lz4_flex::block::compress_into(raw, &mut out[start..]) {
                Ok(n) => {
                    out.truncate(start + n);
                    Codec::Lz4
                }
                Err(_) => Codec::None,
            }
        }
    };
    if codec == Codec::None || out.len() - start >= raw.len() {
        out.truncate(start);
        out.extend_from_slice(raw);
        return Codec::None;
    }
    codec
}

/// Decompress a blob payload whose declared raw length is `raw_len` (already checked
/// against the limit by the caller, so this allocation is bounded).
pub fn decompress(codec: Codec, payload: &[u8], raw_len: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    decompress_into(codec, payload, raw_len, &mut out)?;
    Ok(out)
}

/// [`decompress`] into `out` (replaced), so a loop reuses one buffer.
pub fn decompress_into(codec: Codec, payload: &[u8], raw_len: usize, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    match codec {
        Codec::None => out.extend_from_slice(payload),
        Codec::Zstd => ZSTD_D.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = zstd::bulk::Decompressor::new().ok();
            }
            let d = slot
                .as_mut()
                .ok_or_else(|| Error::corrupt("cannot create zstd decompressor"))?;
            out.reserve(raw_len);
            d.decompress_to_buffer(payload, out)
                .map(|_| ())
                .map_err(|e| Error::corrupt(format!("zstd: {e}")))
        })?,
        Codec::Lz4 => {
            out.resize(raw_len, 0);
            let n = lz4_flex::block::decompress_into(payload, out).map_err(|e| Error::corrupt(format!("lz4: {e}")))?;
            out.truncate(n);
        }
    };
    if out.len() != raw_len {
        return Err(Error::corrupt(format!(
            "blob decompressed to {} bytes, header says {raw_len}",
            out.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), rep in 0usize..4) {
            let data: Vec<u8> = data.iter().cycle().take(data.len() * rep.max(1)).copied().collect();
            for c in [Compression::None, Compression::Zstd(3), Compression::default(), Compression::Lz4] {
                let mut out = Vec::new();
                let codec = compress_into(c, &data, &mut out);
                prop_assert!(out.len() <= data.len());
                prop_assert_eq!(decompress(codec, &out, data.len()).unwrap(), data.clone());
            }
        }
    }

    #[test]
    fn the_default_is_zstd_at_the_default_level() {
        assert_eq!(Compression::default(), Compression::Zstd(DEFAULT_ZSTD_LEVEL));
        assert_eq!("zstd".parse(), Ok(Compression::default()));
        assert_eq!("zstd:3".parse(), Ok(Compression::Zstd(3)));
        assert!("zstd:23".parse::<Compression>().is_err());
    }

    fn random(n: usize, seed: &[u8]) -> Vec<u8> {
        let mut data = vec![0u8; n];
        blake3::Hasher::new().update(seed).finalize_xof().fill(&mut data);
        data
    }

    #[test]
    fn the_probe_skips_zstd_only_when_every_sample_is_incompressible() {
        let noise = random(1 << 20, b"noise");
        assert!(looks_incompressible(&noise));
        let mut out = Vec::new();
        assert_eq!(compress_into(Compression::default(), &noise, &mut out), Codec::None);
        assert_eq!(out, noise);
        // Below the probe's size the blob always goes through zstd (and is stored raw
        // only because zstd could not shrink it).
        assert!(!looks_incompressible(&noise[..PROBE_MIN - 1]));
        // One compressible region that a sample falls on: compressed.
        let mut mixed = noise.clone();
        mixed[..PROBE_SAMPLE].fill(b'a');
        assert!(!looks_incompressible(&mixed));
        let mut out = Vec::new();
        assert_eq!(compress_into(Compression::default(), &mixed, &mut out), Codec::Zstd);
        assert!(out.len() < noise.len() - PROBE_SAMPLE / 2);
        assert_eq!(decompress(Codec::Zstd, &out, mixed.len()).unwrap(), mixed);
        // The last sample ends at the blob's end.
        let mut tail = noise.clone();
        let n = tail.len();
        tail[n - PROBE_SAMPLE..].fill(0);
        assert!(!looks_incompressible(&tail));
        // Text is compressed.
        let text: Vec<u8> = b"fn main() { println!(\"hello\"); }\n"
            .iter()
            .copied()
            .cycle()
            .take(300_000)
            .collect();
        assert!(!looks_incompressible(&text));
        let mut out = Vec::new();
        assert_eq!(compress_into(Compression::default(), &text, &mut out), Codec::Zstd);
        // lz4 and none are what the user asked for: no probe.
        let mut out = Vec::new();
        assert_eq!(compress_into(Compression::Lz4, &text, &mut out), Codec::Lz4);
    }

    #[test]
    fn incompressible_is_stored_raw() {
        let mut data = vec![0u8; 10000];
        blake3::Hasher::new().update(b"x").finalize_xof().fill(&mut data);
        let mut out = Vec::new();
        let codec = compress_into(Compression::Zstd(3), &data, &mut out);
        assert_eq!(codec, Codec::None);
        assert_eq!(out, data);
    }
}
