//! The older tool's command line, finished (README "Coming from projectclone 4.x"):
//! `projectclone NOTE --archive --encrypt` / `--recipient` writes `NAME.tar.gz.age`, which
//! Debian's `age` decrypts to the archive an unencrypted run writes; and the question
//! "Proceed with backup? [y/N]" asked on a real terminal (a pseudo-terminal made by
//! util-linux `script`, which .ci/install-servers installs).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use crate::util::*;

/// A small project at `ENV/work/proj`.
fn project(env: &Env) -> PathBuf {
    let src = env.path("work/proj");
    write(src.join("README.md"), b"# a secret project\n");
    write(src.join("src/main.rs"), text_bytes(3, 40_000));
    write(src.join("data/blob.bin"), random_bytes(4, 200_000));
    write(src.join("empty"), b"");
    std::os::unix::fs::symlink("README.md", src.join("link")).unwrap();
    age_tree(&src);
    src
}

fn old(env: &Env, dir: &Path, args: &[&str]) -> Out {
    run(env.cmd().current_dir(dir).args(args))
}

/// The entries of a destination folder, less its records folder.
fn views(dest: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dest) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".projectclone-export")
        .collect();
    v.sort();
    v
}

/// A key pair made by `age-keygen`: (identity file, public key).
fn keygen(env: &Env, name: &str) -> (PathBuf, String) {
    let key = env.path(name);
    let out = StdCommand::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("age-keygen runs (apt-get install age; .ci/install-servers installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .to_string();
    (key, public)
}

/// `tar -tzf`, each member with the archive's top folder replaced by `TOP`.
fn listing(archive: &Path, top: &str) -> Vec<String> {
    let out = StdCommand::new("tar").arg("-tzf").arg(archive).output().unwrap();
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|m| {
            let rest = m.strip_prefix(top).unwrap_or_else(|| panic!("{m} is not under {top}"));
            format!("TOP{rest}")
        })
        .collect()
}

fn extract(env: &Env, archive: &Path, into: &str) -> PathBuf {
    let x = env.path(into);
    fs::create_dir_all(&x).unwrap();
    let out = StdCommand::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpzf"])
        .arg(archive)
        .current_dir(&x)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    x
}

fn sha256sum_check(dir: &Path, file: &str) -> bool {
    StdCommand::new("sha256sum")
        .args(["--strict", "-c", file])
        .current_dir(dir)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn encrypted_archive_decrypts_with_age_to_the_archive_an_unencrypted_run_writes() {
    let env = Env::with_repo();
    let src = project(&env);
    let (key_a, pub_a) = keygen(&env, "a.key");
    let (key_b, pub_b) = keygen(&env, "b.key");
    let (key_c, _) = keygen(&env, "c.key");
    let plain_dest = env.path("plain");
    let dest = env.path("sealed");

    old(
        &env,
        &src,
        &["clear", "-a", "--manifest", "--dest", plain_dest.to_str().unwrap()],
    )
    .success();
    let out = old(
        &env,
        &src,
        &[
            "sealed",
            "--archive",
            "--manifest-sha",
            "--recipient",
            &pub_a,
            "--recipient",
            &pub_b,
            "--dest",
            dest.to_str().unwrap(),
        ],
    )
    .success();
    let id = out.snapshot_id();
    assert_eq!(env.snapshots().len(), 2);

    // NAME.tar.gz.age and NAME.tar.gz.age.sha256, nothing in clear.
    let names = views(&dest);
    assert_eq!(names.len(), 2, "{names:?}");
    let sealed_name = names[0].clone();
    assert!(sealed_name.ends_with("-proj-sealed.tar.gz.age"), "{sealed_name}");
    assert_eq!(names[1], format!("{sealed_name}.sha256"));
    let sealed = dest.join(&sealed_name);
    let bytes = fs::read(&sealed).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n-> X25519 "), "an age file");
    for needle in [&b"a secret project"[..], b"README.md", b"blob.bin", b"proj-sealed"] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{needle:?} in clear");
    }
    // The checksum is of the encrypted file, the one in DEST: `sha256sum -c` checks it there.
    let line = fs::read_to_string(dest.join(&names[1])).unwrap();
    assert!(line.ends_with(&format!("  {sealed_name}\n")), "{line:?}");
    assert!(sha256sum_check(&dest, &names[1]));

    // Each recipient decrypts it with Debian's age; a third key does not.
    let plain_names = views(&plain_dest);
    let plain_name = plain_names.iter().find(|n| n.ends_with(".tar.gz")).unwrap();
    let plain_top = plain_name.strip_suffix(".tar.gz").unwrap();
    let sealed_top = sealed_name.strip_suffix(".tar.gz.age").unwrap();
    let want = listing(&plain_dest.join(plain_name), plain_top);
    let clear = extract(&env, &plain_dest.join(plain_name), "x-clear");
    for (key, who) in [(&key_a, "a"), (&key_b, "b")] {
        let out_file = env.path(format!("{who}.tar.gz"));
        let d = StdCommand::new("age")
            .arg("-d")
            .arg("-i")
            .arg(key)
            .arg("-o")
            .arg(&out_file)
            .arg(&sealed)
            .output()
            .expect("age runs (apt-get install age)");
        assert!(d.status.success(), "age -d: {}", String::from_utf8_lossy(&d.stderr));
        // A gzip stream (as the unencrypted view), with the same members under its top
        // folder, and the same bytes, modes and times once extracted.
        assert_eq!(&fs::read(&out_file).unwrap()[..2], b"\x1f\x8b");
        assert_eq!(listing(&out_file, sealed_top), want);
        let x = extract(&env, &out_file, &format!("x-{who}"));
        assert_trees_equal(&clear.join(plain_top), &x.join(sealed_top), false);
        assert_trees_equal(&src, &x.join(sealed_top), false);
    }
    let d = StdCommand::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key_c)
        .arg("-o")
        .arg(env.path("c.tar.gz"))
        .arg(&sealed)
        .output()
        .unwrap();
    assert!(!d.status.success());

    // --keep counts the encrypted archive and its checksum as one view and removes both.
    old(
        &env,
        &src,
        &["later", "-a", "--dest", dest.to_str().unwrap(), "--keep", "1"],
    )
    .success();
    let after = views(&dest);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].ends_with("-proj-later.tar.gz"), "{after:?}");
    // The snapshot in the repository is the project, whatever the view.
    let r = env.path("restored");
    env.restore(&id, &r);
    assert_trees_equal(&src, &r, false);
}

#[test]
fn passphrase_encryption_takes_the_sources_of_export_encrypt() {
    let env = Env::with_repo();
    let src = project(&env);
    let dest = env.path("views");
    let d = dest.to_str().unwrap();
    let decrypt = |file: &Path, pass: &str| -> Result<Vec<u8>, String> {
        let bytes = fs::read(file).unwrap();
        let dec = age::Decryptor::new(&bytes[..]).map_err(|e| e.to_string())?;
        let id = age::scrypt::Identity::new(age::secrecy::SecretString::from(pass.to_string()));
        let mut r = dec
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    };

    // PROJECTCLONE_ENCRYPT_PASSWORD with --encrypt.
    run(env
        .cmd()
        .current_dir(&src)
        .env("PROJECTCLONE_ENCRYPT_PASSWORD", "from the environment")
        .args(["envpass", "-a", "--encrypt", "--dest", d]))
    .success();
    let name = views(&dest).into_iter().find(|n| n.contains("-envpass")).unwrap();
    assert!(name.ends_with("-proj-envpass.tar.gz.age"), "{name}");
    let head = fs::read(dest.join(&name)).unwrap();
    assert!(
        head.starts_with(b"age-encryption.org/v1\n-> scrypt "),
        "a passphrase age file"
    );
    assert!(decrypt(&dest.join(&name), "not it").is_err());
    let plain = env.path("envpass.tar.gz");
    fs::write(&plain, decrypt(&dest.join(&name), "from the environment").unwrap()).unwrap();
    let top = name.strip_suffix(".tar.gz.age").unwrap();
    let x = extract(&env, &plain, "x-env");
    assert_trees_equal(&src, &x.join(top), false);

    // --encrypt-password-file (implies --encrypt; its trailing newline is not part of it).
    let pw = env.path("archive.pw");
    fs::write(&pw, "from a file\n").unwrap();
    old(
        &env,
        &src,
        &[
            "filepass",
            "-a",
            "--encrypt-password-file",
            pw.to_str().unwrap(),
            "--dest",
            d,
        ],
    )
    .success();
    let name = views(&dest).into_iter().find(|n| n.contains("-filepass")).unwrap();
    assert!(name.ends_with(".tar.gz.age"), "{name}");
    assert!(decrypt(&dest.join(&name), "from a file").is_ok());

    // A dry run names the .age view and asks for no passphrase.
    let before = fingerprint(&dest);
    let out = old(&env, &src, &["trial", "-a", "--encrypt", "--dest", d, "--dry-run"]).success();
    assert!(out.stderr.contains("-proj-trial.tar.gz.age"), "{}", out.stderr);
    assert_eq!(fingerprint(&dest), before);
    assert_eq!(env.snapshots().len(), 2);
}

#[test]
fn encryption_without_an_archive_or_a_passphrase_is_refused_before_the_backup() {
    let env = Env::with_repo();
    let src = project(&env);
    let dest = env.path("views");
    let d = dest.to_str().unwrap();
    // Without --archive (or with --incremental): a usage error naming --archive.
    for args in [
        &["x", "--encrypt", "--dest", d][..],
        &["x", "--recipient", "age1qqqq", "--dest", d][..],
        &["x", "--encrypt", "--manifest"][..],
    ] {
        let out = old(&env, &src, args).code(2);
        assert!(out.stderr.contains("--archive"), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("projectclone NOTE"), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("old-syntax"), "{}", out.stderr);
    }
    let out = old(&env, &src, &["x", "-a", "--incremental", "--encrypt", "--dest", d]).code(2);
    assert!(
        out.stderr.contains("incremental folder is not encrypted"),
        "{}",
        out.stderr
    );
    // A passphrase file and recipients together.
    old(
        &env,
        &src,
        &["x", "-a", "--encrypt-password-file", "pw", "--recipient", "age1qqqq"],
    )
    .code(2);
    // No passphrase and no terminal, a bad key: exit 1, and no snapshot was made.
    let out = old(&env, &src, &["x", "-a", "--encrypt", "--dest", d]).code(1);
    assert!(out.stderr.contains("PROJECTCLONE_ENCRYPT_PASSWORD"), "{}", out.stderr);
    let out = old(&env, &src, &["x", "-a", "--recipient", "age1nope", "--dest", d]).code(1);
    assert!(out.stderr.contains("age1nope"), "{}", out.stderr);
    assert_eq!(env.snapshots().len(), 0);
    assert!(views(&dest).is_empty());
    assert!(!env.path("home/project_backups").exists());
}

/// `line` run by `sh -c` under a pseudo-terminal (`script`), in `dir`, with `input` typed.
fn on_terminal(env: &Env, dir: &Path, line: &str, input: &str) -> Out {
    let mut c = assert_cmd::Command::new("script");
    for v in [
        "PROJECTCLONE_REPO",
        "PROJECTCLONE_PASSWORD_FILE",
        "PROJECTCLONE_CACHE_DIR",
        "PROJECTCLONE_PASSWORD_COMMAND",
        "PROJECTCLONE_PROFILE",
        "PROJECTCLONE_LOG",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    c.env("HOME", env.path("home"))
        .env("XDG_DATA_HOME", env.path("xdg-data"))
        .env("XDG_CACHE_HOME", env.path("xdg-cache"))
        .env("XDG_CONFIG_HOME", env.path("xdg-config"))
        .env("XDG_STATE_HOME", env.path("xdg-state"))
        .env("TZ", "UTC")
        .env("SHELL", "/bin/sh")
        .env("PROJECTCLONE_PASSWORD", PASSWORD)
        .current_dir(dir)
        .args(["-qec", line, "/dev/null"])
        .write_stdin(input.to_string())
        .timeout(std::time::Duration::from_secs(240));
    run(&mut c)
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn on_a_terminal_a_bare_note_asks_before_the_backup() {
    let env = Env::with_repo();
    let src = project(&env);
    let dest = env.path("home/project_backups");
    let base = format!(
        "{} -r {} --cache-dir {}",
        quote(bin_path().to_str().unwrap()),
        quote(env.repo().to_str().unwrap()),
        quote(env.cache().to_str().unwrap())
    );

    // Without a terminal, a bare word is a usage error, as before.
    let out = old(&env, &src, &["asked"]).code(2);
    assert!(out.stderr.contains("unrecognized subcommand 'asked'"), "{}", out.stderr);

    // "n": nothing is backed up or written; exit 1.
    let out = on_terminal(&env, &src, &format!("{base} asked"), "n\n").code(1);
    assert!(out.stdout.contains("Proceed with backup? [y/N]"), "{}", out.stdout);
    assert!(out.stdout.contains("Aborted by user."), "{}", out.stdout);
    assert_eq!(env.snapshots().len(), 0);
    assert!(views(&dest).is_empty());
    // Just Enter: the default is no.
    on_terminal(&env, &src, &format!("{base} asked"), "\n").code(1);
    assert_eq!(env.snapshots().len(), 0);

    // "y": the backup, then the folder copy in ~/project_backups; exit 0.
    let out = on_terminal(&env, &src, &format!("{base} asked"), "y\n").success();
    assert!(out.stdout.contains("Proceed with backup? [y/N]"), "{}", out.stdout);
    assert!(
        out.stdout.contains("a folder copy") && out.stdout.contains(dest.to_str().unwrap()),
        "{}",
        out.stdout
    );
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["note"], "asked");
    let v = views(&dest);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].ends_with("-proj-asked"), "{v:?}");
    assert_trees_equal(&src, &dest.join(&v[0]), false);

    // "yes" and an archive; --yes does not ask at all.
    on_terminal(&env, &src, &format!("{base} again -a"), "yes\n").success();
    assert!(views(&dest).iter().any(|n| n.ends_with("-proj-again.tar.gz")));
    let out = on_terminal(&env, &src, &format!("{base} third --yes"), "").success();
    assert!(!out.stdout.contains("Proceed with backup?"), "{}", out.stdout);
    assert_eq!(env.snapshots().len(), 3);
    // A typo of a command stays a usage error on a terminal too.
    let out = on_terminal(&env, &src, &format!("{base} bakup"), "y\n").code(2);
    assert!(
        out.stdout.contains("similar subcommand exists: 'backup'"),
        "{}",
        out.stdout
    );
    assert_eq!(env.snapshots().len(), 3);
}
