"""projectclone: exact, restorable, deduplicated and encrypted snapshots of project directories."""

from os import PathLike
from typing import Callable, Iterator, Optional, Sequence, Tuple, Union

__version__: str

StrPath = Union[str, PathLike[str]]
Progress = Callable[[int, int, Optional[str]], object]
"""Called with (bytes done, entries done, current path) at most ten times a second and at the end."""

class ProjectcloneError(Exception): ...
class NotFoundError(ProjectcloneError): ...
class WrongPasswordError(ProjectcloneError): ...
class LockedError(ProjectcloneError): ...
class DamagedError(ProjectcloneError): ...
class UnsupportedError(ProjectcloneError): ...
class InvalidError(ProjectcloneError): ...
class IoError(ProjectcloneError): ...

class Snapshot:
    @property
    def id(self) -> str: ...
    @property
    def time(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def paths(self) -> list[str]: ...
    @property
    def tags(self) -> list[str]: ...
    @property
    def note(self) -> Optional[str]: ...
    @property
    def parent(self) -> Optional[str]: ...
    @property
    def git_commit(self) -> Optional[str]: ...
    @property
    def git_branch(self) -> Optional[str]: ...
    @property
    def git_dirty(self) -> Optional[bool]: ...

SnapshotSpec = Union[str, Snapshot]
"""An id, a unique prefix of at least 4 hex digits, "latest", or a Snapshot."""

class BackupResult:
    @property
    def snapshot_id(self) -> Optional[str]: ...
    @property
    def files_new(self) -> int: ...
    @property
    def files_changed(self) -> int: ...
    @property
    def files_unmodified(self) -> int: ...
    @property
    def data_added(self) -> int: ...
    @property
    def errors(self) -> list[Tuple[str, str]]: ...

class RestoreResult:
    @property
    def files(self) -> int: ...
    @property
    def dirs(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def errors(self) -> list[Tuple[str, str]]: ...

class CheckResult:
    @property
    def ok(self) -> bool: ...
    @property
    def snapshots(self) -> int: ...
    @property
    def packs(self) -> int: ...
    @property
    def errors(self) -> list[str]: ...

class PruneResult:
    @property
    def forgotten(self) -> list[str]: ...
    @property
    def deleted_packs(self) -> int: ...
    @property
    def deleted_bytes(self) -> int: ...
    @property
    def waiting_packs(self) -> int: ...

class ExportResult:
    @property
    def path(self) -> str: ...
    @property
    def manifest(self) -> Optional[str]: ...
    @property
    def files(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def bytes_written(self) -> int: ...

class Change:
    @property
    def path(self) -> str: ...
    @property
    def kind(self) -> str:
        """"added", "removed", "modified", "metadata" or "type"."""
        ...

class CopyResult:
    @property
    def copied(self) -> list[Tuple[str, Optional[str]]]: ...
    @property
    def skipped(self) -> list[str]: ...
    @property
    def data_added(self) -> int: ...

class LsIterator(Iterator[Tuple[str, int]]):
    def __iter__(self) -> "LsIterator": ...
    def __next__(self) -> Tuple[str, int]: ...

class Repository:
    @staticmethod
    def open(
        location: Optional[str] = None,
        password: Optional[str] = None,
        *,
        password_file: Optional[StrPath] = None,
        password_command: Optional[str] = None,
        insecure_no_password: bool = False,
        cache_dir: Optional[StrPath] = None,
        state_dir: Optional[StrPath] = None,
        append_only: Optional[bool] = None,
        config: bool = True,
        profile: Optional[str] = None,
    ) -> "Repository":
        """Open a repository. With config (the default) what is not given comes from the
        program's environment and config files, as for the projectclone command."""
        ...
    @staticmethod
    def init(
        location: Optional[str] = None,
        password: Optional[str] = None,
        *,
        password_file: Optional[StrPath] = None,
        password_command: Optional[str] = None,
        insecure_no_password: bool = False,
        cache_dir: Optional[StrPath] = None,
        state_dir: Optional[StrPath] = None,
        kdf_memory_kib: Optional[int] = None,
        kdf_passes: Optional[int] = None,
        config: bool = True,
        profile: Optional[str] = None,
    ) -> "Repository": ...
    @property
    def location(self) -> str: ...
    @property
    def warnings(self) -> list[str]: ...
    def snapshots(self) -> list[Snapshot]: ...
    def snapshot(self, spec: SnapshotSpec) -> Snapshot: ...
    def backup(
        self,
        paths: Sequence[StrPath],
        *,
        tags: Sequence[str] = (),
        note: Optional[str] = None,
        exclude: Sequence[str] = (),
        host: Optional[str] = None,
        dry_run: bool = False,
        progress: Optional[Progress] = None,
    ) -> BackupResult: ...
    def restore(
        self,
        snapshot: SnapshotSpec,
        target: StrPath,
        *,
        include: Sequence[str] = (),
        verify: bool = False,
        dry_run: bool = False,
        progress: Optional[Progress] = None,
    ) -> RestoreResult: ...
    def ls(self, snapshot: SnapshotSpec, path: Optional[str] = None) -> LsIterator: ...
    def check(self, read_data: bool = False, *, progress: Optional[Progress] = None) -> CheckResult: ...
    def forget(
        self,
        snapshots: Sequence[SnapshotSpec] = (),
        *,
        keep_last: Optional[int] = None,
        keep_daily: Optional[int] = None,
        keep_weekly: Optional[int] = None,
        keep_monthly: Optional[int] = None,
        dry_run: bool = False,
        progress: Optional[Progress] = None,
    ) -> PruneResult: ...
    def prune(
        self,
        *,
        keep_last: Optional[int] = None,
        keep_daily: Optional[int] = None,
        keep_weekly: Optional[int] = None,
        keep_monthly: Optional[int] = None,
        dry_run: bool = False,
        progress: Optional[Progress] = None,
    ) -> PruneResult: ...
    def diff(self, old: SnapshotSpec, new: SnapshotSpec) -> list[Change]: ...
    def copy(
        self,
        to: "Repository",
        snapshots: Sequence[SnapshotSpec] = (),
        *,
        dry_run: bool = False,
        progress: Optional[Progress] = None,
    ) -> CopyResult: ...
    def export_archive(self, snapshot: SnapshotSpec, path: StrPath, *, progress: Optional[Progress] = None) -> ExportResult: ...
