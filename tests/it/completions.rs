//! `completions bash|zsh|fish` and `man` (issue 18 item 5): the bash script loaded into a
//! real bash and asked to complete, the man page rendered by `man -l` (man-db, installed by
//! .ci/install-servers).

use std::process::{Command, Stdio};

use crate::util::*;

/// What bash's completion offers for `words` (the last one being completed), after
/// loading `projectclone completions bash` the way a user's shell does.
fn bash_complete(env: &Env, words: &[&str]) -> Vec<String> {
    let script = env.path("projectclone.bash");
    let out = env.run(["completions", "bash"]).success();
    write(&script, &out.raw_stdout);
    let line = words.join(" ");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}' || exit 9\n\
         complete -p projectclone | grep -q _projectclone || exit 8\n\
         COMP_WORDS=({})\n\
         COMP_CWORD={}\n\
         COMP_LINE='{line}'\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         _projectclone projectclone '{}' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash is installed");
    assert!(
        out.status.success(),
        "bash completion for {words:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completion_completes_commands_and_options_in_a_real_bash() {
    let env = Env::new();
    assert_eq!(bash_complete(&env, &["projectclone", "res"]), vec!["restore"]);
    let rep = bash_complete(&env, &["projectclone", "re"]);
    for c in ["restore", "repair"] {
        assert!(rep.contains(&c.to_string()), "re<TAB>: {rep:?}");
    }
    assert!(!rep.iter().any(|c| c == "old-syntax" || c == "backup"), "{rep:?}");
    assert_eq!(
        bash_complete(&env, &["projectclone", "restore", "--tar"]),
        vec!["--target"]
    );
    assert_eq!(
        bash_complete(&env, &["projectclone", "completions", "fi"]),
        vec!["fish"]
    );
    // Global options complete after a subcommand too.
    assert!(bash_complete(&env, &["projectclone", "backup", "--re"]).contains(&"--repo".to_string()));
}

#[test]
fn zsh_and_fish_scripts_name_the_commands() {
    let env = Env::new();
    let zsh = env.run(["completions", "zsh"]).success().stdout;
    assert!(
        zsh.starts_with("#compdef projectclone"),
        "{}",
        &zsh[..zsh.len().min(200)]
    );
    let fish = env.run(["completions", "fish"]).success().stdout;
    assert!(
        fish.contains("complete -c projectclone"),
        "{}",
        &fish[..fish.len().min(200)]
    );
    let bash = env.run(["completions", "bash"]).success().stdout;
    for script in [&bash, &zsh, &fish] {
        for cmd in ["backup", "restore", "snapshots", "prune", "completions", "man"] {
            assert!(script.contains(cmd), "{cmd} missing");
        }
        assert!(!script.contains("old-syntax"), "the hidden command stays hidden");
    }
    env.run(["completions", "tcsh"]).code(2);
}

/// Completions and man pages come from the arguments alone: they work without a
/// repository, a password, or a readable config file.
#[test]
fn completions_and_man_need_no_repository_or_config() {
    let env = Env::new();
    write(
        env.path("xdg-config/projectclone/config.toml"),
        b"this is = = not toml\n",
    );
    env.run(["snapshots"]).failure();
    for args in [vec!["completions", "bash"], vec!["man"]] {
        let out = run(env.bare().args(&args)).success();
        assert!(out.stdout.len() > 1000, "{args:?}: {} bytes", out.stdout.len());
        assert_eq!(out.stderr, "", "{args:?}");
    }
}

/// Render roff with man-db's `man -l -` (no pager); its exit code and plain text.
fn render_man(roff: &[u8]) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("man (man-db) is installed; .ci/install-servers installs it");
    child.stdin.take().unwrap().write_all(roff).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.stderr.is_empty(),
        "man warned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn man_page_renders_with_man_and_lists_the_commands() {
    let env = Env::new();
    let page = env.run(["man"]).success();
    assert!(
        page.stdout.starts_with(".ie") || page.stdout.contains(".TH projectclone 1"),
        "roff: {}",
        &page.stdout[..200]
    );
    let (code, text) = render_man(&page.raw_stdout);
    assert_eq!(code, 0, "{text}");
    for needle in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "SUBCOMMANDS",
        "projectclone-backup(1)",
        "projectclone-restore(1)",
        "projectclone-man(1)",
        "--repo",
        "Exit codes",
        "VERSION",
    ] {
        assert!(text.contains(needle), "the rendered page lacks {needle:?}:\n{text}");
    }
    assert!(!text.contains("old-syntax"), "{text}");
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let env = Env::new();
    let dir = env.path("man1");
    env.run(["man".as_ref(), "--dir".as_ref(), dir.as_os_str()]).success();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for want in [
        "projectclone.1",
        "projectclone-backup.1",
        "projectclone-restore.1",
        "projectclone-repair-index.1",
        "projectclone-key-passwd.1",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.contains("old-syntax") || n.contains("-help")),
        "{names:?}"
    );
    let backup = std::fs::read(dir.join("projectclone-backup.1")).unwrap();
    let (code, text) = render_man(&backup);
    assert_eq!(code, 0, "{text}");
    for needle in ["NAME", "projectclone-backup", "--exclude", "--tag", "EXTRA", "Examples"] {
        assert!(text.contains(needle), "backup page lacks {needle:?}:\n{text}");
    }
}
