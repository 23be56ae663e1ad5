//! Release 1.0 (issue 20, items 4 and 5): `scripts/release.sh` packages a stripped binary
//! with its SHA-256 and a `.deb`; the GitHub Action (`action.yml`) and the GitLab CI template
//! (`ci/gitlab/projectclone.gitlab-ci.yml`) install that package and back up, run here step
//! by step with the variables a runner sets. Only what needs GitHub or GitLab themselves is
//! left out: `actions/cache` (a `uses:` step) and the template's `apt-get install curl`.

use assert_cmd::Command;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::util::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const TARGET: &str = "x86_64-unknown-linux-gnu";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sh(cmd: &mut Command) -> Out {
    run(cmd.current_dir(root()))
}

/// `scripts/release.sh --binary <this build> --out DIR` (and `--no-deb` unless `deb`).
fn release_into(dir: &Path, deb: bool) -> Out {
    let mut c = Command::new("bash");
    c.arg(root().join("scripts/release.sh"))
        .arg("--binary")
        .arg(bin_path())
        .arg("--out")
        .arg(dir);
    if !deb {
        c.arg("--no-deb");
    }
    let out = sh(&mut c);
    assert_eq!(out.code, 0, "release.sh: {}\n{}", out.stdout, out.stderr);
    out
}

#[test]
fn release_script_makes_a_checked_tarball_of_a_stripped_binary_and_a_deb() {
    let env = Env::new();
    let dist = env.path("dist");
    release_into(&dist, true);
    let name = format!("projectclone-{VERSION}-{TARGET}");
    let tarball = format!("{name}.tar.gz");
    // The checksum file is in `sha256sum` format and matches.
    let sums = fs::read_to_string(dist.join(format!("{tarball}.sha256"))).unwrap();
    assert!(sums.ends_with(&format!("  {tarball}\n")), "{sums}");
    let check = run(Command::new("sha256sum")
        .arg("--check")
        .arg("--strict")
        .arg(format!("{tarball}.sha256"))
        .current_dir(&dist));
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    // Unpacked: the binary runs and says its version, has no debug sections, and the man
    // pages and completions are there.
    let x = env.path("x");
    fs::create_dir_all(&x).unwrap();
    let untar = run(Command::new("tar")
        .arg("-xzf")
        .arg(dist.join(&tarball))
        .arg("-C")
        .arg(&x));
    assert_eq!(untar.code, 0, "{}", untar.stderr);
    let dir = x.join(&name);
    let bin = dir.join("projectclone");
    let v = run(Command::new(&bin).arg("--version"));
    assert!(
        v.stdout.starts_with(&format!("projectclone {VERSION} (commit ")),
        "{}",
        v.stdout
    );
    let sections = run(Command::new("readelf").arg("-S").arg(&bin));
    assert_eq!(sections.code, 0, "{}", sections.stderr);
    assert!(!sections.stdout.contains(".debug_info"), "the binary is not stripped");
    assert!(
        !sections.stdout.contains(".symtab"),
        "the binary keeps its symbol table"
    );
    assert!(fs::metadata(&bin).unwrap().len() < fs::metadata(bin_path()).unwrap().len());
    for f in [
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "man/projectclone.1",
        "man/projectclone-backup.1",
        "completions/projectclone.bash",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing from the tarball");
    }
    // The newest glibc symbol version it needs is the one README and the .deb state.
    let syms = run(Command::new("objdump").arg("-T").arg(&bin));
    let newest = syms
        .stdout
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut p = v.split('.').map(|n| n.parse::<u32>().ok());
            Some((p.next()??, p.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("glibc symbols");
    let cargo = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let stated = format!("{}.{}", newest.0, newest.1);
    assert!(
        cargo.contains(&format!("libc6 (>= {stated})")),
        "Cargo.toml's deb depends should say glibc {stated}"
    );
    assert!(
        readme.contains(&format!("glibc {stated} or newer")),
        "README should say glibc {stated}"
    );
    // Reproducible: a second run gives the same bytes.
    let again = env.path("again");
    release_into(&again, false);
    assert_eq!(
        fs::read(dist.join(&tarball)).unwrap(),
        fs::read(again.join(&tarball)).unwrap()
    );
    // The .deb: its version, the binary on PATH, man pages and completions where Debian
    // looks for them, and its own checksum.
    let deb = format!("projectclone_{VERSION}-1_amd64.deb");
    assert!(
        dist.join(&deb).is_file(),
        "no {deb} in {:?}",
        fs::read_dir(&dist).unwrap().collect::<Vec<_>>()
    );
    let check = run(Command::new("sha256sum")
        .arg("--check")
        .arg(format!("{deb}.sha256"))
        .current_dir(&dist));
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let field = run(Command::new("dpkg-deb").arg("-f").arg(dist.join(&deb)).arg("Version"));
    assert_eq!(field.stdout.trim(), format!("{VERSION}-1"));
    let list = run(Command::new("dpkg-deb").arg("-c").arg(dist.join(&deb)));
    assert_eq!(list.code, 0, "{}", list.stderr);
    for f in [
        "./usr/bin/projectclone",
        "./usr/share/man/man1/projectclone.1",
        "./usr/share/bash-completion/completions/projectclone",
        "./usr/share/doc/projectclone/README.md",
    ] {
        assert!(
            list.stdout
                .lines()
                .any(|l| l.ends_with(f) || l.contains(&format!("{f}.gz"))),
            "{f} not in the .deb:\n{}",
            list.stdout
        );
    }
    // The packaged binary is the stripped one.
    let unpacked = env.path("deb");
    let ex = run(Command::new("dpkg-deb").arg("-x").arg(dist.join(&deb)).arg(&unpacked));
    assert_eq!(ex.code, 0, "{}", ex.stderr);
    assert_eq!(
        fs::read(unpacked.join("usr/bin/projectclone")).unwrap(),
        fs::read(&bin).unwrap()
    );
}

/// A release laid out as GitHub serves it: `BASE/vVERSION/NAME`.
fn releases(env: &Env) -> PathBuf {
    let base = env.path("releases");
    release_into(&base.join(format!("v{VERSION}")), false);
    base
}

/// The `run:` steps of `action.yml`, in order: id, script, and the `env:` mapping.
fn action_steps() -> Vec<(String, String, Vec<(String, String)>)> {
    let text = fs::read_to_string(root().join("action.yml")).unwrap();
    // What precedes the first "    - " is the action's header, not a step.
    let mut steps = text.split("\n    - ");
    steps.next();
    let mut out = Vec::new();
    for step in steps {
        let mut id = String::new();
        let mut script = None;
        let mut env = Vec::new();
        let mut in_env = false;
        for line in step.lines() {
            let l = line.trim();
            if let Some(v) = l.strip_prefix("id: ") {
                id = v.to_string();
            } else if let Some(v) = l.strip_prefix("run: ") {
                script = Some(v.to_string());
            } else if l == "env:" {
                in_env = true;
            } else if in_env && line.starts_with("        ") {
                let (k, v) = l.split_once(": ").expect("KEY: value");
                env.push((k.to_string(), v.to_string()));
            } else {
                in_env = false;
            }
        }
        if let Some(s) = script {
            out.push((id, s, env));
        }
    }
    out
}

/// Run the action's steps as a runner would: `${{ inputs.X }}` from `inputs` (or the
/// input's default), the `GITHUB_*` and `RUNNER_*` variables, `GITHUB_PATH` entries put on
/// `PATH` for later steps, outputs read from each step's `GITHUB_OUTPUT` file. Returns
/// each step's outputs (or the failing step's id and result).
fn run_action(
    env: &Env,
    inputs: &BTreeMap<&str, String>,
    job_env: &[(&str, String)],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, (String, Out)> {
    let yml = fs::read_to_string(root().join("action.yml")).unwrap();
    let default = |name: &str| -> String {
        let at = yml
            .find(&format!("\n  {name}:\n"))
            .unwrap_or_else(|| panic!("no input {name}"));
        let rest = &yml[at..];
        let block = &rest[..rest[1..].find("\n  ").map_or(rest.len(), |e| e + 1)];
        block
            .lines()
            .find_map(|l| l.trim().strip_prefix("default: "))
            .map(|d| d.trim_matches('\'').to_string())
            .unwrap_or_default()
    };
    let runner = env.path("runner");
    fs::create_dir_all(runner.join("temp")).unwrap();
    let path_file = runner.join("path");
    fs::write(&path_file, "").unwrap();
    let mut results = BTreeMap::new();
    for (i, (id, script, step_env)) in action_steps().into_iter().enumerate() {
        let output = runner.join(format!("output-{i}"));
        fs::write(&output, "").unwrap();
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(script.replace("$GITHUB_ACTION_PATH", &root().display().to_string()));
        let added: Vec<String> = fs::read_to_string(&path_file)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        let path = added
            .into_iter()
            .rev()
            .chain([std::env::var("PATH").unwrap()])
            .collect::<Vec<_>>()
            .join(":");
        c.env_clear()
            .env("PATH", path)
            .env("HOME", env.path("home"))
            .env("XDG_CACHE_HOME", env.path("xdg-cache"))
            .env("XDG_STATE_HOME", env.path("xdg-state"))
            .env("XDG_CONFIG_HOME", env.path("xdg-config"))
            .env("XDG_DATA_HOME", env.path("xdg-data"))
            .env("TZ", "UTC")
            .env("GITHUB_ACTIONS", "true")
            .env("CI", "true")
            .env("GITHUB_ACTION_PATH", root())
            .env("GITHUB_WORKSPACE", env.path("workspace"))
            .env("GITHUB_REPOSITORY", "octo/app")
            .env("GITHUB_REF_NAME", "main")
            .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_PATH", &path_file)
            .env("RUNNER_TEMP", runner.join("temp"))
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64")
            .current_dir(env.path("workspace"));
        for (k, v) in job_env {
            c.env(k, v);
        }
        for (k, v) in step_env {
            let v = match v.strip_prefix("${{ inputs.").and_then(|r| r.strip_suffix(" }}")) {
                Some(name) => inputs.get(name).cloned().unwrap_or_else(|| default(name)),
                None if v == "${{ github.action_repository }}" => "octo/projectclone".to_string(),
                None => panic!("unexpected env value in action.yml: {v}"),
            };
            c.env(k, v);
        }
        let out = run(&mut c);
        if out.code != 0 {
            return Err((id, out));
        }
        let outputs = fs::read_to_string(&output)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        results.insert(id, outputs);
    }
    Ok(results)
}

fn write_workspace(env: &Env) {
    write(env.path("workspace/src/main.rs"), b"fn main() {}\n");
    write(env.path("workspace/data.bin"), random_bytes(7, 300_000));
    write(env.path("workspace/target/junk.o"), b"build output");
}

#[test]
fn github_action_installs_the_checked_release_backs_up_the_workspace_and_prunes() {
    let env = Env::new();
    write_workspace(&env);
    let base = releases(&env);
    let job_env = [("PC_RELEASE_BASE", format!("file://{}", base.display()))];
    let repo = env.path("ci-repo");
    let mut inputs = BTreeMap::from([
        ("repository", repo.display().to_string()),
        ("password", "ci secret".to_string()),
        ("exclude", "target\n".to_string()),
        ("tags", "nightly\n".to_string()),
        ("keep-last", "1".to_string()),
    ]);
    // Without `init: true` there is no repository to back up into: exit 10's advice.
    let (step, out) = run_action(&env, &inputs, &job_env).expect_err("no repository yet");
    assert_eq!(step, "backup");
    assert!(out.stderr.contains("set the input init: true"), "{}", out.stderr);
    inputs.insert("init", "true".to_string());
    let first = run_action(&env, &inputs, &job_env).unwrap();
    assert!(first["install"]["version"].starts_with(&format!("projectclone {VERSION} ")));
    let installed = PathBuf::from(&first["install"]["path"]);
    assert!(installed.starts_with(env.path("runner/temp")), "{installed:?}");
    let id = first["backup"]["snapshot-id"].clone();
    assert_eq!(id.len(), 64, "{id}");
    assert_eq!(first["prune"]["forgotten"], "0");
    // The snapshot holds the workspace without the excluded folder, tagged and noted.
    let c = || {
        let mut c = env.bare();
        c.env("PROJECTCLONE_PASSWORD", "ci secret").arg("-r").arg(&repo);
        c
    };
    let snaps = run(c().args(["snapshots", "--json"]));
    assert_eq!(snaps.code, 0, "{}", snaps.stderr);
    let v: serde_json::Value = serde_json::from_str(&snaps.stdout).unwrap();
    let s = &v.as_array().unwrap()[0];
    assert_eq!(s["id"], id.as_str());
    let tags: Vec<&str> = s["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, ["ci", "nightly"]);
    assert!(
        s["note"].as_str().unwrap().contains("octo/app main 0123456789abcdef"),
        "{s}"
    );
    let target = env.path("restored");
    assert_eq!(run(c().args(["restore", &id, "--target"]).arg(&target)).code, 0);
    assert_eq!(fs::read(target.join("data.bin")).unwrap(), random_bytes(7, 300_000));
    assert!(!target.join("target").exists(), "the excluded folder was backed up");
    // The next run keeps one snapshot: the first is forgotten and pruned.
    write(env.path("workspace/src/new.rs"), b"// new\n");
    let second = run_action(&env, &inputs, &job_env).unwrap();
    assert_ne!(second["backup"]["snapshot-id"], id);
    assert_eq!(second["prune"]["forgotten"], "1");
    let snaps = run(c().args(["snapshots", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&snaps.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], second["backup"]["snapshot-id"].as_str());
}

#[test]
fn github_action_refuses_a_release_that_does_not_match_its_checksum() {
    let env = Env::new();
    write_workspace(&env);
    let base = releases(&env);
    let tarball = base.join(format!("v{VERSION}/projectclone-{VERSION}-{TARGET}.tar.gz"));
    let mut bytes = fs::read(&tarball).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    fs::write(&tarball, bytes).unwrap();
    let inputs = BTreeMap::from([
        ("repository", env.path("ci-repo").display().to_string()),
        ("password", "ci secret".to_string()),
        ("init", "true".to_string()),
    ]);
    let job_env = [("PC_RELEASE_BASE", format!("file://{}", base.display()))];
    let (step, out) = run_action(&env, &inputs, &job_env).expect_err("a tampered release");
    assert_eq!(step, "install");
    assert!(out.stderr.contains("does not match its SHA-256"), "{}", out.stderr);
    assert_eq!(
        fs::read_to_string(env.path("runner/path")).unwrap(),
        "",
        "nothing was put on PATH"
    );
    assert!(!env.path("ci-repo").exists());
    // A release that is not there is named.
    let job_env = [("PC_RELEASE_BASE", format!("file://{}", env.path("nowhere").display()))];
    let (step, out) = run_action(&env, &inputs, &job_env).expect_err("no release");
    assert_eq!(step, "install");
    assert!(out.stderr.contains("cannot download"), "{}", out.stderr);
}

#[test]
fn gitlab_template_backs_up_the_project_and_reports_the_snapshot_in_a_dotenv_file() {
    let env = Env::new();
    write_workspace(&env);
    let base = releases(&env);
    let text = fs::read_to_string(root().join("ci/gitlab/projectclone.gitlab-ci.yml")).unwrap();
    // The job's `variables:`, then its `before_script:` and `script:` lines, in order.
    let mut section = "";
    let (mut vars, mut lines) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if let Some(s) = line.strip_prefix("  ").filter(|s| !s.starts_with(' ')) {
            section = s.trim_end_matches(':');
        } else if section == "variables" && line.starts_with("    ") {
            let (k, v) = line.trim().split_once(": ").unwrap();
            // A project's CI/CD variables take precedence over the job's own.
            vars.push(format!("[ -n \"${{{k}+x}}\" ] || {k}={v}; export {k}"));
        } else if (section == "before_script" || section == "script") && line.starts_with("    - ") {
            lines.push(line["    - ".len()..].to_string());
        }
    }
    assert!(lines.iter().any(|l| l.starts_with("apt-get")), "{lines:?}");
    // Not run here: the package install (the image's job, and this machine has curl).
    lines.retain(|l| !l.starts_with("apt-get"));
    assert_eq!(lines.len(), 4, "{lines:?}");
    let repo = env.path("ci-repo");
    // CI/CD variables a project sets, then the template's own (which may use them).
    let script = [
        "export PC_RELEASE_REPOSITORY=octo/projectclone PC_INIT=true PC_KEEP_LAST=3".to_string(),
        format!(
            "export PC_RELEASE_BASE=file://{} PC_SCRIPT_URL=file://{}/ci/action.sh",
            base.display(),
            root().display()
        ),
        vars.join("\n"),
        "set -e".to_string(),
        lines.join("\n"),
    ]
    .join("\n");
    let out = run(Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", env.path("home"))
        .env("TZ", "UTC")
        .env("GITLAB_CI", "true")
        .env("CI_PROJECT_DIR", env.path("workspace"))
        .env("CI_PROJECT_PATH", "octo/app")
        .env("CI_COMMIT_REF_NAME", "main")
        .env("CI_COMMIT_SHA", "89abcdef0123456789abcdef0123456789abcdef")
        .env("CI_PIPELINE_ID", "77")
        .env("PROJECTCLONE_REPO", &repo)
        .env("PROJECTCLONE_PASSWORD", "ci secret")
        .current_dir(env.path("workspace")));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let dotenv = fs::read_to_string(env.path("workspace/projectclone.env")).unwrap();
    let id = dotenv
        .lines()
        .find_map(|l| l.strip_prefix("PROJECTCLONE_SNAPSHOT_ID="))
        .unwrap_or_else(|| panic!("{dotenv}"));
    let mut c = env.bare();
    c.env("PROJECTCLONE_PASSWORD", "ci secret").arg("-r").arg(&repo);
    let ls = run(c.args(["ls", id]));
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    assert!(ls.stdout.contains("data.bin"), "{}", ls.stdout);
    // The template keeps its cache inside the project folder, and leaves it out of the backup.
    assert!(env.path("workspace/.projectclone-cache").is_dir());
    assert!(!ls.stdout.contains(".projectclone-cache"), "{}", ls.stdout);
}
