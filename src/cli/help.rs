//! Long help texts: the version line, the top-level help (the `SNAP` syntax, exit codes,
//! `--json` on failure) and each command's examples (`after_long_help`, shown by
//! `projectclone COMMAND --help` and in the man pages). Kept here so that `mod.rs` holds
//! only the attributes that point at them.

use std::sync::LazyLock;

/// `projectclone --version`: the package version, the git commit it was built from
/// (build.rs; "unknown" outside a git checkout) and the repository format version it
/// reads and writes.
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (commit {}, repository format {})",
        env!("CARGO_PKG_VERSION"),
        env!("PROJECTCLONE_GIT_COMMIT"),
        projectclone::format::FORMAT_VERSION
    )
});

pub fn version() -> &'static str {
    VERSION.as_str()
}

/// What every argument named SNAP accepts; each points here ("see SNAP in
/// `projectclone --help`").
pub const SNAP: &str = "Snapshot: latest, an id, or a unique prefix of at least 4 hex digits (see SNAP in \
                        `projectclone --help`)";

pub const TOP: &str = "\
SNAP (the snapshot argument of ls, restore, export, diff, cat, dump, stats, forget, copy):
  latest      the newest of the snapshots --project/--path/--host/--tag/--commit select; with no
              filter, inside a directory some snapshot backed up, that project's newest
              (stderr names the choice), elsewhere the newest of all
  ID          a full snapshot id (64 hex digits, as `backup` prints it)
  PREFIX      a unique prefix of an id, at least 4 hex digits (`snapshots` shows 8);
              an ambiguous prefix is an error; upper or lower case

Exit codes:
  0 ok, 1 error, 2 usage (unknown command or flag, bad value), 3 backup saved but some
  files could not be read, 10 no repository at the location, 11 locked by another
  process, 12 wrong password, 130/143 interrupted by SIGINT/SIGTERM.
  With --json a command that fails prints one object on stdout:
  {\"message_type\":\"exit_error\",\"code\":N,\"message\":\"...\"}

Examples:
  projectclone init                            create the default repository
  projectclone backup ~/src/app --tag laptop   take a snapshot (prints its id)
  projectclone snapshots                       list them
  projectclone restore latest --target /tmp/app
  projectclone export latest --archive app.tar.gz
  projectclone prune --keep-daily 7 --keep-weekly 4

More: `projectclone COMMAND --help`, `projectclone man`, and completions with
`projectclone completions bash|zsh|fish`.";

pub const INIT: &str = "\
Examples:
  projectclone init                             the default repository, $XDG_DATA_HOME/projectclone/repo
  projectclone -r /mnt/backup/repo init
  projectclone -r sftp://backup@nas/srv/backups/app init
  projectclone -r s3:http://127.0.0.1:9000/bucket init --pack-size 64
  projectclone -r /tmp/throwaway --insecure-no-password init";

pub const BACKUP: &str = "\
Examples:
  projectclone backup                           the current directory
  projectclone backup ~/src/app --note 'before the rewrite' --tag release
  projectclone backup . --exclude 'target/' --exclude '*.log' --dry-run
  pg_dump app | projectclone backup --stdin --stdin-name app.sql
  projectclone --json backup . | jq -r .snapshot_id";

pub const CAT: &str = "\
Examples:
  projectclone cat latest src/main.rs
  projectclone cat 1a2b3c4d README.md > README.old";

pub const DUMP: &str = "\
Examples:
  projectclone dump latest > app.tar
  projectclone dump 1a2b3c4d src | tar -t";

pub const SNAPSHOTS: &str = "\
Examples:
  projectclone snapshots
  projectclone snapshots --project app --host laptop
  projectclone --json snapshots | jq -r '.[].id'";

pub const MOUNT: &str = "\
DIR shows the snapshots (those --project/--path/--host/--tag/--commit select, or all):
  DIR/snapshots/<time>-<id>/        each snapshot's files, as a restore would give them
  DIR/projects/<name>/latest        a link to the project's newest snapshot
  DIR/projects/<name>/<time>-<id>   links to each of its snapshots
Read-only; file contents are read from the repository when read. The command holds a
shared lock (a prune meanwhile frees nothing it shows) and runs until Ctrl-C, SIGTERM or
`umount DIR`. Needs /dev/fuse; as another user than root, fusermount3 (package fuse3).

Examples:
  mkdir -p /tmp/snaps && projectclone mount /tmp/snaps
  projectclone mount /tmp/snaps --project app";

pub const PARITY: &str = "\
`create` groups the packs no parity covers yet (by id, --group N each) and writes --shards M
recovery objects per group into parity/: any M packs of a group, lost whole or damaged,
can then be rebuilt. The cost is about M/N of the packs' size. A group that lost a pack to
prune protects nothing fully: `create` replaces it, so run it after prune. `rebuild`
writes back the packs that are missing, of the wrong size, marked damaged by `check
--read-data`, or that do not hash to their id, each only once its hash is right.

Examples:
  projectclone parity create --group 8 --shards 2
  projectclone check --read-data || projectclone parity rebuild
  projectclone parity status";

pub const WATCH: &str = "\
The model: after a change under PATH, a backup runs once nothing has changed for
--quiet-for, but never sooner than --min-interval after the previous backup and never
later than --max-interval after the first unsaved change. No change, no backup. It backs
up once when it starts (--no-initial: not). A failed backup is said and the watch goes
on. Changes inside the repository or the cache, reads, and git's lock files are ignored.

Examples:
  projectclone watch ~/code/app
  projectclone watch --quiet-for 5m --min-interval 15m --max-interval 2h";

pub const FIND: &str = "\
Prints each matching entry as SNAPSHOT PATH (with --json: snapshot, time, path, type,
size, mtime), oldest snapshot first. Exits 1 when nothing matches.

Examples:
  projectclone find '*.sql'
  projectclone find 'src/**/config.toml' --project app
  projectclone --json find Cargo.lock | jq -r '.[].path' | sort -u";

pub const LOG: &str = "\
Each backup of a folder inside a git work tree records the commit HEAD named, its branch,
and whether the tree had uncommitted changes (`snapshots` shows it, `--json snapshots` as
`git`). `log` lists the last commits (`git log`) with the snapshots taken at each;
`snapshots --commit REV` and `restore --commit REV --target DIR` select by commit.

Examples:
  projectclone log -n 5
  projectclone snapshots --commit HEAD~1
  projectclone restore --commit v1.2 --target /tmp/app-v1.2";

pub const GIT_HOOK: &str = "\
`install` writes the work tree's post-commit hook (where git looks for it, core.hooksPath
honoured). It runs `projectclone --quiet backup WORKTREE` with the -r, --password-file,
--cache-dir and -P given to `install`; the password must be readable without a terminal
(a password file or command, or PROJECTCLONE_PASSWORD in git's environment). A commit
never fails because of it: a failed backup is said on stderr. An existing hook that is not
projectclone's is left alone, and the line to add to it is printed.

Examples:
  projectclone -r sftp://nas/backups git-hook install
  projectclone git-hook remove";

pub const LS: &str = "\
Examples:
  projectclone ls latest
  projectclone ls -l 1a2b3c4d src";

pub const DIFF: &str = "\
Examples:
  projectclone diff 1a2b3c4d latest
  projectclone --json diff 1a2b 5e6f";

pub const RESTORE: &str = "\
Examples:
  projectclone restore latest --target /tmp/app
  projectclone restore 1a2b3c4d --target . --include src/main.rs --verify
  projectclone restore latest --target /tmp/app --include '*.toml' --dry-run";

pub const EXPORT: &str = "\
Examples:
  projectclone export latest --clone /tmp/app-copy
  projectclone export latest --archive app.tar.gz --manifest
  projectclone export 1a2b3c4d --archive - --format tar.zst > app.tar.zst
  projectclone export latest --incremental ~/project_backups --keep 10
  projectclone export latest --archive app.tar.gz --recipient age1...";

pub const IMPORT: &str = "\
Examples:
  projectclone import ~/project_backups/*
  projectclone import ~/project_backups/2024-05-01_120000-app-release.tar.gz --project app --dry-run";

pub const CHECK: &str = "\
Examples:
  projectclone check
  projectclone check --read-data
  projectclone check --read-data-subset 1/7     a seventh of the data each day of the week
  projectclone check --read-data-subset 10%
  projectclone check --read-data-within 30d     daily: every pack read at least monthly

An interrupted `check --read-data` goes on where it stopped when run again within a week.";

pub const VERIFY: &str = "\
Examples:
  projectclone verify
  projectclone verify --anchor ~/anchors/laptop.anchor     kept outside the repository

A snapshot deleted behind the repository's back is found where the chain records it: every
snapshot records the heads it saw (any host, any project), and a forgotten snapshot's
tombstone keeps that record. The newest snapshots are recorded by none yet: the anchor file lists every snapshot
present and forgotten at the last verify, and the next one checks each is still there or
forgotten on purpose (a tombstone names it). Keep the anchor where whoever can write to
the repository cannot, and its short digest (printed) somewhere else again.";

pub const FORGET: &str = "\
Examples:
  projectclone forget 1a2b3c4d 5e6f7a8b
  projectclone forget --keep-last 10 --keep-daily 7 --dry-run
  projectclone forget --keep-weekly 8 --project app --prune";

pub const PRUNE: &str = "\
Examples:
  projectclone prune                            collect garbage only
  projectclone prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12
  projectclone prune --keep-last 3 --group-by project --dry-run";

pub const REPAIR: &str = "\
Examples:
  projectclone repair index
  projectclone repair snapshots --dry-run
  projectclone repair snapshots --forget-originals";

pub const UNLOCK: &str = "\
Examples:
  projectclone unlock
  projectclone unlock --remove-all              only when the lock holders are gone";

pub const KEY: &str = "\
Examples:
  projectclone key list
  projectclone key passwd --new-password-file new.pw
  PROJECTCLONE_NEW_PASSWORD=... projectclone key add
  projectclone key remove 1a2b3c4d";

pub const TRUST: &str = "\
Examples:
  projectclone trust
  projectclone trust accept                     after you re-created the repository yourself";

pub const COPY: &str = "\
Examples:
  projectclone copy --to /mnt/usb/repo --to-password-file usb.pw
  projectclone copy latest --to s3:http://127.0.0.1:9000/bucket --dry-run";

pub const STATS: &str = "\
Examples:
  projectclone stats
  projectclone stats latest";

pub const CONFIG: &str = "\
Examples:
  projectclone config                           each setting and where it came from
  projectclone --json config
  projectclone config trust ~/src/app           let its .projectclone.toml set repo and hooks
  projectclone config untrust ~/src/app";

pub const STATUS: &str = "\
Examples:
  projectclone status
  projectclone --json status";

pub const SCHEDULE: &str = "\
Examples:
  projectclone schedule install ~/src/app --every hourly --prune
  projectclone schedule install --on-calendar 'Mon..Fri 18:30' --dry-run
  projectclone schedule status
  projectclone schedule remove";

pub const COMPLETIONS: &str = "\
Install (README \"Shell completions and man pages\"):
  bash: projectclone completions bash > ~/.local/share/bash-completion/completions/projectclone
  zsh:  projectclone completions zsh > ~/.zfunc/_projectclone
        (with fpath+=(~/.zfunc); autoload -U compinit; compinit in ~/.zshrc)
  fish: projectclone completions fish > ~/.config/fish/completions/projectclone.fish";

pub const MAN: &str = "\
Examples:
  projectclone man | man -l -
  projectclone man > ~/.local/share/man/man1/projectclone.1
  projectclone man --dir ~/.local/share/man/man1   one page per command (man projectclone-backup)";
