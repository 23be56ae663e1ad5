//! Typed 32-byte identifiers: one newtype per kind of object so they cannot be mixed up.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Length in bytes of every identifier.
pub const ID_LEN: usize = 32;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
        pub struct $name(
            /// The identifier's bytes.
            pub [u8; ID_LEN],
        );

        impl $name {
            /// The identifier's bytes.
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
            /// The 64 lowercase hex digits (as in the repository's object names).
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 8 hex digits, for human output.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            /// From exactly 32 bytes; `None` for any other length.
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                <[u8; ID_LEN]>::try_from(b).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = hex::FromHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; ID_LEN];
                hex::decode_to_slice(s, &mut out)?;
                Ok(Self(out))
            }
        }
    };
}

id_type!(
    /// Keyed BLAKE3 of a file chunk's plaintext.
    ChunkId
);
id_type!(
    /// Keyed BLAKE3 of a tree blob's plaintext (also used for chunk-list pages).
    TreeId
);
id_type!(
    /// Unkeyed BLAKE3 of a whole pack file's bytes: checkable without the key.
    PackId
);
id_type!(
    /// Keyed BLAKE3 of a snapshot object's plaintext.
    SnapshotId
);
id_type!(
    /// Name of an object in `index/`, `condemned/`, `locks/` or `keys/`.
    ObjectId
);

/// A blob id of either kind, as stored in pack headers and the index.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
pub struct BlobId(pub [u8; ID_LEN]);

impl From<ChunkId> for BlobId {
    fn from(c: ChunkId) -> Self {
        BlobId(c.0)
    }
}
impl From<TreeId> for BlobId {
    fn from(t: TreeId) -> Self {
        BlobId(t.0)
    }
}
impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ChunkId([0xab; 32]);
        let s = id.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<ChunkId>().unwrap(), id);
        assert!("abc".parse::<ChunkId>().is_err());
    }
}
