//! Pack files: `envelope(6) || blob... || sealed header || header_len(u32 LE) || "PCLNPAK1"`.
//! [`PackWriter`] is sans-IO (bytes in memory); [`StreamedPack`] writes the same bytes to a
//! store's [`NewObject`] as they come. The pack id is the unkeyed BLAKE3 of all bytes.

use crate::backend::{NewObject, Written};
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::format::{self, BlobKind, Kind, MAX_PACK_HEADER, PACK_TRAILER_MAGIC, PackEntry, PackHeader};
use crate::id::{BlobId, PackId};

/// Bytes after the sealed header: length + magic.
pub const TRAILER_LEN: usize = 12;
/// Bytes before the first blob.
pub const LEADER_LEN: usize = 6;

pub struct PackWriter {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl Default for PackWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PackWriter {
    pub fn new() -> Self {
        Self::reusing(Vec::new())
    }

    /// A writer that builds its pack in `buf` (emptied first), reusing its memory.
    pub fn reusing(mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(&format::envelope(Kind::Pack));
        PackWriter {
            buf,
            entries: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Make room for a pack of `total` bytes at once: growing by doubling would briefly
    /// hold the old and the new buffer (peak memory).
    pub fn reserve(&mut self, total: usize) {
        self.buf.reserve(total.saturating_sub(self.buf.len()));
    }

    /// Bytes of blobs so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn add(&mut self, kind: BlobKind, id: BlobId, raw_length: u32, sealed: &[u8]) {
        self.entries.push(PackEntry {
            kind,
            id,
            offset: self.buf.len() as u64,
            length: sealed.len() as u32,
            raw_length,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Append the sealed header and trailer; returns id, bytes and entries.
    pub fn finish(mut self, repo_id: &[u8; 32], cipher: &Cipher) -> (PackId, Vec<u8>, Vec<PackEntry>) {
        let entries = seal_header(self.entries, repo_id, cipher, &mut self.buf);
        let id = PackId(*blake3::hash(&self.buf).as_bytes());
        (id, self.buf, entries)
    }
}

/// Append the sealed header of `entries`, its length and the magic to `out`.
fn seal_header(entries: Vec<PackEntry>, repo_id: &[u8; 32], cipher: &Cipher, out: &mut Vec<u8>) -> Vec<PackEntry> {
    let header = PackHeader { entries };
    let plain = format::encode_versioned(1, &header);
    let start = out.len();
    cipher.seal_into(&format::aad(repo_id, Kind::PackHeader, &[0; 32]), &plain, out);
    let hlen = (out.len() - start) as u32;
    out.extend_from_slice(&hlen.to_le_bytes());
    out.extend_from_slice(PACK_TRAILER_MAGIC);
    header.entries
}

/// Bytes gathered before they are hashed and handed to the store.
const STREAM_BUF: usize = 1024 * 1024;

/// A pack written to the store while it is built: the same bytes as [`PackWriter`] makes,
/// with at most 1 MiB of them in memory (plus the entries), so a backup into a
/// local folder does not hold a whole pack (16 MiB by default) in memory.
pub struct StreamedPack {
    out: Box<dyn NewObject>,
    hasher: blake3::Hasher,
    buf: Vec<u8>,
    /// Bytes handed to `out` so far.
    written: u64,
    entries: Vec<PackEntry>,
}

impl StreamedPack {
    pub fn new(out: Box<dyn NewObject>) -> Self {
        let mut buf = Vec::with_capacity(STREAM_BUF);
        buf.extend_from_slice(&format::envelope(Kind::Pack));
        StreamedPack {
            out,
            hasher: blake3::Hasher::new(),
            buf,
            written: 0,
            entries: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of blobs so far (with the leader).
    pub fn len(&self) -> usize {
        self.written as usize + self.buf.len()
    }

    pub fn add(&mut self, kind: BlobKind, id: BlobId, raw_length: u32, sealed: &[u8]) -> Result<()> {
        self.entries.push(PackEntry {
            kind,
            id,
            offset: self.len() as u64,
            length: sealed.len() as u32,
            raw_length,
        });
        if self.buf.len() + sealed.len() > STREAM_BUF {
            self.drain()?;
        }
        if sealed.len() >= STREAM_BUF {
            self.hasher.update(sealed);
            self.out.write(sealed)?;
            self.written += sealed.len() as u64;
        } else {
            self.buf.extend_from_slice(sealed);
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<()> {
        self.hasher.update(&self.buf);
        self.out.write(&self.buf)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Append the sealed header and trailer and store the pack under its id (the path
    /// `path_of` gives); returns id, size, entries and whether it was new.
    pub fn finish(
        mut self,
        repo_id: &[u8; 32],
        cipher: &Cipher,
        path_of: impl FnOnce(&PackId) -> String,
    ) -> Result<(PackId, u64, Vec<PackEntry>, Written)> {
        let entries = seal_header(std::mem::take(&mut self.entries), repo_id, cipher, &mut self.buf);
        self.drain()?;
        let id = PackId(*self.hasher.finalize().as_bytes());
        let written = self.out.commit(&path_of(&id))?;
        Ok((id, self.written, entries, written))
    }
}

/// From the last `TRAILER_LEN` bytes of a pack of `pack_len` bytes, the sealed header's
/// offset and length.
pub fn parse_trailer(trailer: &[u8], pack_len: u64) -> Result<(u64, usize)> {
    if trailer.len() != TRAILER_LEN || &trailer[4..] != PACK_TRAILER_MAGIC {
        return Err(Error::corrupt("pack: bad trailer magic"));
    }
    let hlen = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) as usize;
    let min = (LEADER_LEN + TRAILER_LEN) as u64;
    if pack_len < min {
        return Err(Error::corrupt("pack: shorter than its leader and trailer"));
    }
    if hlen > MAX_PACK_HEADER || (hlen as u64) > pack_len.saturating_sub(min) {
        return Err(Error::corrupt("pack: header length out of range"));
    }
    Ok((pack_len - TRAILER_LEN as u64 - hlen as u64, hlen))
}

/// Open and validate a pack header: entries lie between the leader and the header,
/// in order, without overlap.
pub fn decode_header(repo_id: &[u8; 32], cipher: &Cipher, sealed: &[u8], header_offset: u64) -> Result<Vec<PackEntry>> {
    let plain = cipher.open(&format::aad(repo_id, Kind::PackHeader, &[0; 32]), sealed, "pack header")?;
    let h: PackHeader = format::decode_versioned(1, &plain, "pack header")?;
    let mut pos = LEADER_LEN as u64;
    for e in &h.entries {
        let end = e.offset.checked_add(e.length as u64);
        if e.offset < pos || end.is_none_or(|end| end > header_offset) {
            return Err(Error::corrupt("pack header: blob outside the pack or overlapping"));
        }
        pos = e.offset + e.length as u64; // checked just above
    }
    Ok(h.entries)
}

/// Parse a whole pack held in memory (check, repair, fuzzing).
pub fn read_all(repo_id: &[u8; 32], cipher: &Cipher, bytes: &[u8]) -> Result<Vec<PackEntry>> {
    if bytes.len() < LEADER_LEN + TRAILER_LEN {
        return Err(Error::corrupt("pack: too short"));
    }
    format::strip_envelope(Kind::Pack, bytes, "pack")?;
    let (off, len) = parse_trailer(&bytes[bytes.len() - TRAILER_LEN..], bytes.len() as u64)?;
    decode_header(repo_id, cipher, &bytes[off as usize..off as usize + len], off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keys;

    #[test]
    fn write_then_read() {
        let keys = Keys::generate();
        let c = keys.cipher();
        let mut w = PackWriter::new();
        w.add(BlobKind::Data, BlobId([1; 32]), 10, b"0123456789abcdef");
        w.add(BlobKind::Tree, BlobId([2; 32]), 3, b"xyz");
        let (id, bytes, entries) = w.finish(&[5; 32], &c);
        assert_eq!(id.0, *blake3::hash(&bytes).as_bytes());
        let back = read_all(&[5; 32], &c, &bytes).unwrap();
        assert_eq!(back, entries);
        assert_eq!(&bytes[back[1].offset as usize..][..3], b"xyz");
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 20] ^= 1;
        assert!(read_all(&[5; 32], &c, &bad).is_err());
    }

    #[test]
    fn a_reused_buffer_holds_only_the_new_pack() {
        let keys = Keys::generate();
        let c = keys.cipher();
        let mut first = PackWriter::new();
        first.add(
            BlobKind::Data,
            BlobId([1; 32]),
            4,
            b"old bytes of a pack written before",
        );
        let (_, old, _) = first.finish(&[5; 32], &c);
        let mut w = PackWriter::reusing(old);
        w.add(BlobKind::Data, BlobId([3; 32]), 3, b"new");
        let (id, bytes, entries) = w.finish(&[5; 32], &c);
        assert_eq!(id.0, *blake3::hash(&bytes).as_bytes());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].offset, LEADER_LEN as u64);
        assert_eq!(read_all(&[5; 32], &c, &bytes).unwrap(), entries);
        assert_eq!(&bytes[LEADER_LEN..LEADER_LEN + 3], b"new");
    }

    #[test]
    fn trailer_of_a_too_short_pack_is_refused() {
        // Found by the `pack` fuzz target: used to underflow or point into the leader.
        assert!(parse_trailer(b"\0\0\0\0PCLNPAK1", 15).is_err());
        assert!(parse_trailer(b"\0\0\0\0PCLNPAK1", 5).is_err());
    }

    /// Collects what a streamed pack writes, as a store would.
    struct Collect(std::sync::Arc<std::sync::Mutex<(Vec<u8>, Option<String>)>>);

    impl NewObject for Collect {
        fn write(&mut self, bytes: &[u8]) -> Result<()> {
            self.0.lock().unwrap().0.extend_from_slice(bytes);
            Ok(())
        }
        fn commit(self: Box<Self>, path: &str) -> Result<Written> {
            self.0.lock().unwrap().1 = Some(path.to_string());
            Ok(Written::New)
        }
    }

    #[test]
    fn a_streamed_pack_is_byte_for_byte_the_pack_in_memory() {
        let keys = Keys::generate();
        let c = keys.cipher();
        // Small blobs that cross the stream buffer, one larger than it, and small ones after.
        let mut blobs: Vec<Vec<u8>> = (0..300u32).map(|i| vec![i as u8; 5000 + i as usize]).collect();
        blobs.insert(150, vec![7; STREAM_BUF + 3]);
        blobs.push(b"last".to_vec());
        let got = std::sync::Arc::new(std::sync::Mutex::new((Vec::new(), None)));
        let mut s = StreamedPack::new(Box::new(Collect(got.clone())));
        let mut w = PackWriter::new();
        for (i, b) in blobs.iter().enumerate() {
            let id = BlobId([i as u8; 32]);
            w.add(BlobKind::Data, id, b.len() as u32, b);
            s.add(BlobKind::Data, id, b.len() as u32, b).unwrap();
            assert_eq!(s.len(), w.len());
        }
        let (id, bytes, entries) = w.finish(&[5; 32], &c);
        let (sid, size, sentries, written) = s.finish(&[5; 32], &c, |id| format!("packs/{}", id.to_hex())).unwrap();
        let got = got.lock().unwrap();
        // The headers hold the same entries but are sealed with their own nonces.
        assert_eq!(sentries, entries);
        assert_eq!(written, Written::New);
        assert_eq!(size, got.0.len() as u64);
        assert_eq!(sid.0, *blake3::hash(&got.0).as_bytes());
        assert_eq!(got.1.as_deref(), Some(format!("packs/{}", sid.to_hex()).as_str()));
        assert_eq!(read_all(&[5; 32], &c, &got.0).unwrap(), entries);
        let end = entries.last().map(|e| (e.offset + e.length as u64) as usize).unwrap();
        assert_eq!(got.0[..end], bytes[..end]);
        assert_ne!(sid, id);
    }
}
