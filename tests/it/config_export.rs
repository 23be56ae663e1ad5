//! `projectclone config` shows the `[export]` table (the older syntax's defaults) like
//! every other key: its effective value and where it came from.

use std::path::Path;

use serde_json::json;

use crate::util::*;

/// `config --json` run in `dir`: the `export.*` settings, keyed by name: (value, source).
fn export_rows(cmd: &mut assert_cmd::Command, dir: &Path) -> Vec<(String, serde_json::Value, String)> {
    let v = run(cmd.current_dir(dir).args(["--json", "config"])).success().json();
    v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["key"].as_str().unwrap().starts_with("export."))
        .map(|s| {
            (
                s["key"].as_str().unwrap().to_string(),
                s["value"].clone(),
                s["source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn config_shows_the_export_table_with_its_sources() {
    let env = Env::new();
    let home = env.path("home");
    let proj = env.path("work/proj");
    std::fs::create_dir_all(&proj).unwrap();

    // Nothing set: the old tool's ~/project_backups, all views kept.
    assert_eq!(
        export_rows(&mut env.bare(), &proj),
        [
            (
                "export.dest".to_string(),
                json!(home.join("project_backups").display().to_string()),
                "default".to_string()
            ),
            ("export.keep".to_string(), json!(null), "default".to_string()),
        ]
    );
    let out = run(env.bare().current_dir(&proj).arg("config")).success();
    let line = out.stdout.lines().find(|l| l.starts_with("export.dest ")).unwrap();
    assert!(
        line.contains("/project_backups") && line.ends_with("[default]"),
        "{line}"
    );
    let line = out.stdout.lines().find(|l| l.starts_with("export.keep ")).unwrap();
    assert!(line.contains("(none)") && line.ends_with("[default]"), "{line}");

    // The user file (`~` expanded), and a profile over it, key by key.
    let user = env.path("xdg-config/projectclone/config.toml");
    write(
        &user,
        "compression = \"zstd:3\"\n[export]\ndest = \"~/views\"\nkeep = 3\n[profile.work.export]\nkeep = 5\n",
    );
    let u = |line: usize| format!("user file {}:{line}", user.display());
    assert_eq!(
        export_rows(&mut env.bare(), &proj),
        [
            (
                "export.dest".to_string(),
                json!(home.join("views").display().to_string()),
                u(2)
            ),
            ("export.keep".to_string(), json!(3), u(2)),
        ]
    );
    let out = run(env.bare().current_dir(&proj).arg("config")).success();
    let line = out.stdout.lines().find(|l| l.starts_with("export.keep ")).unwrap();
    assert!(line.contains(" 3 ") && line.ends_with(&format!("[{}]", u(2))), "{line}");
    assert_eq!(
        export_rows(env.bare().args(["-P", "work"]), &proj),
        [
            (
                "export.dest".to_string(),
                json!(home.join("views").display().to_string()),
                u(2)
            ),
            (
                "export.keep".to_string(),
                json!(5),
                format!("profile work in {}:5", user.display())
            ),
        ]
    );

    // A project file's [export] counts only once its directory is trusted.
    let elsewhere = env.path("elsewhere");
    write(
        proj.join(".projectclone.toml"),
        format!("tags = [\"t\"]\n[export]\ndest = \"{}\"\n", elsewhere.display()),
    );
    let v = run(env.bare().current_dir(&proj).args(["--json", "config"]))
        .success()
        .json();
    assert_eq!(v["untrusted_keys"][0]["key"], "export", "{v}");
    assert_eq!(export_rows(&mut env.bare(), &proj)[0].2, u(2));
    run(env.bare().current_dir(&proj).args(["config", "trust"])).success();
    let p = format!("project file {}:2", proj.join(".projectclone.toml").display());
    assert_eq!(
        export_rows(&mut env.bare(), &proj),
        [
            ("export.dest".to_string(), json!(elsewhere.display().to_string()), p),
            ("export.keep".to_string(), json!(3), u(2)),
        ]
    );
}
