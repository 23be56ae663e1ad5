//! Guarantee 6: restore never writes outside its target, whatever the repository holds,
//! and never follows a symlink it finds in the target.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use projectclone::format::{DirEncoding, NodeKind, encode_dir};
use projectclone::id::TreeId;

use crate::util::*;

/// `arena/target` is where restores go; everything else in `arena` must stay as it is.
struct Arena {
    env: Env,
    arena: PathBuf,
    outside: PathBuf,
}

impl Arena {
    fn new() -> Arena {
        let env = Env::with_repo();
        let arena = env.path("arena");
        let outside = arena.join("outside");
        write(arena.join("sentinel/keep.txt"), b"keep me\n");
        fs::create_dir_all(&outside).unwrap();
        Arena { env, arena, outside }
    }

    fn target(&self) -> PathBuf {
        self.arena.join("target")
    }

    /// Everything in the arena except the target, and the directories above it.
    fn outside_state(&self) -> BTreeMap<PathBuf, String> {
        let mut f = fingerprint(&self.arena);
        f.retain(|p, _| !p.starts_with("target"));
        let mut above = rel_paths(&self.env.path(""));
        above.retain(|p| {
            // The client's own state (what it trusts) is written by every command.
            !["arena/target", "cache", "forge-cache", "repo/locks", "xdg-state"]
                .iter()
                .any(|x| p.starts_with(x))
        });
        f.insert("..".into(), format!("{above:?}"));
        f
    }

    /// Restore `snap` and expect a clear failure that wrote nothing outside the target.
    #[track_caller]
    fn restore_fails_contained(&self, snap: &str, what: &str) {
        let before = self.outside_state();
        let out = self.env.run([
            "restore".as_ref(),
            snap.as_ref(),
            "--target".as_ref(),
            self.target().as_os_str(),
        ]);
        assert_ne!(out.code, 0, "{what}: restore succeeded\nstderr: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        let lower = out.stderr.to_lowercase();
        assert!(
            ["entry", "entries", "name", "unsafe", "duplicate", "corrupt"]
                .iter()
                .any(|w| lower.contains(w)),
            "{what}: the error should say what is wrong with the tree: {}",
            out.stderr
        );
        assert_eq!(self.outside_state(), before, "{what}: restore wrote outside its target");
        assert!(
            fs::read_dir(&self.outside).unwrap().next().is_none(),
            "{what}: wrote into outside/"
        );
        assert!(!self.arena.join("escaped").exists() && !self.env.path("escaped").exists());
        let _ = fs::remove_dir_all(self.target());
    }
}

fn file_node(f: &mut Forge, name: &[u8], content: &[u8]) -> projectclone::format::Node {
    let d = f.data(content);
    node(name, NodeKind::File(d))
}

#[test]
fn entries_named_dot_dot_slash_empty_or_nul_are_rejected() {
    let a = Arena::new();
    let mut f = Forge::open(&a.env);
    let bad_names: [&[u8]; 7] = [b"..", b".", b"", b"a/b", b"../escaped", b"x\0y", b"/escaped"];
    let mut snaps = Vec::new();
    for name in bad_names {
        // As a file at the top.
        let n = file_node(&mut f, name, b"PWNED\n");
        let t = f.tree(vec![n], None);
        snaps.push((
            f.snapshot(t, "file"),
            format!("file named {:?}", String::from_utf8_lossy(name)),
        ));
        // As a directory holding a file, one level down.
        let inner_file = file_node(&mut f, b"escaped", b"PWNED\n");
        let inner = f.tree(vec![inner_file], None);
        let bad_dir = node(name, NodeKind::Dir(inner));
        let sub = f.tree(vec![bad_dir], None);
        let ok = file_node(&mut f, b"fine.txt", b"fine\n");
        let t = f.tree(vec![ok, node(b"sub", NodeKind::Dir(sub))], None);
        snaps.push((
            f.snapshot(t, "dir"),
            format!("directory named {:?}", String::from_utf8_lossy(name)),
        ));
        // As a file inside a directory stored inline in its parent's page (format §9).
        let inner_file = file_node(&mut f, name, b"PWNED\n");
        let Ok(DirEncoding::Inline(inline)) = encode_dir(vec![inner_file], true, |_| TreeId([0; 32])) else {
            panic!("a one-entry directory is stored inline");
        };
        let t = f.tree(vec![node(b"inline", NodeKind::InlineDir(inline))], None);
        snaps.push((
            f.snapshot(t, "inline"),
            format!("entry named {:?} in an inline directory", String::from_utf8_lossy(name)),
        ));
    }
    // The name "a" next to "a/b": the slash entry would land inside the directory.
    let empty = f.tree(vec![], None);
    let ab = file_node(&mut f, b"a/b", b"PWNED\n");
    let t = f.tree(vec![node(b"a", NodeKind::Dir(empty)), ab], None);
    snaps.push((f.snapshot(t, "a and a/b"), "a and a/b".into()));

    for (snap, what) in &snaps {
        a.restore_fails_contained(snap, what);
    }
    // Other commands refuse the same trees without panicking; check calls it damage.
    for (snap, what) in &snaps {
        let out = a.env.run(["ls", snap.as_str()]);
        assert_ne!(out.code, 0, "ls of {what} succeeded: {}", out.stdout);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    let out = a.env.run(["check"]);
    assert_ne!(out.code, 0, "check must report hostile trees: {}", out.stdout);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn symlink_followed_by_a_directory_of_the_same_name_is_rejected() {
    let a = Arena::new();
    let mut f = Forge::open(&a.env);
    let outside = a.outside.as_os_str().as_encoded_bytes().to_vec();
    let mut snaps = Vec::new();
    for target in [outside.clone(), b"../outside".to_vec()] {
        // One page: the symlink, then a directory of the same name writing through it.
        let pwned = file_node(&mut f, b"pwned", b"PWNED\n");
        let inner = f.tree(vec![pwned], None);
        let t = f.tree(
            vec![
                node(b"evil", NodeKind::Symlink(target.clone())),
                node(b"evil", NodeKind::Dir(inner)),
            ],
            None,
        );
        snaps.push((
            f.snapshot(t, "one page"),
            format!("one page, symlink to {:?}", String::from_utf8_lossy(&target)),
        ));
        // Two pages: the symlink ends the first, the directory starts the second.
        let page2 = f.tree(vec![node(b"evil", NodeKind::Dir(inner))], None);
        let t = f.tree(vec![node(b"evil", NodeKind::Symlink(target.clone()))], Some(page2));
        snaps.push((
            f.snapshot(t, "two pages"),
            format!("two pages, symlink to {:?}", String::from_utf8_lossy(&target)),
        ));
        // The directory first, then the symlink (reverse order).
        let t = f.tree(
            vec![
                node(b"evil", NodeKind::Dir(inner)),
                node(b"evil", NodeKind::Symlink(target.clone())),
            ],
            None,
        );
        snaps.push((f.snapshot(t, "reversed"), "directory then symlink".into()));
    }
    for (snap, what) in &snaps {
        a.restore_fails_contained(snap, what);
    }
}

#[test]
fn symlinks_already_in_the_target_are_replaced_not_followed() {
    let a = Arena::new();
    let env = &a.env;
    let src = env.path("src");
    write(src.join("sub/file.txt"), b"restored into sub\n");
    write(src.join("top.txt"), b"restored top\n");
    write(src.join("deep/er/x.txt"), b"x\n");

    let victim = a.outside.join("victim.txt");
    write(&victim, b"must not change\n");
    let target = a.target();
    fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&a.outside, target.join("sub")).unwrap();
    std::os::unix::fs::symlink(&victim, target.join("top.txt")).unwrap();
    std::os::unix::fs::symlink("../outside", target.join("deep")).unwrap();
    // A hard link to a file outside: replacing it must not write through it.
    let linked = a.outside.join("linked.txt");
    write(&linked, b"outside, hard-linked into the target\n");
    write(src.join("hl.txt"), b"the snapshot's own hl.txt\n");
    let id = env.backup([&src]);
    fs::hard_link(&linked, target.join("hl.txt")).unwrap();
    let before = a.outside_state();

    env.restore(&id, &target);
    assert_eq!(
        a.outside_state(),
        before,
        "restore followed a symlink out of the target"
    );
    assert_eq!(fs::read(&victim).unwrap(), b"must not change\n");
    assert_eq!(fs::read(&linked).unwrap(), b"outside, hard-linked into the target\n");
    assert_eq!(fs::read(target.join("hl.txt")).unwrap(), b"the snapshot's own hl.txt\n");
    for (p, content) in [
        ("sub/file.txt", &b"restored into sub\n"[..]),
        ("top.txt", b"restored top\n"),
        ("deep/er/x.txt", b"x\n"),
    ] {
        assert!(!is_symlink(&target.join(p)), "{p} is still a symlink");
        assert_eq!(fs::read(target.join(p)).unwrap(), content, "{p}");
    }
    for d in ["sub", "deep"] {
        assert!(
            fs::symlink_metadata(target.join(d)).unwrap().is_dir(),
            "{d} should be a real directory"
        );
    }

    // The same with --include, which restores only part of the tree.
    fs::remove_dir_all(&target).unwrap();
    fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&a.outside, target.join("sub")).unwrap();
    env.run([
        "restore".as_ref(),
        id.as_ref(),
        "--include".as_ref(),
        "file.txt".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ])
    .success();
    assert_eq!(a.outside_state(), before, "restore --include followed a symlink");
    assert!(fs::symlink_metadata(target.join("sub")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("sub/file.txt")).unwrap(), b"restored into sub\n");
}

fn is_symlink(p: &Path) -> bool {
    fs::symlink_metadata(p)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}
