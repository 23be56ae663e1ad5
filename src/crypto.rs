//! Key material, key derivation (Argon2id), sealing (XChaCha20-Poly1305) and keyed ids.
//!
//! The master key is 32 random bytes. Every other key is derived from it with
//! BLAKE3's `derive_key` under a distinct context string, so a leak of one subkey
//! says nothing about the others.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::id::ID_LEN;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext: nonce + tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

const CTX_DATA_ID: &str = "projectclone 2026-11 v1 data id key";
const CTX_TREE_ID: &str = "projectclone 2026-11 v1 tree id key";
const CTX_AEAD: &str = "projectclone 2026-11 v1 aead key";
const CTX_GEAR: &str = "projectclone 2026-11 v1 chunker gear table";

/// Fill a buffer from `rand`'s thread-local CSPRNG (ChaCha, seeded from the OS).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// The repository master key and the subkeys derived from it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Keys {
    master: [u8; 32],
    data_id: [u8; 32],
    tree_id: [u8; 32],
    aead: [u8; 32],
    gear_seed: [u8; 32],
}

impl Keys {
    pub fn from_master(master: [u8; 32]) -> Self {
        Keys {
            data_id: blake3::derive_key(CTX_DATA_ID, &master),
            tree_id: blake3::derive_key(CTX_TREE_ID, &master),
            aead: blake3::derive_key(CTX_AEAD, &master),
            gear_seed: blake3::derive_key(CTX_GEAR, &master),
            master,
        }
    }

    /// [`from_master`](Self::from_master) from a borrowed key, so no copy of it is left
    /// behind on the stack.
    pub fn from_master_ref(master: &[u8; 32]) -> Self {
        let mut keys = Keys {
            master: [0; 32],
            data_id: blake3::derive_key(CTX_DATA_ID, master),
            tree_id: blake3::derive_key(CTX_TREE_ID, master),
            aead: blake3::derive_key(CTX_AEAD, master),
            gear_seed: blake3::derive_key(CTX_GEAR, master),
        };
        keys.master.copy_from_slice(master);
        keys
    }

    pub fn generate() -> Self {
        let master = Zeroizing::new(random_bytes::<32>());
        Self::from_master_ref(&master)
    }

    pub fn master(&self) -> &[u8; 32] {
        &self.master
    }

    /// A value that tells whether two keys are the same master key without revealing it:
    /// clients pin it ([`crate::trust`]).
    pub fn key_check(&self) -> [u8; 32] {
        blake3::derive_key("projectclone 2026-12 key check value", &self.master)
    }

    /// Id of a file chunk: keyed BLAKE3, so ids do not confirm content to outsiders.
    pub fn chunk_id(&self, data: &[u8]) -> [u8; ID_LEN] {
        *blake3::keyed_hash(&self.data_id, data).as_bytes()
    }

    /// Id of trees, chunk-list pages, snapshots, index deltas and condemned records.
    pub fn meta_id(&self, data: &[u8]) -> [u8; ID_LEN] {
        *blake3::keyed_hash(&self.tree_id, data).as_bytes()
    }

    /// The 256-entry gear table for FastCDC, expanded from the key with BLAKE3's XOF.
    pub fn gear_table(&self) -> Vec<u64> {
        let mut bytes = [0u8; 256 * 8];
        blake3::Hasher::new_keyed(&self.gear_seed)
            .update(b"gear")
            .finalize_xof()
            .fill(&mut bytes);
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("chunks_exact(8) yields 8 bytes")))
            .collect()
    }

    pub fn cipher(&self) -> Cipher {
        Cipher::new(&self.aead)
    }
}

/// An XChaCha20-Poly1305 instance. Sealed layout: `nonce(24) || ciphertext || tag(16)`.
#[derive(Clone)]
pub struct Cipher(XChaCha20Poly1305);

impl Cipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Cipher(XChaCha20Poly1305::new(key.into()))
    }

    /// Seal `plaintext` with a fresh random nonce, appending to `out`.
    pub fn seal_into(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        self.seal_with_nonce(random_bytes(), aad, plaintext, out);
    }

    /// `seal_into` with a given nonce (known-answer tests); a nonce must never repeat.
    fn seal_with_nonce(&self, nonce_bytes: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let nonce = XNonce::from(nonce_bytes);
        let start = out.len();
        out.reserve(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .encrypt_inout_detached(&nonce, aad, (&mut out[start + NONCE_LEN..]).into())
            // The only failure is a message longer than 2^38 bytes; our objects are far smaller.
            .expect("XChaCha20-Poly1305 message length within limits");
        out.extend_from_slice(&tag);
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        self.seal_into(aad, plaintext, &mut out);
        out
    }

    /// Open a sealed object; `what` names it in the error.
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        self.open_lazy(aad, sealed, || what.to_string())
    }

    /// [`open`](Self::open), naming the object only when there is an error to report
    /// (blobs are opened by the million; formatting an id each time shows in profiles).
    pub fn open_lazy(&self, aad: &[u8], sealed: &[u8], what: impl Fn() -> String) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open_into(aad, sealed, what, &mut buf)?;
        Ok(buf)
    }

    /// Open a sealed object where it lies: the plaintext replaces the ciphertext inside
    /// `sealed` and is returned as a sub-slice. No copy, no allocation.
    pub fn open_in_place<'a>(&self, aad: &[u8], sealed: &'a mut [u8], what: impl Fn() -> String) -> Result<&'a [u8]> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(Error::corrupt(format!("{}: sealed object too short", what())));
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let tag_at = rest.len() - TAG_LEN;
        let (ct, tag) = rest.split_at_mut(tag_at);
        let nonce = XNonce::try_from(&nonce[..]).expect("split_at gave NONCE_LEN bytes");
        let tag = chacha20poly1305::Tag::try_from(&tag[..]).expect("split gave TAG_LEN bytes");
        self.0
            .decrypt_inout_detached(&nonce, aad, (&mut ct[..]).into(), &tag)
            .map_err(|_| {
                Error::corrupt(format!(
                    "{}: authentication failed (damaged, swapped, or from another repository)",
                    what()
                ))
            })?;
        Ok(ct)
    }

    /// [`open_lazy`](Self::open_lazy) into `buf` (replaced), so a loop reuses one buffer.
    pub fn open_into(&self, aad: &[u8], sealed: &[u8], what: impl Fn() -> String, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        buf.extend_from_slice(sealed);
        let len = self.open_in_place(aad, buf, what)?.len();
        buf.copy_within(NONCE_LEN..NONCE_LEN + len, 0);
        buf.truncate(len);
        Ok(())
    }
}

/// Argon2id parameters, stored in each key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

/// The default: RFC 9106's second recommended setting (64 MiB, 3 passes, 4 lanes).
impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 4,
        }
    }
}

/// Largest accepted memory: 256 MiB, four times the default.
pub const KDF_MAX_M_COST: u32 = 256 * 1024;
/// Largest accepted number of passes: four times the default.
pub const KDF_MAX_T_COST: u32 = 12;
/// Largest accepted work, memory times passes (KiB·passes): four times the default's.
pub const KDF_MAX_WORK: u64 = 4 * 64 * 1024 * 3;
/// Largest accepted number of lanes.
pub const KDF_MAX_P_COST: u32 = 16;

impl KdfParams {
    /// Bounds accepted when reading a key file (and so the most `init` may write): at most
    /// 256 MiB, 12 passes, four times the default's work (memory times passes) and 16
    /// lanes, so a planted key file costs at most four default derivations, never an
    /// unbounded allocation or a long spin. The lower bounds are Argon2's own (and admit
    /// the cheap settings of `init --weak-kdf`).
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|why| Error::corrupt(format!("key file: {why}")))
    }

    /// [`validate`](Self::validate)'s rule, with the reason in plain words (for `init`,
    /// where out-of-range settings are a user's choice, not damage).
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.m_cost < 8
            || self.m_cost > KDF_MAX_M_COST
            || self.t_cost == 0
            || self.t_cost > KDF_MAX_T_COST
            || self.m_cost as u64 * self.t_cost as u64 > KDF_MAX_WORK
        {
            return Err(format!(
                "argon2id parameters out of range (m={} KiB, t={}; accepted: at most {} KiB, \
                 {} passes, and {} KiB times passes)",
                self.m_cost, self.t_cost, KDF_MAX_M_COST, KDF_MAX_T_COST, KDF_MAX_WORK
            ));
        }
        if self.p_cost == 0 || self.p_cost > KDF_MAX_P_COST || self.m_cost < 8 * self.p_cost {
            return Err(format!(
                "argon2id parallelism out of range (p={}; accepted: 1 to {KDF_MAX_P_COST}, \
                 and at most m/8: {} lanes need at least {} KiB)",
                self.p_cost,
                self.p_cost,
                8 * self.p_cost
            ));
        }
        Ok(())
    }

    /// Is the memory or the number of passes below `other`'s? (`init` refuses settings
    /// weaker than the default.) Lanes are not compared: they split the same work.
    pub fn weaker_than(&self, other: &KdfParams) -> bool {
        self.m_cost < other.m_cost || self.t_cost < other.t_cost
    }

    /// Each parameter the larger of the two: a new key is never weaker than the one it
    /// joins nor than `other` (the default). Within the read bounds when both are.
    pub fn at_least(&self, other: &KdfParams) -> KdfParams {
        KdfParams {
            m_cost: self.m_cost.max(other.m_cost),
            t_cost: self.t_cost.max(other.t_cost),
            p_cost: self.p_cost.max(other.p_cost),
        }
    }

    /// Derive the 32-byte key-wrapping key from a password (zeroed when dropped).
    pub fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        self.validate()?;
        let params = argon2::Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| Error::corrupt(format!("key file: argon2id parameters: {e}")))?;
        let count = params.block_count();
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        // The working memory (64 MiB by default) in fresh pages: the crate's own allocation
        // asks for 64-byte alignment, which the system allocator meets by zeroing every 4 KiB
        // page with `memset` on one thread before the lanes start; fresh pages are zero
        // already and fault in 2 MiB at a time from the lane threads
        // ([`crate::platform::ZeroedPages`]).
        let memory = count
            .checked_mul(argon2::Block::SIZE)
            .and_then(crate::platform::ZeroedPages::new);
        let done = match memory {
            Some(mut memory) => {
                // SAFETY: the pages are 2 MiB-aligned (more than `Block`'s 64 bytes), hold
                // exactly `count` blocks, are borrowed from `memory` for this call only, and
                // all-zero bytes are a valid `Block` (an array of `u64`).
                let blocks = unsafe { std::slice::from_raw_parts_mut(memory.as_mut_ptr().cast::<argon2::Block>(), count) };
                a.hash_password_into_with_memory(password, salt, &mut out[..], blocks)
            }
            None => a.hash_password_into(password, salt, &mut out[..]),
        };
        done.map_err(|e| Error::corrupt(format!("key file: argon2id: {e}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let k = Keys::generate();
        let c = k.cipher();
        let s = c.seal(b"aad", b"hello");
        assert_eq!(s.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(c.open(b"aad", &s, "t").unwrap(), b"hello");
        assert!(c.open(b"other", &s, "t").is_err());
        let mut bad = s.clone();
        bad[30] ^= 1;
        assert!(c.open(b"aad", &bad, "t").is_err());
    }

    /// Known answers from an independent implementation, so a change of the ChaCha20
    /// backend (AVX-512, AVX2, portable) can never change the bytes: the XChaCha20-Poly1305
    /// vector of draft-irtf-cfrg-xchacha-03 (A.3.1), and a 4,173-byte message, long enough
    /// for the wide SIMD paths, checked against pycryptodome's output.
    #[test]
    fn seal_matches_known_answers_on_every_backend() {
        use sha2::Digest;
        let key: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
        let nonce: [u8; 24] = std::array::from_fn(|i| 0x40 + i as u8);
        let c = Cipher::new(&key);
        // Seal with the fixed nonce; the sealed form is nonce || ciphertext || tag.
        let check = |aad: &[u8], pt: &[u8]| -> Vec<u8> {
            let mut sealed = Vec::new();
            c.seal_with_nonce(nonce, aad, pt, &mut sealed);
            assert_eq!(sealed[..NONCE_LEN], nonce);
            assert_eq!(c.open(aad, &sealed, "known answer").unwrap(), pt);
            sealed[NONCE_LEN..].to_vec()
        };
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let want = concat!(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb",
            "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452",
            "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9",
            "21f9664c97637da9768812f615c68b13b52e",
            "c0875924c1c7987947deafd8780acf49"
        );
        assert_eq!(
            hex::encode(check(&hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap(), pt)),
            want
        );

        let long: Vec<u8> = (0..4096 + 77).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(
            hex::encode(sha2::Sha256::digest(check(b"projectclone", &long))),
            "d527d05f1b1eb3a1413a642338d43edc3c7ae6c6797dd84609043d4b5c476d96"
        );
    }

    #[test]
    fn subkeys_differ() {
        let k = Keys::from_master([7; 32]);
        assert_ne!(k.chunk_id(b"x"), k.meta_id(b"x"));
        assert_eq!(k.gear_table().len(), 256);
    }

    /// The default is RFC 9106's second recommendation and passes the read bounds; a key
    /// made "at least the default" from any key the bounds accept is accepted too, so
    /// `key add` never writes a key that no open would read.
    #[test]
    fn kdf_bounds_admit_the_default_and_every_strengthened_key() {
        let d = KdfParams::default();
        assert_eq!((d.m_cost, d.t_cost, d.p_cost), (65536, 3, 4));
        d.validate().unwrap();
        let ms = [8, 64, 1024, 32768, 65536, 100_000, 131072, 196608, 262144, 262145];
        for m in ms {
            for t in 1..=13 {
                for p in [1, 4, 8, 16, 17] {
                    let k = KdfParams {
                        m_cost: m,
                        t_cost: t,
                        p_cost: p,
                    };
                    let ok = m <= KDF_MAX_M_COST
                        && t <= KDF_MAX_T_COST
                        && m as u64 * t as u64 <= KDF_MAX_WORK
                        && p <= KDF_MAX_P_COST
                        && m >= 8 * p;
                    assert_eq!(k.validate().is_ok(), ok, "{k:?}");
                    if ok {
                        let s = k.at_least(&d);
                        s.validate().unwrap_or_else(|e| panic!("{k:?} -> {s:?}: {e}"));
                        assert!(!s.weaker_than(&d) && !s.weaker_than(&k), "{k:?} -> {s:?}");
                    }
                }
            }
        }
        // The settings of the earlier default and of the old read bound are refused or weak.
        let old = KdfParams { m_cost: 32768, ..d };
        assert!(old.weaker_than(&d));
        assert!(
            KdfParams {
                m_cost: 1 << 20,
                t_cost: 20,
                p_cost: 4
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn derivation_in_mapped_memory_matches_the_crates_own_allocation() {
        let salt = b"sixteen byte salt";
        // Lanes and memories that do and do not divide evenly (Argon2 rounds the blocks down
        // to a multiple of 4 per lane), one pass and several.
        for (m_cost, t_cost, p_cost) in [(8, 1, 1), (100, 2, 3), (1024, 1, 4), (3 * 1024 + 17, 3, 2)] {
            let ours = KdfParams { m_cost, t_cost, p_cost }.derive(b"password", salt).unwrap();
            let params = argon2::Params::new(m_cost, t_cost, p_cost, Some(32)).unwrap();
            let mut theirs = [0u8; 32];
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(b"password", salt, &mut theirs)
                .unwrap();
            assert_eq!(*ours, theirs, "m={m_cost} t={t_cost} p={p_cost}");
        }
    }
}
