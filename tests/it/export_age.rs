//! Encrypted archives (README "export"): `export --archive F --encrypt` (passphrase) and
//! `--recipient` / `--recipients-file` (age public keys) write the age format, which the
//! reference `age` tool (Debian's, installed by .ci/install-servers) decrypts into an archive
//! that extracts to exactly the snapshot. A passphrase archive is decrypted with the age
//! crate (`age -d` reads a passphrase only from a terminal).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use crate::util::*;

/// A key pair made by `age-keygen`: (identity file, public key).
fn keygen(env: &Env, name: &str) -> (PathBuf, String) {
    let key = env.path(name);
    let out = StdCommand::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("age-keygen runs (apt-get install age; .ci/install-servers installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = fs::read_to_string(&key).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .to_string();
    (key, public)
}

/// `age -d -i IDENTITY -o OUT IN`.
fn age_decrypt(identity: &Path, input: &Path, output: &Path) -> std::process::Output {
    StdCommand::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg("-o")
        .arg(output)
        .arg(input)
        .output()
        .expect("age runs (apt-get install age; .ci/install-servers installs it)")
}

/// Extract a tar archive (any compression GNU tar knows) into a new folder.
fn extract(env: &Env, archive: &Path, into: &str) -> PathBuf {
    let x = env.path(into);
    fs::create_dir_all(&x).unwrap();
    let out = StdCommand::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(archive)
        .current_dir(&x)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    x
}

fn source(env: &Env) -> (PathBuf, String) {
    let src = env.path("proj");
    write(src.join("README.md"), b"# secret project\n");
    write(src.join("src/lib.rs"), text_bytes(7, 300_000));
    write(src.join("data/blob.bin"), random_bytes(9, 1_500_000));
    write(src.join("empty"), b"");
    std::os::unix::fs::symlink("../README.md", src.join("src/link")).unwrap();
    age_tree(&src);
    let id = env.backup([&src]);
    (src, id)
}

#[test]
fn recipients_archive_decrypts_with_the_age_tool_and_extracts_exactly() {
    let env = Env::with_repo();
    let (src, id) = source(&env);
    let (key_a, pub_a) = keygen(&env, "a.key");
    let (key_b, pub_b) = keygen(&env, "b.key");
    let (key_c, _) = keygen(&env, "c.key");
    let rfile = env.path("team.txt");
    fs::write(&rfile, format!("# the team\n\n{pub_b}\n")).unwrap();

    // `.age` is appended; the manifest is of the encrypted file.
    let file = env.path("out/proj.tar.zst");
    let out = run(env
        .cmd()
        .args(["--json", "export", &id, "--archive"])
        .arg(&file)
        .args(["--recipient", &pub_a, "--recipients-file"])
        .arg(&rfile)
        .arg("--manifest"))
    .success();
    let sealed = env.path("out/proj.tar.zst.age");
    assert_eq!(out.json()["path"], sealed.display().to_string());
    let mut names: Vec<String> = fs::read_dir(env.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["proj.tar.zst.age", "proj.tar.zst.age.sha256"]);
    let bytes = fs::read(&sealed).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n-> X25519 "), "an age file");
    // Nothing of the tree in clear.
    for needle in [&b"secret project"[..], b"README.md", b"blob.bin"] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{needle:?} in clear");
    }

    // The manifest: one line, the encrypted file's SHA-256 by its name; `sha256sum -c`
    // checks it from the archive's folder.
    let manifest = fs::read_to_string(env.path("out/proj.tar.zst.age.sha256")).unwrap();
    let sum = StdCommand::new("sha256sum").arg(&sealed).output().unwrap();
    let hash = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(manifest, format!("{hash}  proj.tar.zst.age\n"));
    let check = StdCommand::new("sha256sum")
        .args(["-c", "proj.tar.zst.age.sha256"])
        .current_dir(env.path("out"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));

    // Each recipient's identity decrypts it with the age tool; the tree comes back exactly.
    for (key, name) in [(&key_a, "a"), (&key_b, "b")] {
        let plain = env.path(format!("{name}.tar.zst"));
        let d = age_decrypt(key, &sealed, &plain);
        assert!(d.status.success(), "age -d: {}", String::from_utf8_lossy(&d.stderr));
        let x = extract(&env, &plain, &format!("x-{name}"));
        assert_trees_equal(&src, &x.join("proj"), true);
    }
    // Another key does not.
    let d = age_decrypt(&key_c, &sealed, &env.path("c.tar.zst"));
    assert!(!d.status.success());
    assert!(
        String::from_utf8_lossy(&d.stderr).contains("no identity matched"),
        "{}",
        String::from_utf8_lossy(&d.stderr)
    );

    // To stdout: the same format, decrypted by the age tool.
    let out = run(env.cmd().args([
        "export",
        &id,
        "--archive",
        "-",
        "--format",
        "tar",
        "--recipient",
        &pub_a,
    ]))
    .success();
    let piped = env.path("piped.tar.age");
    fs::write(&piped, &out.raw_stdout).unwrap();
    let plain = env.path("piped.tar");
    let d = age_decrypt(&key_a, &piped, &plain);
    assert!(d.status.success(), "age -d: {}", String::from_utf8_lossy(&d.stderr));
    let x = extract(&env, &plain, "x-piped");
    assert_trees_equal(&src, &x.join("proj"), true);
}

#[test]
fn passphrase_archive_uses_scrypt_and_decrypts_with_the_passphrase() {
    let env = Env::with_repo();
    let (src, id) = source(&env);
    let pw = env.path("archive.pw");
    fs::write(&pw, "archive passphrase 42\n").unwrap();
    let file = env.path("out/proj.tar.gz.age");
    run(env
        .cmd()
        .args(["export", &id, "--archive"])
        .arg(&file)
        .arg("--encrypt-password-file")
        .arg(&pw))
    .success();
    let bytes = fs::read(&file).unwrap();
    assert!(
        bytes.starts_with(b"age-encryption.org/v1\n-> scrypt "),
        "a passphrase age file"
    );
    // Decrypt with the age crate (the file's trailing newline is not part of the passphrase).
    let decrypt = |pass: &str| -> Result<Vec<u8>, String> {
        let d = age::Decryptor::new(&bytes[..]).map_err(|e| e.to_string())?;
        let id = age::scrypt::Identity::new(age::secrecy::SecretString::from(pass.to_string()));
        let mut r = d
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    };
    assert!(decrypt("archive passphrase 43").is_err());
    let plain = env.path("plain.tar.gz");
    fs::write(&plain, decrypt("archive passphrase 42").unwrap()).unwrap();
    let x = extract(&env, &plain, "x");
    assert_trees_equal(&src, &x.join("proj"), true);

    // PROJECTCLONE_ENCRYPT_PASSWORD, with --encrypt; `.age` appended to the name.
    run(env
        .cmd()
        .env("PROJECTCLONE_ENCRYPT_PASSWORD", "from the environment")
        .args(["export", &id, "--encrypt", "--archive"])
        .arg(env.path("env.tar")))
    .success();
    let bytes = fs::read(env.path("env.tar.age")).unwrap();
    let d = age::Decryptor::new(&bytes[..]).unwrap();
    let key = age::scrypt::Identity::new(age::secrecy::SecretString::from("from the environment".to_string()));
    let mut tar_bytes = Vec::new();
    d.decrypt(std::iter::once(&key as &dyn age::Identity))
        .unwrap()
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(&tar_bytes[257..262], b"ustar", "an uncompressed tar inside");
}

#[test]
fn encryption_without_a_passphrase_or_with_bad_keys_is_refused_and_writes_nothing() {
    let env = Env::with_repo();
    let (_src, id) = source(&env);
    let out_dir = env.path("out");
    fs::create_dir_all(&out_dir).unwrap();
    let file = out_dir.join("p.tar.gz");
    // No passphrase and no terminal.
    let out = run(env.cmd().args(["export", &id, "--encrypt", "--archive"]).arg(&file)).code(1);
    assert!(out.stderr.contains("PROJECTCLONE_ENCRYPT_PASSWORD"), "{}", out.stderr);
    assert!(out.stderr.contains("--recipient"), "{}", out.stderr);
    // An empty passphrase.
    let out = run(env
        .cmd()
        .env("PROJECTCLONE_ENCRYPT_PASSWORD", "")
        .args(["export", &id, "--encrypt", "--archive"])
        .arg(&file))
    .code(1);
    assert!(out.stderr.contains("empty"), "{}", out.stderr);
    // A recipient that is not an age public key, a secret key, an empty recipients file.
    let out = run(env
        .cmd()
        .args(["export", &id, "--archive"])
        .arg(&file)
        .args(["--recipient", "age1nope"]))
    .code(1);
    assert!(out.stderr.contains("age1nope"), "{}", out.stderr);
    let (key, _) = keygen(&env, "k.key");
    let secret = fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    let out = run(env
        .cmd()
        .args(["export", &id, "--archive"])
        .arg(&file)
        .args(["--recipient", &secret]))
    .code(1);
    assert!(out.stderr.contains("secret key"), "{}", out.stderr);
    assert!(
        !out.stderr.contains(&secret[20..]),
        "the secret key is not repeated: {}",
        out.stderr
    );
    let empty = env.path("none.txt");
    fs::write(&empty, "# nobody\n").unwrap();
    let out = run(env
        .cmd()
        .args(["export", &id, "--archive"])
        .arg(&file)
        .arg("--recipients-file")
        .arg(&empty))
    .code(1);
    assert!(out.stderr.contains("no recipient"), "{}", out.stderr);
    // Usage errors: a passphrase file with recipients, --encrypt without --archive.
    run(env.cmd().args(["export", &id, "--archive"]).arg(&file).args([
        "--encrypt-password-file",
        "x",
        "--recipient",
        "age1x",
    ]))
    .code(2);
    run(env
        .cmd()
        .args(["export", &id, "--encrypt", "--clone"])
        .arg(env.path("c")))
    .code(2);
    assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 0, "nothing written");

    // A dry run asks for no passphrase and names the .age file.
    let out = run(env
        .cmd()
        .args(["--json", "export", &id, "--encrypt", "--dry-run", "--archive"])
        .arg(&file))
    .success();
    assert_eq!(out.json()["path"], format!("{}.age", file.display()));
    assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 0, "nothing written");
}
