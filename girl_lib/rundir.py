"""The run directory, a contract: ``runs/<profile>/`` with one folder per stage.

``data/ sft/ reward/ ppo/ genrec/ eval/`` are made by ``girl run``; ``grpo/`` and ``rloo/`` by
``girl ppo --algo grpo|rloo``; ``beta_sweep/beta_<β>/`` by :func:`girl_lib.pipeline.beta_sweep`
(each a run dir of its own, linking the stages it shares). ``report.md`` and its plots sit at
the top.

A stage's folder is *complete* when it holds ``manifest.json``, written last and atomically.
So a stage killed midway leaves no manifest, and the next ``girl run`` redoes it instead of
reading half-written files. A manifest records what the stage was made from (``inputs``: the
settings that shaped it and the manifest digests of the stages it read, see
:mod:`girl_lib.pipeline`), so a complete stage whose inputs changed is redone. This module is the
one place that knows folder names, manifests, atomic writes, the writer's lock
(:func:`lock_run_dir`) and how a complete stage is set aside while it is redone
(:func:`set_aside`, :func:`restore_previous`).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from .errors import GirlError

try:  # POSIX: an advisory lock the kernel drops when its process dies, however it dies
    import fcntl
except ImportError:  # pragma: no cover - Windows: a pid file instead
    fcntl = None

MANIFEST = "manifest.json"
LOCK = ".girl.lock"  # in the run dir: pid and host of the one process writing there
STARTED = ".inputs.json"  # in a stage folder while the stage runs: the inputs its partial output comes from
ADAPTER = "adapter"  # a trained LoRA inside a stage folder (save_pretrained: weights, config, tokenizer)
# Stage name (the CLI command) -> its folder under the run dir.
STAGE_FOLDERS = {"data": "data", "sft": "sft", "reward": "reward", "ppo": "ppo", "grpo": "grpo",
                 "rloo": "rloo", "genrec": "genrec", "evaluate": "eval"}


def default_run_dir(profile_name: str) -> Path:
    return Path("runs") / profile_name


def ensure_writable(run_dir: Path) -> Path:
    """Create ``run_dir`` and prove we can write there, or fail with a one-line fix."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise GirlError(f"run dir '{run_dir}' is not writable ({exc.strerror or exc}); "
                        "pass --run-dir to a folder you can write to") from None
    return run_dir


def stage_dir(run_dir: Path, stage: str) -> Path:
    """The folder of ``stage`` (a name of :data:`STAGE_FOLDERS`) under ``run_dir``."""
    return Path(run_dir) / STAGE_FOLDERS[stage]


def require_complete(run_dir: Path, stage: str) -> Path:
    """The folder of ``stage`` if it is complete, else a one-line error naming the fix."""
    out = stage_dir(run_dir, stage)
    if not is_complete(out):
        command = "ppo --algo " + stage if stage in ("grpo", "rloo") else stage
        raise GirlError(f"stage '{stage}' has no complete output in {out}; run 'girl {command}' "
                        "with the same --profile/--run-dir first (or 'girl run')")
    return out


def link_stages(src_run_dir: Path, dst_run_dir: Path, stages) -> None:
    """Make ``dst_run_dir`` share the complete ``stages`` of ``src_run_dir`` (symlinks, else copies)."""
    for stage in stages:
        src, dst = require_complete(src_run_dir, stage), stage_dir(dst_run_dir, stage)
        if dst.exists() or dst.is_symlink():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            dst.symlink_to(src.resolve(), target_is_directory=True)
        except OSError:  # no symlinks (some Windows setups): a copy
            shutil.copytree(src, dst)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, flush it to disk, then rename over ``path``.
    A kill at any moment leaves either the old file or the new one, never half a file. The file
    gets the permissions an ordinary new file would (``mkstemp`` alone makes it private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result file is as readable as any other
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno and not exc.filename:  # name the file (a full disk, say)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def is_complete(stage_dir: Path) -> bool:
    return (Path(stage_dir) / MANIFEST).is_file()


def read_manifest(stage_dir: Path) -> dict | None:
    """The stage's manifest (None when the stage is not complete); a damaged one is a one-line error."""
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        manifest = exc
    if not isinstance(manifest, dict):
        raise GirlError(f"'{path}' is damaged (not a JSON object); delete it and the stage counts as not "
                        "complete, so the next run redoes it")
    return manifest


def write_manifest(stage_dir: Path, stage: str, profile: str, seconds: float, result: dict | None,
                   inputs: dict | None = None) -> dict:
    """Mark ``stage_dir`` complete. Call only after every output file is in place.

    A stage may have written its own manifest (the data stage records hashes and its config);
    its keys are kept and the pipeline's are added: ``inputs`` (what the stage was made from) and
    a fresh ``run_id``, so every run of a stage has a manifest digest of its own.
    """
    manifest = read_manifest(stage_dir) or {}
    manifest |= {
        "stage": stage,
        "profile": profile,
        "seconds": round(seconds, 2),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_id": uuid.uuid4().hex,
        "result": result or {},
    }
    if inputs is not None:
        manifest["inputs"] = inputs
    atomic_write_json(Path(stage_dir) / MANIFEST, manifest)
    return manifest


def manifest_digest(stage_dir: Path) -> str | None:
    """sha256 of the stage's manifest (canonical JSON), or None when the stage is not complete.

    Every run writes a manifest with a new ``run_id``, so a redone stage always gets a new
    digest, while a linked or copied stage folder keeps its own.
    """
    manifest = read_manifest(stage_dir)
    if manifest is None:
        return None
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_json_or_none(path: Path) -> dict | None:
    """A JSON object from ``path``; None when it is missing or not a readable JSON object."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


# ---------------------------------------------------------------------------------------------
# Redoing a complete stage: the old output is set aside until the new one is complete
# ---------------------------------------------------------------------------------------------
def previous_dir(run_dir: Path, stage: str) -> Path:
    """Where the complete output of ``stage`` waits while the stage is redone."""
    return Path(run_dir) / f".{STAGE_FOLDERS[stage]}.previous"


def remove_path(path: Path) -> None:
    """Remove a folder, a file or a symlink (never following the link)."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def set_aside(run_dir: Path, stage: str) -> Path:
    """Move the stage's folder (or its link) to :func:`previous_dir`; the stage folder is then absent."""
    prev = previous_dir(run_dir, stage)
    remove_path(prev)
    os.replace(stage_dir(run_dir, stage), prev)
    return prev


def restore_previous(run_dir: Path, stage: str) -> bool:
    """Put the set-aside output back in place of whatever the failed redo left. False if none."""
    prev = previous_dir(run_dir, stage)
    if not (prev.exists() or prev.is_symlink()):
        return False
    out = stage_dir(run_dir, stage)
    remove_path(out)
    os.replace(prev, out)
    return True


def drop_previous(run_dir: Path, stage: str) -> None:
    remove_path(previous_dir(run_dir, stage))


# ---------------------------------------------------------------------------------------------
# One writer per run dir
# ---------------------------------------------------------------------------------------------
_HELD: dict[str, list] = {}  # realpath of a run dir -> [fd, depth, pid]: reentrant within a process


def _holder_text(holder: dict | None) -> str:
    if not holder or "pid" not in holder:
        return "another girl process (it has not written its pid yet)"
    cmd = f", '{holder['command']}'" if holder.get("command") else ""
    since = f", since {holder['started']}" if holder.get("started") else ""
    return f"pid {holder['pid']} on host {holder.get('host', '?')}{cmd}{since}"


def _me() -> dict:
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    command = " ".join(["girl" if prog in ("girl", "cli.py") else prog, *sys.argv[1:]])
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command[:200],
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _read_fd(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        obj = json.loads(data.decode("utf-8")) if data.strip() else None
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _write_fd(fd: int, holder: dict) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(holder) + "\n").encode("utf-8"))
    os.fsync(fd)


def _in_use(run_dir: Path, holder: dict | None) -> GirlError:
    return GirlError(f"run dir '{run_dir}' is in use by {_holder_text(holder)}: one writer at a time; wait for it "
                     "to finish, or pass another --run-dir")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _acquire_pidfile(run_dir: Path, notice: Callable[[str], None]) -> int:
    """Without ``fcntl``: a lock file created exclusively; a dead holder's file (same host) is taken over."""
    path = Path(run_dir) / LOCK
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder = read_json_or_none(path)
            if holder and holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) \
                    and not _alive(holder["pid"]):
                notice(f"[girl] run dir '{run_dir}': taking over the lock of {_holder_text(holder)}, "
                       "which is no longer running")
                path.unlink(missing_ok=True)
                continue
            raise _in_use(run_dir, holder) from None
        _write_fd(fd, _me())
        return fd
    raise _in_use(run_dir, read_json_or_none(path))


def _acquire(run_dir: Path, notice: Callable[[str], None]) -> tuple[int, bool]:
    """``(fd, flocked)``: the lock of ``run_dir`` held by this process, or a one-line GirlError."""
    path = Path(run_dir) / LOCK
    if fcntl is None:
        return _acquire_pidfile(run_dir, notice), False
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            holder = _read_fd(fd)
            for _ in range(20):  # the holder writes its pid right after locking: give it a moment
                if holder:
                    break
                time.sleep(0.05)
                holder = _read_fd(fd)
            os.close(fd)
            raise _in_use(run_dir, holder) from None
        os.close(fd)  # a file system without flock (some network mounts): the pid file instead
        return _acquire_pidfile(run_dir, notice), False
    previous = _read_fd(fd)
    if previous:  # a clean release empties the file: this holder died (killed, power cut) while writing
        notice(f"[girl] run dir '{run_dir}': taking over the lock of {_holder_text(previous)}, "
               "which ended without releasing it")
    _write_fd(fd, _me())
    return fd, True


def _release(run_dir: Path, fd: int, flocked: bool) -> None:
    try:
        if flocked:
            os.ftruncate(fd, 0)  # empty = released cleanly
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            (Path(run_dir) / LOCK).unlink(missing_ok=True)
    finally:
        os.close(fd)


@contextlib.contextmanager
def lock_run_dir(run_dir: Path, notice: Callable[[str], None] | None = None):
    """Hold the run dir's writer lock (``<run_dir>/.girl.lock``: pid, host, command) for the block.

    A second writer gets a one-line :class:`GirlError` naming the holder. The lock is an OS lock
    (``flock``) that dies with its process, so a holder killed by SIGKILL leaves a file that the
    next writer takes over, with a notice. Reentrant within one process (``girl run`` holds it
    around every stage and the report).
    """
    run_dir = Path(run_dir)
    notice = notice or (lambda text: print(text, file=sys.stderr))
    key = os.path.realpath(run_dir)
    held = _HELD.get(key)
    if held is not None and held[2] == os.getpid():
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    fd, flocked = _acquire(run_dir, notice)
    _HELD[key] = [fd, 1, os.getpid()]
    try:
        yield
    finally:
        _HELD.pop(key, None)
        _release(run_dir, fd, flocked)


def clear_manifest(stage_dir: Path) -> None:
    path = Path(stage_dir) / MANIFEST
    if path.exists():
        path.unlink()
