//! `verify`: the repository's snapshots checked against what was seen before, so that a
//! snapshot deleted (or a tombstone removed) behind every client's back is found.
//!
//! Inside the repository, a deletion shows where the snapshot chain still records the
//! deleted snapshot: a later snapshot saw it as a head, names it as its parent, or the
//! tombstone of a forgotten one saw it ([`Repository::broken_links`]). The newest snapshots
//! are nobody's yet, so `verify --anchor FILE` keeps, outside the repository, the list of snapshots
//! present and forgotten at the last verification (the *anchor*), and checks that each is
//! still present or forgotten on purpose (a tombstone names it). The anchor ends with a
//! digest of its own lines: a user who keeps the short digest elsewhere (a password
//! manager, paper) can tell that the anchor file itself was not rewritten. Format:
//! format-spec §18, "Anchors".

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::repo::Repository;

/// The first line of an anchor file.
pub const ANCHOR_HEADER: &str = "projectclone-anchor 1";

/// Digest characters shown to users (80 bits): enough to tell two anchors apart by eye.
pub const SHORT_DIGEST: usize = 20;

/// The snapshots of a repository now: present ones with when and where they were taken,
/// and the ids tombstones name.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// The repository's id.
    pub repo_id: [u8; 32],
    /// Present snapshots: id → (time as RFC 3339, host).
    pub present: BTreeMap<SnapshotId, (String, String)>,
    /// Snapshots a tombstone names.
    pub forgotten: BTreeSet<SnapshotId>,
}

impl State {
    /// The state of `repo` as its last sync left the cache.
    pub fn of(repo: &Repository) -> Result<State> {
        let present = repo
            .snapshots()?
            .into_iter()
            .map(|(id, s)| {
                let host = s.hostname.replace(char::is_whitespace, "_");
                (id, (crate::format_time(&s.time, s.utc_offset), host))
            })
            .collect();
        let forgotten = repo.index.tombstones()?.into_iter().map(|t| t.1).collect();
        Ok(State {
            repo_id: *repo.repo_id(),
            present,
            forgotten,
        })
    }
}

/// What an anchor file holds: the snapshots present and forgotten when it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The repository it belongs to.
    pub repo_id: [u8; 32],
    /// When it was made (RFC 3339, this client's clock).
    pub made: String,
    /// Present snapshots then: id → (time, host).
    pub present: BTreeMap<SnapshotId, (String, String)>,
    /// Snapshots forgotten then.
    pub forgotten: BTreeSet<SnapshotId>,
}

impl Anchor {
    /// The anchor of a state, made at `made`.
    pub fn of(state: &State, made: &str) -> Anchor {
        Anchor {
            repo_id: state.repo_id,
            made: made.to_string(),
            present: state.present.clone(),
            forgotten: state.forgotten.clone(),
        }
    }

    /// Every line but the digest, each ending in `\n`.
    fn body(&self) -> String {
        let mut s = format!(
            "{ANCHOR_HEADER}\nrepository {}\nmade {}\n",
            hex::encode(self.repo_id),
            self.made
        );
        for (id, (time, host)) in &self.present {
            s.push_str(&format!("snapshot {} {time} {host}\n", id.to_hex()));
        }
        for id in &self.forgotten {
            s.push_str(&format!("forgotten {}\n", id.to_hex()));
        }
        s
    }

    /// BLAKE3 of the lines before the digest line, 64 hex digits.
    pub fn digest(&self) -> String {
        blake3::hash(self.body().as_bytes()).to_hex().to_string()
    }

    /// The file's text: the lines, then `digest HEX`.
    pub fn render(&self) -> String {
        format!("{}digest {}\n", self.body(), self.digest())
    }

    /// Read an anchor file's text; `what` names it in errors. A digest that does not match
    /// the lines means the file was changed since it was written.
    pub fn parse(text: &str, what: &str) -> Result<Anchor> {
        let bad = |why: String| Error::Invalid(format!("anchor {what}: {why}"));
        let mut lines = text.lines();
        if lines.next() != Some(ANCHOR_HEADER) {
            return Err(bad(format!(
                "not an anchor file (it must begin with {ANCHOR_HEADER:?})"
            )));
        }
        let hex32 = |s: &str, field: &str| -> Result<[u8; 32]> {
            let mut out = [0u8; 32];
            hex::decode_to_slice(s, &mut out).map_err(|_| bad(format!("{field}: not 64 hex digits: {s:?}")))?;
            Ok(out)
        };
        let mut a = Anchor {
            repo_id: [0; 32],
            made: String::new(),
            present: BTreeMap::new(),
            forgotten: BTreeSet::new(),
        };
        let mut digest = None;
        for (n, line) in lines.enumerate() {
            let n = n + 2;
            if digest.is_some() {
                return Err(bad(format!("line {n}: text after the digest line")));
            }
            let mut f = line.split(' ');
            match (f.next(), f.next(), f.next(), f.next(), f.next()) {
                (Some("repository"), Some(id), None, ..) => a.repo_id = hex32(id, "repository")?,
                (Some("made"), Some(t), None, ..) => a.made = t.to_string(),
                (Some("snapshot"), Some(id), Some(time), Some(host), None) => {
                    a.present
                        .insert(SnapshotId(hex32(id, "snapshot")?), (time.to_string(), host.to_string()));
                }
                (Some("forgotten"), Some(id), None, ..) => {
                    a.forgotten.insert(SnapshotId(hex32(id, "forgotten")?));
                }
                (Some("digest"), Some(d), None, ..) => digest = Some(d.to_string()),
                _ => return Err(bad(format!("line {n}: cannot read {line:?}"))),
            }
        }
        let Some(d) = digest else {
            return Err(bad("no digest line: the file is incomplete".into()));
        };
        // The digest covers the bytes as they are, and those bytes must be the one form
        // projectclone writes: a line repeated or reordered is not silently taken.
        let body = text.rfind("\ndigest ").map_or("", |i| &text[..=i]);
        if d != blake3::hash(body.as_bytes()).to_hex().as_str() {
            return Err(bad(
                "its digest does not match its lines: the file was changed since projectclone wrote it".into(),
            ));
        }
        if a.render() != text {
            return Err(bad(
                "its lines are not as projectclone writes them (repeated, out of order, or extra)".into(),
            ));
        }
        Ok(a)
    }

    /// What no longer holds now, one line each, in id order: a snapshot present then and
    /// now neither present nor forgotten, a snapshot forgotten then whose tombstone is gone.
    pub fn breaks(&self, now: &State) -> Vec<String> {
        let mut out = Vec::new();
        for (id, (time, host)) in &self.present {
            if !now.present.contains_key(id) && !now.forgotten.contains(id) {
                out.push(format!(
                    "snapshot {} (taken {time} on {host}), present at the anchor of {}, is gone without \
                     a tombstone: it was deleted behind the repository's back (or the repository was \
                     rolled back)",
                    id.to_hex(),
                    self.made
                ));
            }
        }
        for id in &self.forgotten {
            if !now.forgotten.contains(id) {
                let back = if now.present.contains_key(id) {
                    "the snapshot is back"
                } else {
                    "the snapshot is gone"
                };
                out.push(format!(
                    "the tombstone of snapshot {}, there at the anchor of {}, is gone ({back}): tombstones \
                     are never deleted, so the repository was changed behind its back (or rolled back)",
                    id.to_hex(),
                    self.made
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let mut s = State {
            repo_id: [7; 32],
            ..Default::default()
        };
        s.present
            .insert(SnapshotId([1; 32]), ("2026-12-06T10:00:00+00:00".into(), "vm".into()));
        s.present.insert(
            SnapshotId([2; 32]),
            ("2026-12-06T11:00:00+00:00".into(), "laptop".into()),
        );
        s.forgotten.insert(SnapshotId([3; 32]));
        s
    }

    #[test]
    fn an_anchor_reads_back_and_an_edited_one_is_refused() {
        let a = Anchor::of(&state(), "2026-12-06T12:00:00+00:00");
        let text = a.render();
        assert_eq!(Anchor::parse(&text, "f").unwrap(), a);
        let edited = text.replacen(&hex::encode([1u8; 32]), &hex::encode([9u8; 32]), 1);
        let e = Anchor::parse(&edited, "f").unwrap_err().to_string();
        assert!(e.contains("digest does not match"), "{e}");
        let cut = text
            .lines()
            .filter(|l| !l.starts_with("digest"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(Anchor::parse(&cut, "f").unwrap_err().to_string().contains("incomplete"));
        assert!(Anchor::parse("hello\n", "f").is_err());
        assert!(Anchor::parse(&format!("{text}extra\n"), "f").is_err());
        // A repeated line that a later one overrides, with the digest of the whole body
        // (found by the fuzz target): refused, though the lines it keeps are right.
        let made = "made 2026-12-06T12:00:00+00:00\n";
        let mut doubled = text.replacen(made, &format!("made earlier\n{made}"), 1);
        let body_end = doubled.rfind("\ndigest ").unwrap() + 1;
        let digest = blake3::hash(&doubled.as_bytes()[..body_end]).to_hex().to_string();
        doubled.truncate(body_end);
        doubled.push_str(&format!("digest {digest}\n"));
        let e = Anchor::parse(&doubled, "f").unwrap_err().to_string();
        assert!(e.contains("not as projectclone writes them"), "{e}");
    }

    #[test]
    fn breaks_are_deletions_without_tombstones_and_lost_tombstones() {
        let a = Anchor::of(&state(), "then");
        let mut now = state();
        assert!(a.breaks(&now).is_empty());
        // Forgotten on purpose, and a new snapshot: fine.
        now.present.remove(&SnapshotId([1; 32]));
        now.forgotten.insert(SnapshotId([1; 32]));
        now.present.insert(SnapshotId([4; 32]), ("t".into(), "h".into()));
        assert!(a.breaks(&now).is_empty());
        // Deleted without a tombstone, and a tombstone removed.
        now.present.remove(&SnapshotId([2; 32]));
        now.forgotten.remove(&SnapshotId([3; 32]));
        let b = a.breaks(&now);
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(
            b[0].contains(&hex::encode([2u8; 32])) && b[0].contains("laptop"),
            "{b:?}"
        );
        assert!(b[1].contains("tombstone of snapshot") && b[1].contains("gone"), "{b:?}");
    }
}
