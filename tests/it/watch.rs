//! Activity-driven backups: `watch` (real inotify events on a real tree, a real backup
//! each time) and `schedule suggest` (a real git history with chosen commit dates).

use std::fs;
use std::path::Path;
use std::process::{Child, Command as Std};
use std::time::{Duration, Instant};

use crate::util::*;

fn snapshot_count(env: &Env) -> usize {
    env.run(["--json", "snapshots"])
        .success()
        .json()
        .as_array()
        .unwrap()
        .len()
}

/// Wait (generously: CI machines are slow) until the repository holds `n` snapshots.
#[track_caller]
fn wait_for_snapshots(env: &Env, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while snapshot_count(env) < n {
        assert!(Instant::now() < deadline, "no snapshot {n} within 90 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stop(mut child: Child) -> String {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

#[test]
fn watch_backs_up_after_quiet_and_during_steady_changes() {
    let env = Env::with_repo();
    let src = env.path("app");
    write(src.join("a.txt"), b"a");
    let child = env.spawn([
        "watch",
        src.to_str().unwrap(),
        "--quiet-for",
        "1s",
        "--min-interval",
        "1s",
        "--max-interval",
        "3s",
    ]);
    // The first backup when it starts.
    wait_for_snapshots(&env, 1);
    // A change, then quiet: a backup holding it.
    write(src.join("b.txt"), b"b");
    wait_for_snapshots(&env, 2);
    let ls = env.run(["ls", "latest"]).success().stdout;
    assert!(ls.contains("b.txt"), "{ls}");
    // Changes every 200 ms never leave a quiet second: the 3 s bound still saves them.
    let before = snapshot_count(&env);
    let until = Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    while Instant::now() < until {
        write(src.join("busy.txt"), format!("{i}"));
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(snapshot_count(&env) > before, "no backup during 10 s of steady changes");
    let stderr = stop(child);
    assert!(stderr.contains("stopped watching"), "{stderr}");

    // Bounds that contradict each other are refused.
    let out = env
        .run([
            "watch",
            src.to_str().unwrap(),
            "--min-interval",
            "2h",
            "--max-interval",
            "1h",
        ])
        .code(1);
    assert!(out.stderr.contains("--min-interval"), "{}", out.stderr);
}

fn git(dir: &Path, args: &[&str], when: Option<i64>) {
    let mut c = Std::new("git");
    c.args([
        "-c",
        "user.name=T",
        "-c",
        "user.email=t@example.invalid",
        "-c",
        "init.defaultBranch=main",
    ])
    .args(args)
    .current_dir(dir);
    if let Some(t) = when {
        c.env("GIT_COMMITTER_DATE", format!("@{t} +0000"))
            .env("GIT_AUTHOR_DATE", format!("@{t} +0000"));
    }
    let out = c.output().expect("git runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn schedule_suggest_explains_weekday_work_from_git_history() {
    let env = Env::with_repo();
    let app = env.path("app");
    fs::create_dir_all(&app).unwrap();
    git(&app, &["init", "-q"], None);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let today = now / 86_400;
    let monday = today - (today + 3).rem_euclid(7);
    // Three past weeks of Monday to Friday, commits at 10:00 and 17:00 UTC.
    let mut n = 0;
    for week in 1..=3 {
        for d in 0..5 {
            for hour in [10, 17] {
                let t = (monday - 7 * week + d) * 86_400 + hour * 3600;
                write(app.join("f"), format!("{n}"));
                git(&app, &["add", "."], None);
                git(&app, &["commit", "-qm", &format!("c{n}")], Some(t));
                n += 1;
            }
        }
    }
    let out = env.run(["schedule", "suggest", app.to_str().unwrap()]).success().stdout;
    assert!(
        out.contains("30 git commits in the last 90 day(s), on 15 day(s)"),
        "{out}"
    );
    assert!(out.contains("the day's work ends by 17:00 (UTC+00:00)"), "{out}");
    assert!(out.contains("--on-calendar 'Mon..Fri 17:30'"), "{out}");
    assert!(out.contains("no snapshot of"), "{out}");

    env.backup([&app]);
    let j = env
        .run(["--json", "schedule", "suggest", app.to_str().unwrap()])
        .success()
        .json();
    assert_eq!(j["on_calendar"], "Mon..Fri 17:30", "{j}");
    assert_eq!(j["weekdays"], serde_json::json!(["Mon", "Tue", "Wed", "Thu", "Fri"]));
    assert_eq!(j["snapshots"], 1);
    assert_eq!(j["source"], "git commits");
    // Commits older than a day before the snapshot were not saved within 24 hours.
    assert!(j["coverage"].as_f64().unwrap() < 0.5, "{j}");

    // Without git history: file times; a folder untouched for the window: weekly.
    let quiet = env.path("quiet");
    write(quiet.join("old"), b"x");
    let old = std::time::SystemTime::now() - Duration::from_secs(400 * 86_400);
    fs::File::options()
        .write(true)
        .open(quiet.join("old"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = env
        .run(["schedule", "suggest", quiet.to_str().unwrap()])
        .success()
        .stdout;
    assert!(
        out.contains("no file modification times in the last 90 day(s)"),
        "{out}"
    );
    assert!(out.contains("--every weekly"), "{out}");
}
