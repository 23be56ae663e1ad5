//! A plaintext chunk or tree <-> a sealed blob, as a pure function of bytes.
//!
//! Sealed plaintext: `codec(1) || raw_len(u32 LE) || payload`; AAD binds the repo id,
//! the blob kind and the blob id, so a blob moved to another id or kind fails to open,
//! and the id is re-checked against the keyed hash of the decompressed bytes.

use crate::compress::{Codec, Compression, compress_into, decompress_into};
use crate::crypto::{Cipher, Keys};
use crate::error::{Error, Result};
use crate::format::{BlobKind, MAX_BLOB_RAW, aad};
use crate::id::BlobId;

/// Compress and seal `raw`, appending the sealed blob to `out`. `scratch` is reused.
pub fn seal_blob(
    repo_id: &[u8; 32],
    cipher: &Cipher,
    kind: BlobKind,
    id: &BlobId,
    raw: &[u8],
    compression: Compression,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    debug_assert!(raw.len() <= MAX_BLOB_RAW);
    scratch.clear();
    scratch.push(0);
    scratch.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    let codec = compress_into(compression, raw, scratch);
    scratch[0] = codec as u8;
    cipher.seal_into(&aad(repo_id, kind.kind(), &id.0), scratch, out);
}

/// Open, decompress and verify a sealed blob.
pub fn open_blob(
    repo_id: &[u8; 32],
    keys: &Keys,
    cipher: &Cipher,
    kind: BlobKind,
    id: &BlobId,
    sealed: &[u8],
) -> Result<Vec<u8>> {
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    open_blob_into(repo_id, keys, cipher, kind, id, sealed, &mut scratch, &mut out)?;
    Ok(out)
}

/// [`open_blob`] into `out` (replaced), with `scratch` for the decrypted bytes: a loop
/// over many blobs reuses both buffers instead of allocating (and page-faulting) each.
#[allow(clippy::too_many_arguments)]
pub fn open_blob_into(
    repo_id: &[u8; 32],
    keys: &Keys,
    cipher: &Cipher,
    kind: BlobKind,
    id: &BlobId,
    sealed: &[u8],
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<()> {
    scratch.clear();
    scratch.extend_from_slice(sealed);
    open_blob_in_place(repo_id, keys, cipher, kind, id, scratch, out)
}

/// [`open_blob`] decrypting where the sealed bytes lie (they are overwritten), the
/// plaintext going to `out` (replaced).
pub fn open_blob_in_place(
    repo_id: &[u8; 32],
    keys: &Keys,
    cipher: &Cipher,
    kind: BlobKind,
    id: &BlobId,
    sealed: &mut [u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let what = || format!("{kind:?} blob {id}");
    let plain = cipher.open_in_place(&aad(repo_id, kind.kind(), &id.0), sealed, what)?;
    if plain.len() < 5 {
        return Err(Error::corrupt(format!("{}: truncated header", what())));
    }
    let codec =
        Codec::from_u8(plain[0]).ok_or_else(|| Error::corrupt(format!("{}: unknown codec {}", what(), plain[0])))?;
    let raw_len = u32::from_le_bytes(plain[1..5].try_into().expect("4 bytes")) as usize;
    if raw_len > MAX_BLOB_RAW {
        return Err(Error::corrupt(format!(
            "{}: declares {raw_len} bytes, more than the {MAX_BLOB_RAW} limit",
            what()
        )));
    }
    decompress_into(codec, &plain[5..], raw_len, out).map_err(|e| Error::corrupt(format!("{}: {e}", what())))?;
    let actual = match kind {
        BlobKind::Data => keys.chunk_id(out),
        BlobKind::Tree => keys.meta_id(out),
    };
    if actual != id.0 {
        return Err(Error::corrupt(format!("{}: content does not match its id", what())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_swap_detection() {
        let keys = Keys::generate();
        let c = keys.cipher();
        let rid = [9; 32];
        let data = b"some chunk data some chunk data some chunk data".to_vec();
        let id = BlobId(keys.chunk_id(&data));
        let (mut s, mut out) = (Vec::new(), Vec::new());
        seal_blob(
            &rid,
            &c,
            BlobKind::Data,
            &id,
            &data,
            Compression::Zstd(3),
            &mut s,
            &mut out,
        );
        assert_eq!(open_blob(&rid, &keys, &c, BlobKind::Data, &id, &out).unwrap(), data);
        assert!(open_blob(&rid, &keys, &c, BlobKind::Tree, &id, &out).is_err());
        assert!(open_blob(&rid, &keys, &c, BlobKind::Data, &BlobId([0; 32]), &out).is_err());
        assert!(open_blob(&[8; 32], &keys, &c, BlobKind::Data, &id, &out).is_err());
    }

    #[test]
    fn huge_declared_size_refused() {
        let keys = Keys::generate();
        let c = keys.cipher();
        let rid = [9; 32];
        let id = BlobId([1; 32]);
        let mut plain = vec![1u8];
        plain.extend_from_slice(&u32::MAX.to_le_bytes());
        plain.extend_from_slice(b"junk");
        let sealed = c.seal(&aad(&rid, BlobKind::Data.kind(), &id.0), &plain);
        let e = open_blob(&rid, &keys, &c, BlobKind::Data, &id, &sealed).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
    }
}
