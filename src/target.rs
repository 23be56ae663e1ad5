//! Keeping writes out of the repository and the cache: a restore or export target that is,
//! contains or lies inside one of them is refused before anything is written (backup
//! refuses the reverse: it never reads them).
//!
//! Paths are compared with every symlink resolved, and the directories on the way are
//! also compared by device and inode, so neither a symlink nor a bind mount (which shows
//! the same directory, with the same device and inode, at another path) gets around it.
//! A path that does not exist yet is judged by its nearest existing ancestor.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Symlinks followed while resolving one path before giving up (Linux's own limit).
const MAX_HOPS: u32 = 40;
/// Directories below a protected one compared by device and inode (its own layout is two
/// levels deep: `packs/<xx>`, `<repo id>/` in the cache).
const PROTECTED_DEPTH: usize = 2;
const PROTECTED_MAX_DIRS: usize = 4096;

type DevIno = (u64, u64);

fn dev_ino(p: &Path) -> Option<DevIno> {
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// `p` made absolute with every symlink resolved as far as the path exists; the rest (a
/// part that does not exist yet) is appended lexically, as `create_dir_all` would create it.
fn resolve(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| Error::io(".", e))?.join(p)
    };
    let mut todo: VecDeque<OsString> = VecDeque::new();
    let push_comps = |todo: &mut VecDeque<OsString>, p: &Path, front: bool| {
        let comps: Vec<OsString> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        if front {
            for c in comps.into_iter().rev() {
                todo.push_front(c);
            }
        } else {
            todo.extend(comps);
        }
    };
    push_comps(&mut todo, &abs, false);
    let mut cur = PathBuf::from("/");
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            // `cur` holds no symlink, so its lexical parent is its real parent.
            cur.pop();
            continue;
        }
        let next = cur.join(&c);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() && hops < MAX_HOPS => {
                hops += 1;
                let link = std::fs::read_link(&next).map_err(|e| Error::io(&next, e))?;
                if link.is_absolute() {
                    cur = PathBuf::from("/");
                }
                push_comps(&mut todo, &link, true);
            }
            // Anything else, including a part that does not exist: taken as it is.
            _ => cur = next,
        }
    }
    Ok(cur)
}

/// Device and inode of every existing directory from `resolved` (if it exists) up to `/`.
fn chain(resolved: &Path) -> Vec<DevIno> {
    resolved.ancestors().filter_map(dev_ino).collect()
}

/// `dir` and the directories below it, down to `PROTECTED_DEPTH` (no symlink followed).
fn subtree(dir: &Path) -> HashSet<DevIno> {
    let mut out = HashSet::new();
    let Ok(m) = std::fs::metadata(dir) else { return out };
    out.insert((m.dev(), m.ino()));
    let mut level = vec![dir.to_path_buf()];
    for _ in 0..PROTECTED_DEPTH {
        let mut next = Vec::new();
        for d in &level {
            let Ok(rd) = std::fs::read_dir(d) else { continue };
            for e in rd.flatten() {
                if out.len() >= PROTECTED_MAX_DIRS {
                    return out;
                }
                if let Ok(m) = std::fs::symlink_metadata(e.path())
                    && m.is_dir()
                {
                    out.insert((m.dev(), m.ino()));
                    next.push(e.path());
                }
            }
        }
        level = next;
    }
    out
}

/// Refuse `target` (named `what` in the error, e.g. `restore target`) when it is, contains
/// or lies inside one of `protected` (a name such as `the repository`, and its path).
/// Protected paths that do not exist are compared by path only.
pub fn refuse_overlap(what: &str, target: &Path, protected: &[(&str, &Path)]) -> Result<()> {
    let t = resolve(target)?;
    let t_chain = chain(&t);
    let t_self = dev_ino(&t);
    for (name, p) in protected {
        let r = resolve(p)?;
        let inside = t.starts_with(&r) || {
            let below = subtree(&r);
            t_chain.iter().any(|d| below.contains(d))
        };
        let contains = r.starts_with(&t) || t_self.is_some_and(|s| chain(&r).contains(&s));
        let how = match (inside, contains) {
            (true, true) => "is",
            (true, false) => "lies inside",
            (false, true) => "contains",
            (false, false) => continue,
        };
        return Err(Error::Invalid(format!(
            "{what} {} {how} {name} {}: writing there could destroy it, so nothing was \
             written; choose a target outside it",
            target.display(),
            p.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_inside_contains_and_beside() {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("repo");
        std::fs::create_dir_all(repo.join("packs/ab")).unwrap();
        std::os::unix::fs::symlink(&repo, t.path().join("link")).unwrap();
        std::os::unix::fs::symlink("repo/../repo/packs", t.path().join("rel")).unwrap();
        let p = [("the repository", repo.as_path())];
        let refused = |target: PathBuf, how: &str| {
            let e = refuse_overlap("restore target", &target, &p).unwrap_err().to_string();
            assert!(e.contains(how), "{}: {e}", target.display());
        };
        refused(repo.clone(), " is the repository");
        refused(repo.join("packs/ab"), "lies inside");
        refused(repo.join("new/deeper"), "lies inside");
        refused(repo.join("new/../../repo/x"), "lies inside");
        refused(t.path().join("link"), " is the repository");
        refused(t.path().join("link/new"), "lies inside");
        refused(t.path().join("rel/ab/x"), "lies inside");
        refused(t.path().to_path_buf(), "contains");
        refused(PathBuf::from("/"), "contains");
        for ok in [t.path().join("out"), t.path().join("repo2"), t.path().join("link2/x")] {
            refuse_overlap("restore target", &ok, &p).unwrap();
        }
        // A protected path that does not exist is compared by path.
        let gone = t.path().join("cache");
        refuse_overlap("x", &gone.join("a"), &[("the cache", gone.as_path())]).unwrap_err();
        refuse_overlap("x", &t.path().join("out"), &[("the cache", gone.as_path())]).unwrap();
    }

    #[test]
    fn symlink_loops_end() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b", t.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", t.path().join("b")).unwrap();
        let repo = t.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        refuse_overlap("t", &t.path().join("a/x"), &[("r", repo.as_path())]).unwrap();
    }
}
