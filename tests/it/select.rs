//! Project-aware selection (README "Many projects in one repository"): one repository holding many projects. The
//! `--project`, `--path`, `--host` and `--tag` filters of `snapshots`, `latest` inside and
//! outside a backed-up directory and with filters, retention groups (`--group-by`, default
//! host and paths), and the config's `project` and `group-by` keys.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::util::{Env, run, write};

/// Ids (full) of `snapshots --json ARGS`, as a set, run from the environment's root.
fn selected(env: &Env, args: &[&str]) -> BTreeSet<String> {
    selected_in(env, env.root(), args)
}

fn selected_in(env: &Env, cwd: &Path, args: &[&str]) -> BTreeSet<String> {
    let v = run(env.cmd().current_dir(cwd).args(["--json", "snapshots"]).args(args))
        .success()
        .json();
    v.as_array()
        .expect("an array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Two projects named `app` (in `a/` and `b/`) and one `lib`, on two hosts, with tags.
struct Repo {
    env: Env,
    a1: String,
    a2: String,
    b: String,
    lib: String,
}

fn four_snapshots() -> Repo {
    let env = Env::with_repo();
    write(env.path("a/app/app-a.txt"), "a");
    write(env.path("a/app/src/main.rs"), "fn main() {}");
    write(env.path("b/app/app-b.txt"), "b");
    write(env.path("lib/lib.txt"), "lib");
    let a = env.path("a/app");
    let a1 = env.backup([
        a.as_os_str(),
        "--host".as_ref(),
        "h1".as_ref(),
        "--tag".as_ref(),
        "x".as_ref(),
    ]);
    let a2 = env.backup([a.as_os_str(), "--host".as_ref(), "h2".as_ref()]);
    let b = env.backup([
        env.path("b/app").as_os_str(),
        "--host".as_ref(),
        "h1".as_ref(),
        "--tag".as_ref(),
        "x".as_ref(),
        "--tag".as_ref(),
        "y".as_ref(),
    ]);
    let lib = env.backup([env.path("lib").as_os_str(), "--host".as_ref(), "h1".as_ref()]);
    Repo { env, a1, a2, b, lib }
}

#[test]
fn snapshots_filters_by_project_path_host_and_tag() {
    let r = four_snapshots();
    let env = &r.env;
    assert_eq!(selected(env, &[]), set(&[&r.a1, &r.a2, &r.b, &r.lib]));
    assert_eq!(selected(env, &["--project", "app"]), set(&[&r.a1, &r.a2, &r.b]));
    assert_eq!(
        selected(env, &["--project", "lib", "--project", "app", "--host", "h2"]),
        set(&[&r.a2])
    );
    // --path is relative to the current directory; several must all be backed up.
    assert_eq!(selected(env, &["--path", "a/app"]), set(&[&r.a1, &r.a2]));
    assert_eq!(
        selected(env, &["--path", env.path("b/app").to_str().unwrap()]),
        set(&[&r.b])
    );
    assert_eq!(selected(env, &["--path", "a/app", "--path", "b/app"]), BTreeSet::new());
    assert_eq!(selected(env, &["--host", "h1"]), set(&[&r.a1, &r.b, &r.lib]));
    assert_eq!(selected(env, &["--tag", "x"]), set(&[&r.a1, &r.b]));
    // `a,b` asks for both tags; repeated --tag for either.
    assert_eq!(selected(env, &["--tag", "x,y"]), set(&[&r.b]));
    assert_eq!(selected(env, &["--tag", "y", "--tag", "nope"]), set(&[&r.b]));
    assert_eq!(selected(env, &["--project", "nope"]), BTreeSet::new());
    // Each snapshot names its project.
    for s in env.snapshots() {
        let id = s["id"].as_str().unwrap();
        let want = if id == r.lib { "lib" } else { "app" };
        assert_eq!(s["project"], want, "{s}");
    }
    // The human table lists only what the filter selects.
    let out = env.run(["snapshots", "--host", "h2"]).success();
    assert!(out.stdout.contains(&r.a2[..8]), "{}", out.stdout);
    assert!(!out.stdout.contains(&r.a1[..8]), "{}", out.stdout);
    assert!(out.stdout.contains("1 snapshot(s)"), "{}", out.stdout);
}

/// The entries `ls latest` lists, and its stderr, run in `cwd` with `args`.
fn ls_latest(env: &Env, cwd: &Path, args: &[&str]) -> (Vec<String>, String) {
    let out = run(env.cmd().current_dir(cwd).args(["ls", "latest"]).args(args)).success();
    (out.stdout.lines().map(String::from).collect(), out.stderr)
}

#[test]
fn latest_inside_a_project_means_its_newest_and_says_so() {
    let r = four_snapshots();
    let env = &r.env;
    let a = fs::canonicalize(env.path("a/app")).unwrap();
    // Inside a/app (below it too): a/app's newest, a2, although lib is newer; stderr says so.
    for cwd in [a.clone(), a.join("src")] {
        let (entries, stderr) = ls_latest(env, &cwd, &[]);
        assert!(entries.iter().any(|e| e.ends_with("app-a.txt")), "{entries:?}");
        assert!(
            stderr.contains(&format!(
                "latest: {}, the newest snapshot of {}",
                &r.a2[..8],
                a.display()
            )),
            "{stderr}"
        );
    }
    // Inside b/app: the other `app`.
    let (entries, stderr) = ls_latest(env, &env.path("b/app"), &[]);
    assert!(entries.iter().any(|e| e.ends_with("app-b.txt")), "{entries:?}");
    assert!(stderr.contains(&format!("latest: {}", &r.b[..8])), "{stderr}");
    // Elsewhere: the newest of all, with no note.
    for cwd in [env.root().to_path_buf(), env.path("a")] {
        let (entries, stderr) = ls_latest(env, &cwd, &[]);
        assert!(entries.iter().any(|e| e.ends_with("lib.txt")), "{entries:?}");
        assert!(!stderr.contains("latest:"), "{stderr}");
    }
    // restore and stats follow the same rule.
    let target = env.path("restored");
    run(env
        .cmd()
        .current_dir(a.join("src"))
        .args(["restore", "latest", "--target"])
        .arg(&target))
    .success();
    assert_eq!(fs::read_to_string(target.join("app-a.txt")).unwrap(), "a");
    assert!(!target.join("lib.txt").exists());
    let out = run(env.cmd().current_dir(&a).args(["--json", "stats", "latest"])).success();
    assert!(out.stdout.contains(&r.a2), "{}", out.stdout);
}

#[test]
fn latest_honours_filters_everywhere() {
    let r = four_snapshots();
    let env = &r.env;
    let a = env.path("a/app");
    // A filter overrides the current directory: inside a/app, --project lib is lib's newest.
    let (entries, stderr) = ls_latest(env, &a, &["--project", "lib"]);
    assert!(entries.iter().any(|e| e.ends_with("lib.txt")), "{entries:?}");
    assert!(
        stderr.contains(&format!(
            "latest: {}, the newest snapshot with --project lib",
            &r.lib[..8]
        )),
        "{stderr}"
    );
    // Outside: the newest of those selected.
    let (entries, _) = ls_latest(env, env.root(), &["--host", "h1", "--tag", "x"]);
    assert!(entries.iter().any(|e| e.ends_with("app-b.txt")), "{entries:?}");
    let out = run(env
        .cmd()
        .args(["--json", "stats", "latest", "--tag", "x", "--path", "a/app"]))
    .success();
    assert!(out.stdout.contains(&r.a1), "{}", out.stdout);
    // diff latest latest with a filter compares the same snapshot: nothing changed.
    let out = env
        .run(["--json", "diff", "latest", "latest", "--host", "h2"])
        .success();
    assert_eq!(out.json(), serde_json::json!([]));
    // export takes them too.
    let clone = env.path("clone");
    let mut c = env.cmd();
    c.args(["export", "latest", "--project", "app", "--host", "h1", "--clone"])
        .arg(&clone);
    run(&mut c).success();
    assert!(clone.join("app-b.txt").is_file());
    // Nothing matches: an error naming the filter, exit 1.
    let out = env.run(["ls", "latest", "--project", "nope"]).code(1);
    assert!(
        out.stderr.contains("no snapshot matches --project nope"),
        "{}",
        out.stderr
    );
    // An id is taken as given.
    let out = env.run(["--json", "stats", &r.a1[..12], "--host", "h2"]).success();
    assert!(out.stdout.contains(&r.a1), "{}", out.stdout);
    // forget latest with a filter removes that one.
    env.run(["forget", "latest", "--host", "h2"]).success();
    assert_eq!(selected(env, &[]), set(&[&r.a1, &r.b, &r.lib]));
}

/// Three backups of a/app on h1, two on h2, two of b/app on h1 (same base name).
fn seven_snapshots() -> (Env, Vec<String>, Vec<String>, Vec<String>) {
    let env = Env::with_repo();
    write(env.path("a/app/f"), "a");
    write(env.path("b/app/f"), "b");
    let mut h1 = Vec::new();
    let mut h2 = Vec::new();
    let mut b = Vec::new();
    for i in 0..3 {
        write(env.path("a/app/f"), format!("a{i}"));
        h1.push(env.backup([env.path("a/app").as_os_str(), "--host".as_ref(), "h1".as_ref()]));
        if i < 2 {
            h2.push(env.backup([env.path("a/app").as_os_str(), "--host".as_ref(), "h2".as_ref()]));
            b.push(env.backup([env.path("b/app").as_os_str(), "--host".as_ref(), "h1".as_ref()]));
        }
    }
    (env, h1, h2, b)
}

#[test]
fn retention_keeps_each_host_and_path_groups_own_n() {
    let (env, h1, h2, b) = seven_snapshots();
    // The plan shows three groups, each keeping its newest.
    let plan = env
        .run(["--json", "forget", "--keep-last", "1", "--dry-run"])
        .success()
        .json();
    assert_eq!(plan["group_by"], "host,paths");
    let groups = plan["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{plan}");
    let a = fs::canonicalize(env.path("a/app")).unwrap();
    assert!(groups.iter().any(|g| g["key"]["host"] == "h2"
        && g["key"]["paths"] == serde_json::json!([a.to_str().unwrap()])
        && g["keep"] == 1
        && g["remove"] == 1));
    for d in plan["snapshots"].as_array().unwrap() {
        assert!(d["group"].as_u64().unwrap() < 3, "{d}");
    }
    let human = env.run(["forget", "--keep-last", "1", "--dry-run"]).success().stdout;
    assert!(
        human.contains(&format!("group host h2, paths {}: keep 1, remove 1", a.display())),
        "{human}"
    );
    // The real run keeps one per group: two machines' copies and two `app`s never thin
    // each other.
    env.run(["forget", "--keep-last", "1"]).success();
    assert_eq!(selected(&env, &[]), set(&[&h1[2], &h2[1], &b[1]]));
}

#[test]
fn group_by_none_thins_across_groups_and_filters_narrow_what_is_thinned() {
    let (env, h1, h2, b) = seven_snapshots();
    // Only h2's snapshots are considered: the others are left alone.
    let plan = env
        .run(["--json", "forget", "--keep-last", "1", "--host", "h2", "--dry-run"])
        .success()
        .json();
    assert_eq!(plan["snapshots"].as_array().unwrap().len(), 2, "{plan}");
    assert_eq!(plan["forgotten"], 1);
    // By host alone: h1's a/app and b/app are one group.
    let plan = env
        .run([
            "--json",
            "forget",
            "--keep-last",
            "1",
            "--group-by",
            "host",
            "--dry-run",
        ])
        .success()
        .json();
    assert_eq!(plan["groups"].as_array().unwrap().len(), 2, "{plan}");
    assert_eq!(plan["forgotten"], 5);
    // By project: every snapshot is of `app`.
    let plan = env
        .run([
            "--json",
            "forget",
            "--keep-last",
            "2",
            "--group-by",
            "project",
            "--dry-run",
        ])
        .success()
        .json();
    assert_eq!(plan["groups"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(plan["groups"][0]["key"]["project"], "app");
    // A bad --group-by is a usage error.
    let out = env.run(["forget", "--keep-last", "1", "--group-by", "colour"]).code(2);
    assert!(out.stderr.contains("host, paths, project and tags"), "{}", out.stderr);
    // none: one group, the newest of all is kept.
    let out = env.run(["prune", "--keep-last", "1", "--group-by", "none"]).success();
    assert!(
        out.stdout.contains("group all snapshots: keep 1, remove 6"),
        "{}",
        out.stdout
    );
    assert_eq!(selected(&env, &[]), set(&[&h1[2]]));
    let _ = (h2, b);
}

#[test]
fn config_project_names_a_project_and_group_by_sets_the_grouping() {
    let (env, h1, h2, b) = seven_snapshots();
    let a = env.path("a/app");
    // An untrusted project file may set both.
    write(a.join(".projectclone.toml"), "project = \"web\"\ngroup-by = \"none\"\n");
    // Inside a/app the config names its project `web`; b/app stays `app`.
    assert_eq!(selected_in(&env, &a, &["--project", "web"]).len(), 5);
    assert_eq!(selected_in(&env, &a, &["--project", "app"]), set(&[&b[0], &b[1]]));
    let v = run(env.cmd().current_dir(&a).args(["--json", "snapshots", "--host", "h2"]))
        .success()
        .json();
    assert_eq!(v[0]["project"], "web", "{v}");
    // Elsewhere no file applies: all seven are `app`.
    assert_eq!(selected(&env, &["--project", "app"]).len(), 7);
    // `config` shows both keys and where they came from.
    let cfg = run(env.cmd().current_dir(&a).args(["--json", "config"]))
        .success()
        .json();
    let row = |k: &str| {
        cfg["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .cloned()
            .unwrap_or_else(|| panic!("no {k} in {cfg}"))
    };
    assert_eq!(row("project")["value"], "web");
    assert_eq!(row("group-by")["value"], "none");
    assert!(
        row("group-by")["source"]
            .as_str()
            .unwrap()
            .contains(".projectclone.toml")
    );
    // From a/app the file's group-by none applies; a flag overrides it.
    let plan = run(env.cmd().current_dir(&a).args([
        "--json",
        "forget",
        "--keep-last",
        "1",
        "--dry-run",
        "--group-by",
        "host,paths",
    ]))
    .success()
    .json();
    assert_eq!(plan["forgotten"], 4, "{plan}");
    run(env.cmd().current_dir(&a).args(["forget", "--keep-last", "1"])).success();
    assert_eq!(selected(&env, &[]), set(&[&h1[2]]));
    let _ = h2;
    // A bad value is an error naming the file, line and key.
    write(
        a.join(".projectclone.toml"),
        "project = \"web\"\ngroup-by = \"hostname\"\n",
    );
    let out = run(env.cmd().current_dir(&a).args(["snapshots"])).code(1);
    assert!(
        out.stderr.contains(".projectclone.toml:2") && out.stderr.contains("group-by"),
        "{}",
        out.stderr
    );
}
