"""The Python package, end to end on real temporary trees and repositories."""

import os
import subprocess
import threading

import pytest

import projectclone as pc

KDF = dict(kdf_memory_kib=1024, kdf_passes=1)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A project tree, a repository location, and cache and state folders of the test's own."""
    for var in (
        "PROJECTCLONE_PASSWORD",
        "PROJECTCLONE_PASSWORD_FILE",
        "PROJECTCLONE_PASSWORD_COMMAND",
        "PROJECTCLONE_REPO",
        "PROJECTCLONE_CACHE_DIR",
        "PROJECTCLONE_PROFILE",
    ):
        monkeypatch.delenv(var, raising=False)
    # The program's config files and memory of this test's own.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('hello')\n")
    (project / "data.bin").write_bytes(os.urandom(300_000))
    (project / "build").mkdir()
    (project / "build" / "out.o").write_bytes(b"object")
    dirs = dict(cache_dir=str(tmp_path / "cache"), state_dir=str(tmp_path / "state"))
    return dict(tmp=tmp_path, project=project, location=str(tmp_path / "repo"), dirs=dirs)


def new_repo(env, password="pw"):
    return pc.Repository.init(env["location"], password, **env["dirs"], **KDF)


def test_backup_list_restore_check_forget_and_export(env):
    repo = new_repo(env)
    calls = []
    first = repo.backup(
        [env["project"]],
        tags=["nightly"],
        note="first",
        exclude=["build/"],
        progress=lambda b, e, p: calls.append((b, e, p)),
    )
    assert first.snapshot_id and len(first.snapshot_id) == 64
    assert first.files_new == 2 and first.errors == []
    assert calls and calls[-1][0] >= 300_000, calls

    snaps = repo.snapshots()
    assert [s.id for s in snaps] == [first.snapshot_id]
    assert snaps[0].tags == ["nightly"] and snaps[0].note == "first"
    assert snaps[0].paths == [str(env["project"])]
    assert repo.snapshot("latest").id == first.snapshot_id
    assert repo.snapshot(first.snapshot_id[:8]).id == first.snapshot_id

    listed = dict(repo.ls(snaps[0]))
    assert listed["/data.bin"] == 300_000
    assert "/src/main.py" in listed and not any("build" in p for p in listed)

    second = repo.backup([env["project"]], exclude=["build/"])
    assert (second.files_new, second.files_changed, second.files_unmodified) == (0, 0, 2)
    assert repo.snapshot("latest").parent == first.snapshot_id

    target = env["tmp"] / "restored"
    r = repo.restore(snaps[0], target, include=["src/**"], verify=True)
    assert (r.files, r.errors) == (1, [])
    assert (target / "src" / "main.py").read_text() == "print('hello')\n"
    assert not (target / "data.bin").exists()
    repo.restore("latest", env["tmp"] / "all")
    assert (env["tmp"] / "all" / "data.bin").read_bytes() == (env["project"] / "data.bin").read_bytes()

    assert repo.check(read_data=True).ok

    archive = env["tmp"] / "project.tar.gz"
    e = repo.export_archive("latest", archive)
    assert e.files == 2 and archive.exists() and e.manifest
    # The manifest checks the members once unpacked.
    unpack = env["tmp"] / "unpacked"
    unpack.mkdir()
    subprocess.run(["tar", "-xzf", archive, "-C", unpack], check=True)
    out = subprocess.run(["sha256sum", "-c", e.manifest], cwd=unpack, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

    dry = repo.forget(keep_last=1, dry_run=True)
    assert dry.forgotten == [first.snapshot_id] and len(repo.snapshots()) == 2
    done = repo.forget([first.snapshot_id])
    assert done.forgotten == [first.snapshot_id]
    assert [s.id for s in repo.snapshots()] == [second.snapshot_id]
    assert repo.prune().forgotten == []
    assert repo.check(read_data=True).ok


def test_errors_are_exceptions_by_kind(env):
    with pytest.raises(pc.NotFoundError):
        pc.Repository.open(env["location"], "pw", **env["dirs"])
    repo = new_repo(env)
    with pytest.raises(pc.WrongPasswordError) as wrong:
        pc.Repository.open(env["location"], "guess", **env["dirs"])
    assert "wrong password" in str(wrong.value) and "--password-file" not in str(wrong.value)
    assert issubclass(pc.WrongPasswordError, pc.ProjectcloneError)
    with pytest.raises(pc.NotFoundError):
        repo.snapshot("deadbeef")
    with pytest.raises(pc.InvalidError):
        repo.restore(42, env["tmp"] / "t")
    with pytest.raises(pc.InvalidError):
        pc.Repository.open(env["location"], "pw", password_file="f", **env["dirs"])
    with pytest.raises(pc.InvalidError):
        new_repo(env)  # already exists
    with pytest.raises(pc.ProjectcloneError):
        repo.backup([env["tmp"] / "no-such-dir"])


def test_a_raising_progress_callback_is_raised_after_the_work(env):
    repo = new_repo(env)

    def boom(b, e, p):
        raise RuntimeError("from the callback")

    with pytest.raises(RuntimeError, match="from the callback"):
        repo.backup([env["project"]], progress=boom)
    # The backup itself completed.
    assert len(repo.snapshots()) == 1


def test_the_environment_gives_the_password_and_the_cache(env, monkeypatch):
    new_repo(env)
    with pytest.raises(pc.WrongPasswordError):
        pc.Repository.open(env["location"], **env["dirs"])
    monkeypatch.setenv("PROJECTCLONE_PASSWORD", "pw")
    pc.Repository.open(env["location"], **env["dirs"])
    cache = env["tmp"] / "env-cache"
    monkeypatch.setenv("PROJECTCLONE_CACHE_DIR", str(cache))
    pc.Repository.open(env["location"], state_dir=env["dirs"]["state_dir"])
    assert cache.is_dir() and any(cache.iterdir())
    pw = env["tmp"] / "pw.txt"
    pw.write_text("pw\n")
    monkeypatch.delenv("PROJECTCLONE_PASSWORD")
    pc.Repository.open(env["location"], password_file=pw, **env["dirs"])


def test_the_gil_is_released_while_the_library_works(env):
    """open() waits for a password command that reads a FIFO the main thread writes: with
    the GIL held during open(), the main thread could never write and open() never end."""
    new_repo(env)
    fifo = env["tmp"] / "pw.fifo"
    os.mkfifo(fifo)
    result = {}

    def opener():
        try:
            result["repo"] = pc.Repository.open(env["location"], password_command=f"cat {fifo}", **env["dirs"])
        except Exception as e:  # reported below
            result["error"] = e

    t = threading.Thread(target=opener, daemon=True)
    t.start()
    with open(fifo, "w") as f:
        f.write("pw\n")
    t.join(timeout=120)
    assert not t.is_alive(), "open() never returned: the GIL was held"
    assert "repo" in result, result


def test_large_listings_are_iterators(env):
    many = env["project"] / "many"
    many.mkdir()
    for i in range(3000):
        (many / f"f{i:05}").write_text(str(i))
    repo = new_repo(env)
    repo.backup([env["project"]])
    it = repo.ls("latest", "many")
    first = next(it)
    assert first == ("/many", 0) or first[0].startswith("/many")
    # The listing thread holds the repository until the iterator is done: another call
    # meanwhile is an error that says so, not a deadlock.
    with pytest.raises(pc.ProjectcloneError, match="busy"):
        repo.snapshots()
    rest = list(it)
    files = [p for p, _ in [first] + rest if p.startswith("/many/")]
    assert len(files) == 3000
    assert len(repo.snapshots()) == 1


def write_user_config(env, text):
    f = env["tmp"] / "config" / "projectclone" / "config.toml"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)
    return f


def test_the_config_files_give_location_password_cache_and_backup_settings(env):
    pw = env["tmp"] / "pw.txt"
    pw.write_text("from-file\n")
    cache = env["tmp"] / "config-cache"
    work = env["tmp"] / "work-repo"
    write_user_config(
        env,
        f"""
repo = "{env['location']}"
password-file = "{pw}"
cache-dir = "{cache}"
exclude = ["build/"]
tags = ["everyday"]

[profile.work]
repo = "{work}"
""",
    )
    # No location and no password given: both from the user file, as the program takes them.
    repo = pc.Repository.init(**KDF)
    assert repo.location == env["location"]
    assert cache.is_dir() and any(cache.iterdir())
    done = repo.backup([env["project"]])
    snap = repo.snapshot(done.snapshot_id)
    assert snap.tags == ["everyday"]
    assert not any("build" in p for p, _ in repo.ls("latest"))
    # A list given here replaces the file's, as a flag does.
    repo.backup([env["project"]], tags=["manual"], exclude=["*.bin"])
    listed = dict(repo.ls("latest"))
    assert repo.snapshot("latest").tags == ["manual"]
    assert "/build/out.o" in listed and "/data.bin" not in listed

    # The project's own file is above the user file for what it backs up.
    (env["project"] / ".projectclone.toml").write_text('tags = ["app"]\nexclude-larger-than = "100K"\n')
    repo.backup([env["project"]])
    listed = dict(repo.ls("latest"))
    assert repo.snapshot("latest").tags == ["app"]
    assert "/data.bin" not in listed and "/src/main.py" in listed

    # A profile chooses another repository; the file's password still applies.
    other = pc.Repository.init(profile="work", **KDF)
    assert other.location == str(work) and other.snapshots() == []
    with pytest.raises(pc.InvalidError, match="nope"):
        pc.Repository.open(profile="nope")

    # The environment is above the files; config=False ignores both.
    os.environ["PROJECTCLONE_REPO"] = str(work)
    try:
        assert pc.Repository.open().location == str(work)
    finally:
        del os.environ["PROJECTCLONE_REPO"]
    with pytest.raises(pc.InvalidError, match="no location"):
        pc.Repository.open(config=False)
    with pytest.raises(pc.WrongPasswordError):
        pc.Repository.open(env["location"], config=False, **env["dirs"])

    # A bad file is an error naming the file and line, even for a key this call does not use.
    write_user_config(env, 'repo = "x"\ncompression = "brotli"\n')
    with pytest.raises(pc.InvalidError, match=r"config.toml:2"):
        pc.Repository.open()


def test_append_only_from_a_config_file_refuses_deletion(env):
    repo = new_repo(env)
    repo.backup([env["project"]])
    (env["tmp"] / "work").mkdir()
    (env["tmp"] / "work" / ".projectclone.toml").write_text("append-only = true\n")
    os.chdir(env["tmp"] / "work")
    ro = pc.Repository.open(env["location"], "pw", **env["dirs"])
    ro.backup([env["project"]])
    with pytest.raises(pc.InvalidError, match="append-only"):
        ro.forget(["latest"])
    assert ro.forget(keep_last=1, dry_run=True).forgotten
    assert len(ro.snapshots()) == 2
    with pytest.raises(pc.InvalidError, match="append-only"):
        pc.Repository.open(env["location"], "pw", append_only=True, config=False, **env["dirs"]).prune()
    # Told otherwise, it deletes.
    rw = pc.Repository.open(env["location"], "pw", append_only=False, **env["dirs"])
    assert len(rw.forget(keep_last=1).forgotten) == 1


def test_diff_copy_and_git_state(env):
    subprocess.run(["git", "init", "-q", "-b", "main", env["project"]], check=True)
    git = ["git", "-C", env["project"], "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "one"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

    repo = new_repo(env)
    first = repo.backup([env["project"]], exclude=[".git/"])
    snap = repo.snapshot(first.snapshot_id)
    assert (snap.git_commit, snap.git_branch, snap.git_dirty) == (head, "main", False)

    (env["project"] / "src" / "main.py").write_text("print('changed')\n")
    (env["project"] / "new.txt").write_text("new")
    (env["project"] / "build" / "out.o").unlink()
    repo.backup([env["project"]], exclude=[".git/"])
    assert repo.snapshot("latest").git_dirty is True
    changes = {c.path: c.kind for c in repo.diff(first.snapshot_id, "latest")}
    assert changes["/new.txt"] == "added"
    assert changes["/src/main.py"] == "modified"
    assert changes["/build/out.o"] == "removed"
    assert "/data.bin" not in changes

    offsite = pc.Repository.init(str(env["tmp"] / "offsite"), "other", **env["dirs"], **KDF)
    dry = repo.copy(offsite, dry_run=True)
    assert len(dry.copied) == 2 and all(to is None for _, to in dry.copied) and offsite.snapshots() == []
    copied = repo.copy(offsite)
    assert len(copied.copied) == 2 and copied.data_added > 300_000
    again = repo.copy(offsite, ["latest"])
    assert again.copied == [] and len(again.skipped) == 1
    with pytest.raises(pc.InvalidError, match="same Repository"):
        repo.copy(repo)
    out = env["tmp"] / "from-offsite"
    offsite.restore("latest", out)
    assert (out / "data.bin").read_bytes() == (env["project"] / "data.bin").read_bytes()
    assert (out / "src" / "main.py").read_text() == "print('changed')\n"
    assert offsite.check(read_data=True).ok
