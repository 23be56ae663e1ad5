//! `status` (each project's newest snapshot and its age) and `schedule install|remove|status`
//! (a systemd user timer, or a crontab line). The test machine has no systemd user bus, so
//! `systemctl` and `crontab` are test doubles first on PATH: the crontab double keeps its
//! table in a file; the systemctl double logs its arguments and answers as a user instance
//! would (or as an unreachable one). The crontab line written is also run with `sh`, for
//! real, and must make a backup.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::util::*;

const FAKE_CRONTAB: &str = r#"#!/bin/sh
case "$1" in
  -l) if [ -f "$FAKE_CRONTAB" ]; then cat "$FAKE_CRONTAB"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$FAKE_CRONTAB" ;;
  *) echo "fake crontab: unexpected arguments: $*" >&2; exit 2 ;;
esac
"#;

const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
echo "$*" >> "$FAKE_SYSTEMCTL_LOG"
if [ "$FAKE_SYSTEMD" != up ]; then echo "Failed to connect to bus: No medium found" >&2; exit 1; fi
case "$2" in
  show) case "$3" in
          *.timer) echo "NextElapseUSecRealtime=Mon 2030-01-07 00:00:00 UTC"; echo "LastTriggerUSec=Sun 2030-01-06 00:00:03 UTC" ;;
          *) echo "Result=success"; echo "ExecMainStatus=0" ;;
        esac ;;
  is-enabled) echo enabled ;;
esac
exit 0
"#;

struct Sched {
    env: Env,
    bin: PathBuf,
}

impl Sched {
    fn new() -> Sched {
        let env = Env::with_repo();
        let bin = env.path("fakebin");
        fs::create_dir_all(&bin).expect("mkdir");
        for (name, text) in [("crontab", FAKE_CRONTAB), ("systemctl", FAKE_SYSTEMCTL)] {
            let p = bin.join(name);
            fs::write(&p, text).expect("write fake");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        write(env.path("project/src/main.rs"), b"fn main() {}\n");
        Sched { env, bin }
    }

    /// The binary with the test doubles first on PATH; `systemd_up`: the systemctl double
    /// answers as a reachable user instance.
    fn cmd(&self, systemd_up: bool) -> assert_cmd::Command {
        let mut c = self.env.cmd();
        let path = std::env::var("PATH").unwrap_or_default();
        c.env("PATH", format!("{}:{path}", self.bin.display()))
            .env("FAKE_CRONTAB", self.crontab_file())
            .env("FAKE_SYSTEMCTL_LOG", self.systemctl_log())
            .env("FAKE_SYSTEMD", if systemd_up { "up" } else { "down" });
        c
    }

    fn crontab_file(&self) -> PathBuf {
        self.env.path("crontab.txt")
    }

    fn systemctl_log(&self) -> PathBuf {
        self.env.path("systemctl.log")
    }

    fn systemctl_calls(&self) -> Vec<String> {
        fs::read_to_string(self.systemctl_log())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn project(&self) -> PathBuf {
        fs::canonicalize(self.env.path("project")).expect("project dir")
    }

    fn unit_dir(&self) -> PathBuf {
        self.env.path("xdg-config/systemd/user")
    }

    fn service(&self) -> PathBuf {
        self.unit_dir().join("projectclone-backup.service")
    }

    fn timer(&self) -> PathBuf {
        self.unit_dir().join("projectclone-backup.timer")
    }

    fn wants(&self) -> PathBuf {
        self.unit_dir().join("timers.target.wants/projectclone-backup.timer")
    }
}

fn exe() -> String {
    fs::canonicalize(bin_path()).expect("binary").display().to_string()
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn status_lists_each_projects_newest_snapshot_and_its_age() {
    let env = Env::with_repo();
    let app = env.path("work/app");
    let lib = env.path("work/lib");
    write(app.join("a.txt"), b"one\n");
    write(lib.join("l.txt"), b"lib\n");
    let _first = env.backup([&app]);
    write(app.join("a.txt"), b"two\n");
    let newest = env.backup([&app]);
    let other_host = run(env.cmd().arg("backup").arg(&app).args(["--host", "other-machine"]))
        .success()
        .snapshot_id();
    let lib_id = env.backup([&lib]);

    let before = jiff::Timestamp::now().as_second();
    let out = run(env.cmd().args(["--json", "status"])).success();
    let after = jiff::Timestamp::now().as_second();
    let rows = out.json();
    let rows = rows.as_array().expect("an array");
    let snaps = run(env.cmd().args(["--json", "snapshots"])).success().json();
    let time_of = |id: &str| -> i64 {
        let s = snaps
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .expect("snapshot listed");
        s["time"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second()
    };
    let host = snaps[0]["hostname"].as_str().unwrap().to_string();
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["project"].as_str().unwrap().to_string(),
                r["host"].as_str().unwrap().to_string(),
                r["snapshot"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want = vec![
        ("app".to_string(), host.clone(), newest.clone()),
        ("app".to_string(), "other-machine".to_string(), other_host.clone()),
        ("lib".to_string(), host.clone(), lib_id.clone()),
    ];
    want.sort();
    assert_eq!(got, want, "{}", out.stdout);
    for r in rows {
        let id = r["snapshot"].as_str().unwrap();
        let t = time_of(id);
        let age = r["age_seconds"].as_i64().expect("age_seconds");
        assert!(
            age >= before - t - 1 && age <= after - t + 1,
            "age {age} of {id} (time {t}, now {before}..{after})"
        );
        let path = if r["project"] == "app" { &app } else { &lib };
        assert_eq!(r["paths"], serde_json::json!([path.display().to_string()]));
        assert_eq!(
            r["time"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_second(),
            t
        );
    }

    let human = run(env.cmd().arg("status")).success().stdout;
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(lines.len(), 4, "{human}");
    for w in ["project", "host", "snapshot", "age", "time", "paths"] {
        assert!(lines[0].contains(w), "{human}");
    }
    // Rows in the JSON's order (project, host), each with its short id, age and path.
    for (line, (project, host, id)) in lines[1..].iter().zip(&got) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&words[..3], [project.as_str(), host.as_str(), &id[..8]], "{human}");
        assert!(words[3].ends_with('s') || words[3].ends_with('m'), "an age: {human}");
        let path = if project == "app" { &app } else { &lib };
        assert!(line.ends_with(&path.display().to_string()), "{human}");
    }

    let empty = Env::with_repo();
    assert_eq!(
        run(empty.cmd().args(["--json", "status"])).success().json(),
        serde_json::json!([])
    );
    assert_eq!(run(empty.cmd().arg("status")).success().stdout, "no snapshots\n");
}

#[test]
fn dry_run_prints_the_units_and_writes_nothing() {
    let s = Sched::new();
    let dir = s.project();
    write(
        s.env.path("xdg-config/projectclone/config.toml"),
        "[profile.work]\ntags = [\"work\"]\n",
    );
    let out = run(s
        .cmd(false)
        .args([
            "-P",
            "work",
            "schedule",
            "install",
            "--via",
            "systemd",
            "--dry-run",
            "--prune",
        ])
        .arg(&dir))
    .success();
    let exe = exe();
    let text = out.stdout;
    assert!(text.contains(&format!("# {}\n", s.service().display())), "{text}");
    assert!(text.contains(&format!("# {}\n", s.timer().display())), "{text}");
    let repo = s.env.repo().display().to_string();
    let cache = s.env.cache().display().to_string();
    for want in [
        "[Service]\nType=oneshot\n".to_string(),
        format!("WorkingDirectory={}\n", dir.display()),
        "Environment=PROJECTCLONE_PROFILE=work\n".to_string(),
        format!("Environment=XDG_CONFIG_HOME={}\n", s.env.path("xdg-config").display()),
        format!(
            "ExecStart={exe} --repo {repo} --cache-dir {cache} backup {}\n",
            dir.display()
        ),
        format!("ExecStart={exe} --repo {repo} --cache-dir {cache} prune\n"),
        "[Timer]\nOnCalendar=daily\nPersistent=true\n".to_string(),
        "WantedBy=timers.target\n".to_string(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains(PASSWORD), "the password is never written: {text}");
    assert!(!s.unit_dir().exists(), "a dry run writes nothing");
    assert!(
        s.systemctl_calls().iter().all(|c| c == "--user show-environment"),
        "{:?}",
        s.systemctl_calls()
    );

    // The crontab form: one line, nothing written.
    let out = run(s
        .cmd(false)
        .args(["schedule", "install", "--via", "cron", "--dry-run", "--every", "weekly"]))
    .success();
    assert!(out.stdout.contains("\n@weekly cd "), "{}", out.stdout);
    assert!(out.stdout.contains("# projectclone-backup\n"), "{}", out.stdout);
    assert!(!s.crontab_file().exists());

    // --on-calendar goes into OnCalendar; with cron it is refused.
    let out = run(s.cmd(false).args([
        "schedule",
        "install",
        "--via",
        "systemd",
        "--dry-run",
        "--on-calendar",
        "Mon..Fri 18:30",
    ]))
    .success();
    assert!(out.stdout.contains("OnCalendar=Mon..Fri 18:30\n"), "{}", out.stdout);
    let out = run(s.cmd(false).args([
        "schedule",
        "install",
        "--via",
        "cron",
        "--on-calendar",
        "Mon..Fri 18:30",
    ]))
    .code(1);
    assert!(out.stderr.contains("--every"), "{}", out.stderr);
    run(s
        .cmd(false)
        .args(["schedule", "install", "--every", "daily", "--on-calendar", "daily"]))
    .code(2);
    let out = run(s
        .cmd(false)
        .args(["schedule", "install", "--via", "cron"])
        .arg(s.env.path("no-such-dir")))
    .code(1);
    assert!(out.stderr.contains("no-such-dir"), "{}", out.stderr);
}

#[test]
fn systemd_install_without_a_user_bus_writes_the_units_enabled_on_disk() {
    let s = Sched::new();
    let dir = s.project();
    let dry = run(s
        .cmd(false)
        .args(["schedule", "install", "--via", "systemd", "--dry-run"])
        .arg(&dir))
    .success()
    .stdout;
    let out = run(s.cmd(false).args(["schedule", "install", "--via", "systemd"]).arg(&dir)).success();
    assert!(
        out.stderr.contains("no systemd user instance answers"),
        "{}",
        out.stderr
    );
    let service = read(&s.service());
    let timer = read(&s.timer());
    // Exactly what the dry run printed.
    assert_eq!(
        dry,
        format!(
            "# {}\n{service}\n# {}\n{timer}\n",
            s.service().display(),
            s.timer().display()
        )
    );
    assert_eq!(
        fs::read_link(s.wants()).expect("enabled on disk"),
        Path::new("../projectclone-backup.timer")
    );
    assert_eq!(read(&s.wants()), timer, "the link resolves to the timer");

    // Twice: the same files, one timer.
    let again = run(s
        .cmd(false)
        .args(["--json", "schedule", "install", "--via", "systemd"])
        .arg(&dir))
    .success()
    .json();
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(read(&s.service()), service);
    let mut names: Vec<String> = fs::read_dir(s.unit_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "projectclone-backup.service",
            "projectclone-backup.timer",
            "timers.target.wants"
        ]
    );

    let st = run(s.cmd(false).args(["--json", "schedule", "status"]))
        .success()
        .json();
    assert_eq!(st["installed"], true);
    assert_eq!(st["via"], "systemd");
    assert_eq!(st["schedule"], "daily");
    assert_eq!(
        st["commands"],
        serde_json::json!([format!(
            "{} --repo {} --cache-dir {} backup {}",
            exe(),
            s.env.repo().display(),
            s.env.cache().display(),
            dir.display()
        )])
    );
    assert_eq!(st["next_run"], serde_json::Value::Null, "no systemd to ask");

    let out = run(s.cmd(false).args(["schedule", "remove"])).success();
    assert!(
        out.stdout.contains(&format!("removed: {}", s.service().display())),
        "{}",
        out.stdout
    );
    assert!(!s.service().exists() && !s.timer().exists());
    assert!(s.wants().symlink_metadata().is_err());
    assert_eq!(fs::read_dir(s.unit_dir()).unwrap().count(), 0, "nothing of ours left");
    let st = run(s.cmd(false).args(["--json", "schedule", "status"]))
        .success()
        .json();
    assert_eq!(st["installed"], false);
    let out = run(s.cmd(false).args(["schedule", "remove"])).success();
    assert!(out.stdout.contains("nothing to remove"), "{}", out.stdout);
    // systemctl was only asked whether it answers.
    assert!(
        s.systemctl_calls().iter().all(|c| c == "--user show-environment"),
        "{:?}",
        s.systemctl_calls()
    );
}

#[test]
fn systemd_install_with_a_user_instance_enables_the_timer() {
    let s = Sched::new();
    // Chosen by itself: the (double of the) user instance answers.
    let out = run(s
        .cmd(true)
        .args(["schedule", "install", "--every", "hourly"])
        .current_dir(s.project()))
    .success();
    assert!(
        out.stdout.contains("installed systemd schedule (hourly)"),
        "{}",
        out.stdout
    );
    assert!(read(&s.timer()).contains("OnCalendar=hourly\n"));
    assert!(
        read(&s.service()).contains(&format!("backup {}\n", s.project().display())),
        "the current directory by default"
    );
    let calls = s.systemctl_calls();
    assert!(calls.contains(&"--user daemon-reload".to_string()), "{calls:?}");
    assert!(
        calls.contains(&"--user enable --now projectclone-backup.timer".to_string()),
        "{calls:?}"
    );
    assert!(
        s.wants().symlink_metadata().is_err(),
        "systemctl enable makes the link, not us"
    );

    let out = run(s.cmd(true).args(["schedule", "status"])).success();
    for want in [
        "installed:    systemd",
        "schedule:     hourly",
        "next run:     Mon 2030-01-07 00:00:00 UTC",
        "last run:     Sun 2030-01-06 00:00:03 UTC",
        "last result:  success (exit 0)",
        "enabled:      yes",
        "logs:         journalctl --user -u projectclone-backup",
    ] {
        assert!(out.stdout.contains(want), "missing {want:?} in:\n{}", out.stdout);
    }

    fs::remove_file(s.systemctl_log()).unwrap();
    run(s.cmd(true).args(["schedule", "remove"])).success();
    let calls = s.systemctl_calls();
    assert!(
        calls.contains(&"--user disable --now projectclone-backup.timer".to_string()),
        "{calls:?}"
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("--user daemon-reload"),
        "{calls:?}"
    );
    assert!(!s.service().exists() && !s.timer().exists());
}

#[test]
fn cron_install_is_one_tagged_line_that_backs_up_and_remove_takes_it_away() {
    let s = Sched::new();
    let dir = s.project();
    let other = "MAILTO=me@example.org\n15 3 * * * /usr/local/bin/other-job --flag\n";
    fs::write(s.crontab_file(), other).unwrap();
    let pw = s.env.path("pw");
    fs::write(&pw, PASSWORD).unwrap();

    // Chosen by itself: systemd does not answer.
    let out = run(s
        .cmd(false)
        .env_remove("PROJECTCLONE_PASSWORD")
        .arg("--password-file")
        .arg(&pw)
        .args(["schedule", "install", "--prune"])
        .arg(&dir))
    .success();
    assert!(
        out.stdout.contains("installed cron schedule (@daily)"),
        "{}",
        out.stdout
    );
    assert!(!out.stderr.contains("no password file"), "{}", out.stderr);
    let table = read(&s.crontab_file());
    assert!(table.starts_with(other), "other lines are kept:\n{table}");
    let ours: Vec<&str> = table.lines().filter(|l| l.contains("projectclone-backup")).collect();
    assert_eq!(ours.len(), 1, "{table}");
    let line = ours[0].to_string();
    assert!(line.starts_with(&format!("@daily cd {} && ", dir.display())), "{line}");
    assert!(line.ends_with(" # projectclone-backup"), "{line}");
    assert!(
        line.contains(&format!(
            "{} --repo {} --password-file {}",
            exe(),
            s.env.repo().display(),
            pw.display()
        )),
        "{line}"
    );
    assert!(line.contains(&format!(" backup {} && ", dir.display())), "{line}");
    assert!(line.contains(" prune; }"), "{line}");
    assert!(!s.unit_dir().exists(), "no unit files with cron");

    // Twice (with another schedule): still one line, the new one.
    run(s
        .cmd(false)
        .env_remove("PROJECTCLONE_PASSWORD")
        .arg("--password-file")
        .arg(&pw)
        .args(["schedule", "install", "--prune", "--every", "hourly"])
        .arg(&dir))
    .success();
    let table = read(&s.crontab_file());
    let ours: Vec<&str> = table.lines().filter(|l| l.contains("projectclone-backup")).collect();
    assert_eq!(ours.len(), 1, "{table}");
    assert!(ours[0].starts_with("@hourly "), "{table}");
    assert_eq!(ours[0], line.replacen("@daily", "@hourly", 1));

    // The line does what it says: run it (without its schedule) with sh, as cron would,
    // with no password in the environment.
    let command = line.strip_prefix("@daily ").unwrap();
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env_clear()
        .env("HOME", s.env.path("home"))
        .env("PATH", "/usr/bin:/bin")
        .env("TZ", "UTC")
        .status()
        .unwrap();
    assert!(st.success());
    let snaps = run(s.env.cmd().args(["--json", "snapshots"])).success().json();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    assert_eq!(snaps[0]["paths"], serde_json::json!([dir.display().to_string()]));
    let log = s.env.path("xdg-state/projectclone/schedule.log");
    let log_text = read(&log);
    assert!(log_text.ends_with("projectclone-backup: exit 0\n"), "{log_text}");
    let st = run(s.cmd(false).args(["--json", "schedule", "status"]))
        .success()
        .json();
    assert_eq!(st["via"], "cron");
    assert_eq!(st["schedule"], "@hourly");
    assert_eq!(st["last_result"], "exit 0");
    assert_eq!(st["log"], log.display().to_string());

    let out = run(s.cmd(false).args(["schedule", "remove", "--dry-run"])).success();
    assert!(
        out.stdout.contains("would remove crontab line: @hourly"),
        "{}",
        out.stdout
    );
    assert_eq!(read(&s.crontab_file()).lines().count(), 3);
    run(s.cmd(false).args(["schedule", "remove"])).success();
    assert_eq!(read(&s.crontab_file()), other, "exactly our line removed");
}

#[test]
fn without_systemd_and_crontab_the_error_says_what_to_install() {
    let s = Sched::new();
    let empty = s.env.path("empty-path");
    fs::create_dir_all(&empty).unwrap();
    let out = run(s
        .env
        .cmd()
        .env("PATH", &empty)
        .args(["schedule", "install"])
        .arg(s.project()))
    .code(1);
    assert!(out.stderr.contains("no `crontab` program"), "{}", out.stderr);
    assert!(out.stderr.contains("apt-get install cron"), "{}", out.stderr);
    // Nothing to see, nothing removed, no error.
    run(s.env.cmd().env("PATH", &empty).args(["schedule", "status"])).success();
    run(s.env.cmd().env("PATH", &empty).args(["schedule", "remove"])).success();
}
