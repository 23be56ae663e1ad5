//! `completions SHELL` (clap_complete) and `man [--dir D]` (clap_mangen): generated from
//! the same clap definition as the parser, so they never drift from it. Neither reads a
//! config file or opens a repository.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::aot::Shell;

use super::{Cli, Command};

/// Run `completions` or `man`; `None` for any other command.
pub fn run(command: &Command) -> Option<Result<u8>> {
    match command {
        Command::Completions { shell } => Some(completions(*shell)),
        Command::Man { dir } => Some(man(dir.as_deref())),
        _ => None,
    }
}

/// The command tree as users see it: the hidden `old-syntax` subcommand (the older tool's
/// syntax is reached without naming it) is left out of completions and man pages.
/// (clap_complete's fish and zsh generators and clap_mangen's `help` pages list hidden
/// subcommands, so it is not enough that clap hides it.)
fn command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("projectclone")
        .version(super::help::version())
        .about(full.get_about().cloned().unwrap_or_default())
        .after_long_help(full.get_after_long_help().cloned().unwrap_or_default())
        .subcommand_required(true)
        .arg_required_else_help(true);
    for arg in full.get_arguments() {
        cmd = cmd.arg(arg.clone());
    }
    for group in full.get_groups() {
        cmd = cmd.group(group.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd.build();
    cmd
}

fn completions(shell: Shell) -> Result<u8> {
    let mut out = Vec::new();
    clap_complete::aot::generate(shell, &mut command(), "projectclone", &mut out);
    write_stdout(&out)
}

/// The roff page of `projectclone` on stdout; with `dir`, that page and one per
/// subcommand (`projectclone-backup.1`, `projectclone-repair-index.1`, …) written there.
fn man(dir: Option<&Path>) -> Result<u8> {
    let Some(dir) = dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(command()).render(&mut out)?;
        return write_stdout(&out);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("man --dir {}: cannot create it", dir.display()))?;
    write_pages(&command(), dir).with_context(|| format!("man --dir {}: writing the pages", dir.display()))?;
    Ok(0)
}

/// The page of `cmd` and of each subcommand below it, named after their display names
/// (`projectclone-repair-index.1`), leaving out the `help` subcommands clap adds.
fn write_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write_pages(sub, dir)?;
    }
    clap_mangen::Man::new(cmd.clone()).generate_to(dir)?;
    Ok(())
}

fn write_stdout(bytes: &[u8]) -> Result<u8> {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes)
        .and_then(|()| o.flush())
        .context("writing to stdout")?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command and argument a user can see, with its path (`projectclone backup --tag`).
    fn walk(cmd: &clap::Command, path: &str, visit: &mut dyn FnMut(&str, &clap::Command)) {
        let path = format!("{path} {}", cmd.get_name());
        visit(path.trim(), cmd);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, &path, visit);
        }
    }

    #[test]
    fn the_clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Issue 18 item 4: no argument or option without a help text, in any command.
    #[test]
    fn every_argument_of_every_command_has_help() {
        let mut missing = Vec::new();
        walk(&command(), "", &mut |path, cmd| {
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                let has = |s: Option<&clap::builder::StyledStr>| s.is_some_and(|s| !s.to_string().trim().is_empty());
                if !has(arg.get_help()) && !has(arg.get_long_help()) {
                    let name = arg
                        .get_long()
                        .map(|l| format!("--{l}"))
                        .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
                    missing.push(format!("{path} {name}"));
                }
            }
            if cmd.get_about().is_none() && path != "projectclone" && cmd.get_name() != "help" {
                missing.push(format!("{path} (the command's about)"));
            }
        });
        assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
    }

    /// Global options sit under their own heading, not among each command's options.
    #[test]
    fn global_options_have_their_own_heading() {
        let cmd = command();
        let mut globals = 0;
        for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
            globals += 1;
            assert_eq!(arg.get_help_heading(), Some("Global options"), "--{:?}", arg.get_long());
        }
        assert!(globals >= 10, "only {globals} global options found");
        let backup = cmd.find_subcommand("backup").expect("backup");
        let repo = backup
            .get_arguments()
            .find(|a| a.get_id() == "repo")
            .expect("--repo propagates");
        assert_eq!(repo.get_help_heading(), Some("Global options"));
    }

    /// Each command a user can type has examples in its long help; each SNAP argument
    /// points to the one explanation of the syntax.
    #[test]
    fn every_command_has_examples_and_snap_points_to_its_syntax() {
        let top = command();
        let long = top.get_after_long_help().map(|s| s.to_string()).unwrap_or_default();
        assert!(long.contains("SNAP") && long.contains("latest") && long.contains("4 hex digits"));
        let mut without = Vec::new();
        let mut snaps = 0;
        walk(&top, "", &mut |path, cmd| {
            if path.split(' ').count() == 2 && cmd.get_name() != "help" {
                let ex = cmd.get_after_long_help().map(|s| s.to_string()).unwrap_or_default();
                if !ex.contains(&format!("projectclone {}", cmd.get_name())) {
                    without.push(path.to_string());
                }
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "snap" | "snaps" | "a" | "b") && arg.is_positional() {
                    snaps += 1;
                    let help = arg.get_help().map(|s| s.to_string()).unwrap_or_default();
                    assert!(help.contains("see SNAP"), "{path} {id}: {help}");
                }
            }
        });
        assert!(without.is_empty(), "commands without examples: {without:?}");
        assert!(snaps >= 10, "only {snaps} SNAP arguments found");
    }

    #[test]
    fn version_names_commit_and_format() {
        let v = super::super::help::version();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        let format = format!("repository format {}", projectclone::format::FORMAT_VERSION);
        assert!(v.contains("commit ") && v.contains(&format), "{v}");
    }
}
