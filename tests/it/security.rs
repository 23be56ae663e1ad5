//! Guarantees 5 and 7 for passwords: a wrong or missing password is a clear error that
//! writes nothing; the repository reveals no names, contents, hosts or tags; password
//! files lose exactly one trailing newline; `--insecure-no-password` needs none.

use std::fs;

use crate::util::*;

#[track_caller]
fn assert_mentions_password(out: &Out) {
    assert!(
        out.stderr.to_lowercase().contains("password"),
        "error should mention the password: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn wrong_password_fails_clearly_and_changes_nothing() {
    let env = Env::new();
    // Default KDF parameters here, the fast ones elsewhere.
    env.run(["init"]).success();
    let src = env.path("src");
    write(src.join("a.txt"), b"a\n");
    env.backup([&src]);
    let before = fingerprint(&env.repo());

    let target = env.path("target");
    let commands: Vec<Vec<std::ffi::OsString>> = vec![
        vec!["snapshots".into()],
        vec!["backup".into(), src.clone().into()],
        vec![
            "restore".into(),
            "latest".into(),
            "--target".into(),
            target.clone().into(),
        ],
        vec!["ls".into(), "latest".into()],
        vec!["check".into(), "--read-data".into()],
        vec!["stats".into()],
    ];
    for args in &commands {
        let out = run(env.cmd().env("PROJECTCLONE_PASSWORD", "not the password").args(args)).code(12);
        assert_mentions_password(&out);
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout, got {}", out.stdout);
    }
    let pwfile = env.path("wrong-pw");
    fs::write(&pwfile, "also wrong\n").unwrap();
    let out = run(env.cmd().arg("--password-file").arg(&pwfile).arg("backup").arg(&src)).code(12);
    assert_mentions_password(&out);

    assert_eq!(
        fingerprint(&env.repo()),
        before,
        "a wrong password must not change a byte"
    );
    assert!(!target.exists(), "restore with a wrong password created its target");
}

#[test]
fn repository_reveals_no_names_contents_hosts_or_tags() {
    let env = Env::new();
    env.run(["init"]).success();
    let src = env.path("MKSRCPATHqz");
    let markers: &[&str] = &[
        "MKSRCPATHqz",
        "MKDIRNAMEqz",
        "MKFILENAMEqz",
        "MKCONTENTqz",
        "MKRAWCONTENTqz",
        "MKLINKTARGETqz",
        "MKXATTRNAMEqz",
        "MKXATTRVALqz",
        "SECRETHOSTqz",
        "MKTAGqz",
        "MKNOTEqz",
        "MKUSERqz",
    ];
    write(src.join("MKDIRNAMEqz/MKFILENAMEqz.txt"), "MKCONTENTqz ".repeat(2000));
    // Incompressible content (stored without compression) with the marker inside.
    let mut raw = random_bytes(41, 3000);
    raw.extend_from_slice(b"MKRAWCONTENTqz");
    raw.extend_from_slice(&random_bytes(42, 3000));
    write(src.join("raw.bin"), &raw);
    write(src.join("tiny.txt"), b"MKCONTENTqz");
    std::os::unix::fs::symlink("MKLINKTARGETqz", src.join("link")).unwrap();
    xattr::set(src.join("tiny.txt"), "user.MKXATTRNAMEqz", b"MKXATTRVALqz").unwrap();

    run(env
        .cmd()
        .env("USER", "MKUSERqz")
        .args([
            "backup",
            "--host",
            "SECRETHOSTqz",
            "--tag",
            "MKTAGqz",
            "--note",
            "MKNOTEqz",
        ])
        .arg(&src))
    .success();
    let snaps = env.snapshots();
    assert_eq!(snaps[0]["hostname"], "SECRETHOSTqz", "--host is recorded");
    assert_eq!(snaps[0]["tags"][0], "MKTAGqz");

    // Unkeyed hashes of known contents must not appear either (no content confirmation).
    let contents: Vec<Vec<u8>> = vec![
        "MKCONTENTqz ".repeat(2000).into_bytes(),
        raw.clone(),
        b"MKCONTENTqz".to_vec(),
    ];
    let hashes: Vec<blake3::Hash> = contents.iter().map(|c| blake3::hash(c)).collect();

    let files = files_under(&env.repo());
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        let name = f.strip_prefix(env.repo()).unwrap().to_string_lossy().into_owned();
        let bytes = fs::read(f).unwrap();
        for m in markers {
            assert!(!name.contains(m), "repository file name {name} contains {m}");
            assert!(
                !contains(&bytes, m.as_bytes()),
                "repository file {name} contains {m} in clear"
            );
            let lower = m.to_lowercase();
            assert!(!contains(&bytes, lower.as_bytes()), "{name} contains {lower}");
        }
        for h in &hashes {
            assert!(
                !name.contains(&h.to_hex().to_string()),
                "{name} is an unkeyed content hash"
            );
            assert!(!contains(&bytes, h.as_bytes()), "{name} holds an unkeyed content hash");
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn missing_password_without_terminal_names_the_options() {
    let env = Env::with_repo();
    let check = |out: Out| {
        let out = out.code(1);
        for opt in ["--password-file", "PROJECTCLONE_PASSWORD_FILE", "PROJECTCLONE_PASSWORD"] {
            assert!(out.stderr.contains(opt), "error should name {opt}: {}", out.stderr);
        }
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    };
    let no_pw = || {
        let mut c = env.cmd();
        c.env_remove("PROJECTCLONE_PASSWORD");
        c
    };
    check(run(no_pw().arg("snapshots")));
    let src = env.path("src");
    write(src.join("f"), b"f");
    let before = fingerprint(&env.repo());
    check(run(no_pw().arg("backup").arg(&src)));
    assert_eq!(fingerprint(&env.repo()), before);

    // init of a new repository without a password creates nothing.
    let fresh = env.path("fresh");
    check(run(env
        .bare()
        .arg("-r")
        .arg(&fresh)
        .arg("--cache-dir")
        .arg(env.cache())
        .arg("init")));
    assert!(!fresh.exists(), "init without a password created {}", fresh.display());

    // The first backup into the default repository needs one too, and creates nothing without.
    check(run(env
        .bare()
        .arg("--cache-dir")
        .arg(env.cache())
        .arg("backup")
        .arg(&src)));
    assert!(!env.path("xdg-data/projectclone").exists());
}

fn opens(env: &Env, pw_args: &[&std::ffi::OsStr], envs: &[(&str, &std::ffi::OsStr)]) -> Out {
    let mut c = env.bare();
    c.arg("-r").arg(env.repo()).arg("--cache-dir").arg(env.cache());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.args(pw_args).arg("snapshots");
    run(&mut c)
}

#[test]
fn password_file_loses_exactly_one_trailing_newline() {
    let env = Env::new();
    let pw = "s3 cret\twith\nnewline";
    let file = |name: &str, content: &[u8]| {
        let p = env.path(name);
        fs::write(&p, content).unwrap();
        p
    };
    let init_file = file("init-pw", format!("{pw}\n").as_bytes());
    run(env
        .bare()
        .arg("-r")
        .arg(env.repo())
        .arg("--cache-dir")
        .arg(env.cache())
        .args([
            "init".as_ref(),
            "--kdf-memory".as_ref(),
            "1024".as_ref(),
            "--kdf-time".as_ref(),
            "1".as_ref(),
            "--weak-kdf".as_ref(),
            "--password-file".as_ref(),
            init_file.as_os_str(),
        ]))
    .success();

    let os = |s: &str| std::ffi::OsString::from(s);
    let good = [format!("{pw}\n"), format!("{pw}\r\n"), pw.to_string()];
    let bad = [
        format!("{pw}\n\n"),
        format!("{pw}\r\n\r\n"),
        format!("{pw}\r"),
        format!("{pw} \n"),
        format!(" {pw}\n"),
        format!("{pw}\n "),
    ];
    for (i, content) in good.iter().enumerate() {
        let f = file(&format!("good{i}"), content.as_bytes());
        opens(&env, &["--password-file".as_ref(), f.as_os_str()], &[]).success();
        opens(&env, &[], &[("PROJECTCLONE_PASSWORD_FILE", f.as_os_str())]).success();
    }
    for (i, content) in bad.iter().enumerate() {
        let f = file(&format!("bad{i}"), content.as_bytes());
        let out = opens(&env, &["--password-file".as_ref(), f.as_os_str()], &[]).code(12);
        assert_mentions_password(&out);
    }
    // The environment variable is taken as is.
    opens(&env, &[], &[("PROJECTCLONE_PASSWORD", os(pw).as_os_str())]).success();
    opens(
        &env,
        &[],
        &[("PROJECTCLONE_PASSWORD", os(&format!("{pw}\n")).as_os_str())],
    )
    .code(12);

    // Order: --password-file, PROJECTCLONE_PASSWORD_FILE, PROJECTCLONE_PASSWORD.
    let good = file("good", format!("{pw}\n").as_bytes());
    let wrong = file("wrong", b"wrong\n");
    let wrong_env = os("wrong");
    opens(
        &env,
        &["--password-file".as_ref(), good.as_os_str()],
        &[
            ("PROJECTCLONE_PASSWORD_FILE", wrong.as_os_str()),
            ("PROJECTCLONE_PASSWORD", wrong_env.as_os_str()),
        ],
    )
    .success();
    opens(
        &env,
        &[],
        &[
            ("PROJECTCLONE_PASSWORD_FILE", good.as_os_str()),
            ("PROJECTCLONE_PASSWORD", wrong_env.as_os_str()),
        ],
    )
    .success();
    opens(
        &env,
        &["--password-file".as_ref(), wrong.as_os_str()],
        &[("PROJECTCLONE_PASSWORD_FILE", good.as_os_str())],
    )
    .code(12);
    // A password file that cannot be read is an error naming it.
    let missing = env.path("no-such-password-file");
    let out = opens(&env, &["--password-file".as_ref(), missing.as_os_str()], &[]).code(1);
    assert!(out.stderr.contains("no-such-password-file"), "{}", out.stderr);
}

#[test]
fn insecure_no_password_repository_needs_no_password() {
    let env = Env::new();
    let no_pw = || {
        let mut c = env.bare();
        c.arg("-r").arg(env.repo()).arg("--cache-dir").arg(env.cache());
        c
    };
    run(no_pw().args(["init", "--insecure-no-password"])).success();
    let src = env.path("src");
    write(src.join("x/y.txt"), b"no password needed\n");
    age_tree(&src);
    let id = run(no_pw().arg("backup").arg(&src)).success().snapshot_id();
    let snaps = run(no_pw().args(["--json", "snapshots"])).success().json();
    assert_eq!(snaps[0]["id"], id.as_str());
    let target = env.path("out");
    run(no_pw().args(["restore", &id, "--target"]).arg(&target)).success();
    assert_trees_equal(&src, &target, true);
    run(no_pw().args(["check", "--read-data"])).success();
    run(no_pw().args(["ls", "latest"])).success();
}
