//! Configuration files: the project's `.projectclone.toml`, the user file and its profiles,
//! precedence key by key, expansion, errors, trust of project files, `config`.

use std::fs;
use std::path::Path;

use crate::util::*;

/// `config --json` run in `dir`, as `settings` keyed by name: (value, source).
fn effective(
    cmd: &mut assert_cmd::Command,
    dir: &Path,
) -> std::collections::BTreeMap<String, (serde_json::Value, String)> {
    let v = run(cmd.current_dir(dir).args(["--json", "config"])).success().json();
    v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap().to_string(),
                (s["value"].clone(), s["source"].as_str().unwrap().to_string()),
            )
        })
        .collect()
}

fn init_at(env: &Env, repo: &Path) {
    run(env
        .cmd_at(repo)
        .args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"]))
    .success();
}

/// One snapshot's JSON from `snapshots --json` of `repo`.
fn only_snapshot(env: &Env, repo: &Path) -> serde_json::Value {
    let v = run(env.cmd_at(repo).args(["--json", "snapshots"])).success().json();
    let a = v.as_array().unwrap();
    a[a.len() - 1].clone()
}

#[test]
fn precedence_flag_env_project_profile_user_default_key_by_key() {
    let env = Env::new();
    let proj = env.path("proj");
    write(proj.join("a.txt"), b"a");
    let other = env.path("other");
    write(other.join("b.txt"), b"b");
    let repos: Vec<_> = ["flag", "env", "project", "profile", "user"]
        .iter()
        .map(|n| env.path(format!("repo-{n}")))
        .collect();
    for r in &repos {
        init_at(&env, r);
    }
    let q = |p: &Path| format!("{:?}", p.to_str().unwrap());
    user_file(
        &env,
        &format!(
            "repo = {}\ncompression = \"lz4\"\ntags = [\"user\"]\nhost = \"user-host\"\n\n[profile.work]\nrepo = {}\ncompression = \"zstd:9\"\ntags = [\"profile\"]\n",
            q(&repos[4]),
            q(&repos[3])
        ),
    );
    write(
        proj.join(".projectclone.toml"),
        format!("repo = {}\ntags = [\"project\"]\n", q(&repos[2])),
    );
    // The project file sets `repo`: only honoured once the directory is trusted.
    run(env.bare().current_dir(&proj).args(["config", "trust"])).success();

    let base = || {
        let mut c = env.bare();
        c.env("PROJECTCLONE_PASSWORD", PASSWORD)
            .arg("--cache-dir")
            .arg(env.cache());
        c
    };
    // repo: each layer in turn wins over the ones below it.
    type Setup<'a> = Box<dyn Fn(&mut assert_cmd::Command) + 'a>;
    let cases: [(&str, Setup, &Path, &str); 5] = [
        (
            "flag",
            Box::new(|c: &mut assert_cmd::Command| {
                c.env("PROJECTCLONE_REPO", &repos[1])
                    .arg("-P")
                    .arg("work")
                    .arg("-r")
                    .arg(&repos[0]);
            }),
            &proj,
            "command line",
        ),
        (
            "env",
            Box::new(|c: &mut assert_cmd::Command| {
                c.env("PROJECTCLONE_REPO", &repos[1]).arg("-P").arg("work");
            }),
            &proj,
            "environment PROJECTCLONE_REPO",
        ),
        (
            "project",
            Box::new(|c: &mut assert_cmd::Command| {
                c.env("PROJECTCLONE_PROFILE", "work");
            }),
            &proj,
            "project file",
        ),
        (
            "profile",
            Box::new(|c: &mut assert_cmd::Command| {
                c.arg("--profile").arg("work");
            }),
            env.root(),
            "profile work",
        ),
        (
            "user",
            Box::new(|_: &mut assert_cmd::Command| {}),
            env.root(),
            "user file",
        ),
    ];
    for (i, (name, setup, dir, source)) in cases.iter().enumerate() {
        let mut c = base();
        setup(&mut c);
        let eff = effective(&mut c, dir);
        assert_eq!(eff["repo"].0, serde_json::json!(repos[i].to_str().unwrap()), "{name}");
        assert!(eff["repo"].1.starts_with(source), "{name}: {:?}", eff["repo"]);
        // And a backup goes there: of the project (its file applies), or of a directory
        // outside it (then the profile's or the user file's tags).
        let in_project = *dir == proj.as_path();
        let target = if in_project { proj.clone() } else { other.clone() };
        let mut c = base();
        setup(&mut c);
        run(c.current_dir(dir).arg("backup").arg(&target)).success();
        let snap = only_snapshot(&env, &repos[i]);
        let want = if in_project { "project" } else { *name };
        assert_eq!(snap["tags"], serde_json::json!([want]), "{name}");
        assert_eq!(snap["hostname"], "user-host", "{name}");
    }
    // A --tag flag beats every file.
    let mut c = base();
    c.arg("-r").arg(&repos[0]).args(["backup", "--tag", "cli"]).arg(&proj);
    run(&mut c).success();
    assert_eq!(only_snapshot(&env, &repos[0])["tags"], serde_json::json!(["cli"]));

    // compression: profile > user > default, as `config` reports it.
    let eff = effective(base().args(["-P", "work"]), env.root());
    assert_eq!(eff["compression"].0, "zstd:9");
    assert!(
        eff["compression"].1.starts_with("profile work in "),
        "{:?}",
        eff["compression"]
    );
    let eff = effective(&mut base(), env.root());
    assert_eq!(eff["compression"].0, "lz4");
    assert!(
        eff["compression"].1.contains("config.toml:2"),
        "{:?}",
        eff["compression"]
    );
    fs::remove_file(env.path("xdg-config/projectclone/config.toml")).unwrap();
    let eff = effective(&mut base(), env.root());
    assert_eq!(eff["compression"], (serde_json::json!("zstd:4"), "default".to_string()));
}

#[test]
fn compression_and_excludes_from_a_project_file_are_used_by_backup() {
    let env = Env::with_repo();
    let proj = env.path("proj");
    // Very compressible data: stored without compression the repository is much larger.
    write(proj.join("big.txt"), vec![b'x'; 4 << 20]);
    write(proj.join("debug.log"), b"noise");
    write(proj.join("keep.txt"), b"keep");
    write(
        proj.join(".projectclone.toml"),
        "compression = \"none\"\nexclude = [\"*.log\"]\n",
    );
    let id = env.backup([&proj]);
    let ls = env.run(["--json", "ls", &id]).success().json();
    let names: Vec<String> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("keep.txt")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with("debug.log")), "{names:?}");
    let size = |dir: &Path| -> u64 { files_under(dir).iter().map(|f| fs::metadata(f).unwrap().len()).sum() };
    assert!(size(&env.repo()) > 4 << 20, "compression = none stores 4 MiB as is");
    // A flag beats the project file: --exclude replaces its list, --compression its codec.
    let env2 = Env::with_repo();
    let id = run(env2
        .cmd()
        .args(["backup", "--compression", "zstd", "--exclude", "keep.txt"])
        .arg(&proj))
    .success()
    .snapshot_id();
    let ls = env2.run(["--json", "ls", &id]).success().json();
    let names: Vec<String> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("debug.log")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with("keep.txt")), "{names:?}");
    assert!(size(&env2.repo()) < 1 << 20, "--compression zstd beats the file's none");
}

#[test]
fn errors_name_the_file_the_line_and_the_key() {
    let env = Env::with_repo();
    let proj = env.path("proj");
    write(proj.join("a"), b"a");
    for (text, line, key) in [
        ("tags = [\"a\"]\ncompresion = \"lz4\"\n", 2, "compresion"),
        ("\ncompression = \"zstd:99\"\n", 2, "compression"),
        ("[retention]\nkeep-last = \"ten\"\n", 2, "keep-last"),
    ] {
        write(proj.join(".projectclone.toml"), text);
        let out = run(env.cmd().arg("backup").arg(&proj)).failure();
        let want = format!("{}:{line}", proj.join(".projectclone.toml").display());
        assert!(out.stderr.contains(&want), "{text:?}: {}", out.stderr);
        assert!(out.stderr.contains(key), "{text:?}: {}", out.stderr);
    }
    assert!(env.snapshots().is_empty(), "nothing was backed up");
    fs::remove_file(proj.join(".projectclone.toml")).unwrap();
    user_file(&env, "repo = \"/x\"\nrepo_path = \"/y\"\n");
    let out = run(env.cmd().arg("snapshots")).failure();
    assert!(
        out.stderr.contains("config.toml:2") && out.stderr.contains("repo_path"),
        "{}",
        out.stderr
    );
    user_file(&env, "[profile.work]\nrepo = \"/w\"\n");
    let out = run(env.cmd().args(["-P", "home", "snapshots"])).failure();
    assert!(
        out.stderr.contains("\"home\" is not defined") && out.stderr.contains("work"),
        "{}",
        out.stderr
    );
}

#[test]
fn tilde_and_variables_are_expanded_in_paths() {
    let env = Env::new();
    let src = env.path("src");
    write(src.join("a"), b"a");
    write(env.path("home/pw"), format!("{PASSWORD}\n"));
    user_file(
        &env,
        "repo = \"~/backups/$PCL_TEST_NAME\"\npassword-file = \"${HOME}/pw\"\ncache-dir = \"~/cache\"\n",
    );
    let c = || {
        let mut c = env.bare();
        c.env("PCL_TEST_NAME", "app");
        c
    };
    run(c().args(["init", "--kdf-memory", "1024", "--kdf-time", "1", "--weak-kdf"])).success();
    assert!(env.path("home/backups/app/config").is_file());
    assert!(!env.root().join("~").exists(), "no literal ~ folder");
    run(c().arg("backup").arg(&src)).success();
    assert!(env.path("home/cache").is_dir());
    // An unset variable is an error naming it.
    let out = run(env.bare().arg("snapshots")).failure();
    assert!(
        out.stderr.contains("PCL_TEST_NAME") && out.stderr.contains("config.toml:1"),
        "{}",
        out.stderr
    );
}

#[test]
fn password_sources_in_order_and_password_command() {
    let env = Env::new();
    let src = env.path("src");
    write(src.join("a"), b"a");
    init_at(&env, &env.repo());
    write(env.path("right"), format!("{PASSWORD}\n"));
    write(env.path("wrong"), "wrong\n");
    let c = || {
        let mut c = env.bare();
        c.arg("-r").arg(env.repo()).arg("--cache-dir").arg(env.cache());
        c
    };
    // The user file's password-command.
    user_file(
        &env,
        &format!("password-command = \"cat {}\"\n", env.path("right").display()),
    );
    run(c().arg("snapshots")).success();
    // PROJECTCLONE_PASSWORD beats the file's command, --password-file beats the variable.
    run(c().env("PROJECTCLONE_PASSWORD", "wrong").arg("snapshots")).code(12);
    run(c()
        .env("PROJECTCLONE_PASSWORD", "wrong")
        .arg("--password-file")
        .arg(env.path("right"))
        .arg("snapshots"))
    .success();
    // PROJECTCLONE_PASSWORD_COMMAND beats the file's command.
    run(c()
        .env(
            "PROJECTCLONE_PASSWORD_COMMAND",
            format!("cat {}", env.path("wrong").display()),
        )
        .arg("snapshots"))
    .code(12);
    // A failing command is an error that names it; nothing is written.
    user_file(&env, "password-command = \"exit 7\"\n");
    let out = run(c().arg("backup").arg(&src)).failure();
    assert!(
        out.stderr.contains("password command \"exit 7\"") && out.stderr.contains("config.toml:1"),
        "{}",
        out.stderr
    );
    user_file(
        &env,
        &format!("password-command = \"cat {}\"\n", env.path("right").display()),
    );
    assert_eq!(
        run(c().args(["--json", "snapshots"]))
            .success()
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn retention_from_the_config_is_used_when_no_keep_flag_is_given() {
    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..4 {
        write(src.join("f"), format!("{i}"));
        env.backup([&src]);
    }
    write(src.join(".projectclone.toml"), "[retention]\nkeep-last = 2\n");
    // A flag wins over the file.
    let out = run(env.cmd().current_dir(&src).args(["forget", "--keep-last", "3"])).success();
    assert!(!out.stderr.contains("[retention]"), "{}", out.stderr);
    assert_eq!(env.snapshots().len(), 3);
    let out = run(env.cmd().current_dir(&src).arg("prune")).success();
    assert!(out.stderr.contains("[retention] of the project file"), "{}", out.stderr);
    assert_eq!(env.snapshots().len(), 2);
    // Without a file and without rules, forget refuses.
    let out = run(env.cmd().arg("forget")).failure();
    assert!(out.stderr.contains("--keep-*"), "{}", out.stderr);
    run(env.cmd().args(["check", "--read-data"])).success();
}

#[test]
fn an_untrusted_project_file_may_not_run_commands_or_choose_the_repository() {
    let env = Env::with_repo();
    let proj = env.path("clone");
    write(proj.join("a"), b"a");
    let evil = env.path("evil-repo");
    for text in [
        format!("repo = {:?}\n", evil.to_str().unwrap()),
        "password-command = \"echo hi\"\n".to_string(),
        "[hooks]\npre-backup = \"touch pwned\"\n".to_string(),
        "[[notify]]\nurl = \"http://127.0.0.1:9/x\"\n".to_string(),
    ] {
        write(proj.join(".projectclone.toml"), &text);
        let out = run(env.cmd().arg("backup").arg(&proj)).failure();
        assert!(
            out.stderr.contains("only honoured in a directory you trust") && out.stderr.contains("config trust"),
            "{text}: {}",
            out.stderr
        );
        assert!(!proj.join("pwned").exists() && !evil.exists());
    }
    assert!(env.snapshots().is_empty());
    // `config` itself works there and says what it leaves out.
    let v = run(env.cmd().current_dir(&proj).args(["--json", "config"]))
        .success()
        .json();
    assert_eq!(v["project_trusted"], false);
    assert_eq!(v["untrusted_keys"][0]["key"], "notify");
    // Trusted, the file is honoured; untrusted again, refused again.
    write(
        proj.join(".projectclone.toml"),
        format!("repo = {:?}\n", evil.to_str().unwrap()),
    );
    init_at(&env, &evil);
    let out = run(env.bare().current_dir(&proj).args(["config", "trust"])).success();
    assert!(out.stdout.contains("trusted"), "{}", out.stdout);
    run(env
        .bare()
        .env("PROJECTCLONE_PASSWORD", PASSWORD)
        .current_dir(&proj)
        .arg("backup"))
    .success();
    assert_eq!(only_snapshot(&env, &evil)["paths"][0], proj.to_str().unwrap());
    run(env.bare().args(["config", "untrust"]).arg(&proj)).success();
    run(env
        .bare()
        .env("PROJECTCLONE_PASSWORD", PASSWORD)
        .current_dir(&proj)
        .arg("backup"))
    .failure();
    // The trust is kept outside the tree and the cache.
    assert!(env.path("xdg-state/projectclone/trusted-projects.json").is_file());
}

#[test]
fn config_shows_every_setting_and_its_source() {
    let env = Env::new();
    user_file(&env, "compression = \"lz4\"\n[retention]\nkeep-daily = 7\n");
    let out = run(env.bare().arg("config")).success();
    for want in [
        "user file:",
        "repo",
        "retention",
        "keep-daily",
        "[default]",
        "config.toml:1]",
    ] {
        assert!(out.stdout.contains(want), "{want}: {}", out.stdout);
    }
    let line = out.stdout.lines().find(|l| l.starts_with("compression ")).unwrap();
    assert!(line.contains(" lz4 ") && line.ends_with("config.toml:1]"), "{line}");
    let eff = effective(env.bare().arg("--limit-upload").arg("100"), env.root());
    assert_eq!(
        eff["limit-upload"],
        (serde_json::json!(100), "command line".to_string())
    );
    assert_eq!(eff["password"].1, "default");
    let eff = effective(env.bare().env("PROJECTCLONE_PASSWORD", "x"), env.root());
    assert_eq!(eff["password"].1, "environment PROJECTCLONE_PASSWORD");
    assert_eq!(eff["password"].0, "the variable's value", "never the password itself");
}
