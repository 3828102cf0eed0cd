"""Outputs that cannot be written (issue 14, item 3): a full disk, a quota, a file-size limit, a read-only file
system. Every command that writes ends with one `error:` line naming the output and the reason, exit code 2, and
leaves nothing half-written.

A full disk is simulated with RLIMIT_FSIZE (SIGXFSZ ignored), which makes the kernel refuse writes past the
limit with EFBIG on the real write path: Python's file objects, pyarrow's Parquet writer and the bytes polars
hands over all meet it where they would meet ENOSPC. Each case runs its command once without the limit first
(which also compiles every kernel, so the on-disk kernel cache is not what hits the limit).
"""
from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
import sys
from pathlib import Path

import pytest
from test_cli import TABLES, assert_clean_failure, run, snapshot, write_trace

from fiitedsim.atomic import atomic_path

LIMIT = 1500  # bytes: below any output of the commands below, above nothing they need to read


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Writes past `limit` bytes of a file fail with EFBIG in this process (and its children) for the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@pytest.fixture
def trace(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    return write_trace(folder / "trace.parquet", tables=TABLES)


def _sweep_file(tmp_path: Path, trace: Path) -> Path:
    path = tmp_path / "in" / "s.toml"
    path.write_text(f'[sweep]\ntraces = ["{trace}"]\npolicies = ["full", "uniform-dim"]\nbudgets = [0.5]\n')
    return path


TRAIN = ["train", "--samples", "600", "--fields", "2", "--rows", "50", "--batch", "128", "--page-bytes", "256", "-q"]

COMMANDS = {
    # name: (arguments given the trace and an output folder `o`, the output named in the error)
    "replay --out": (lambda t, o: ["replay", t, "--policy", "fiited,full", "--budget", "0.5", "--interval", "3",
                                   "--out", o / "run", "-q"],
                     "run"),
    "replay --report": (lambda t, o: ["replay", t, "--policy", "full", "--budget", "0.5", "--report", o / "r.html",
                                      "-q"], "r.html"),
    "generate": (lambda t, o: ["generate", o / "g.parquet", "--table-count", "2", "--rows", "100", "--steps", "3",
                               "--batch", "64", "--dim", "8", "--chunk", "4", "-q"], "g.parquet"),
    "import csv": (lambda t, o: ["import", "csv", t.parent / "l.csv", "-o", o / "i.parquet", "-q"], "i.parquet"),
    "train --out": (lambda t, o: [*TRAIN, "--out", o / "t"], "t"),
    "train --emit-trace": (lambda t, o: [*TRAIN, "--emit-trace", o / "e.parquet"], "e.parquet"),
    "sweep": (lambda t, o: ["sweep", _sweep_file(t.parent.parent, t), "--out", o / "sw", "--workers", "1", "-q"],
              "sw"),
}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name == "sweep" else name
                                  for name in COMMANDS])  # the sweep starts a Dask cluster
def test_a_full_disk_is_one_error_line_and_leaves_nothing(monkeypatch, capsys, tmp_path, trace, name):
    (trace.parent / "l.csv").write_text("step,table,row\n" + "".join(f"{i // 50},{i % 2},{i % 37}\n"
                                                                     for i in range(400)))
    args, named = COMMANDS[name]
    warm = tmp_path / "warm"
    warm.mkdir()
    result = run(monkeypatch, capsys, *args(trace, warm))
    assert result.code == 0, result.err
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path / "in")
    with file_size_limit(LIMIT):
        result = run(monkeypatch, capsys, *args(trace, out))
    line = assert_clean_failure(result, "cannot write", named, "File too large", "nothing was written")
    assert "Traceback" not in line
    left = [p for p in out.rglob("*") if not p.is_dir()]
    assert left == [], left   # no output, no temporary leftover (a sweep keeps its empty points/ folder: resumable)
    assert snapshot(tmp_path / "in") == before


def test_report_of_a_results_folder_on_a_full_disk(monkeypatch, capsys, tmp_path, trace):
    run_dir = tmp_path / "run"
    assert run(monkeypatch, capsys, "replay", trace, "--policy", "full", "--budget", "0.5", "--out", run_dir,
               "-q").code == 0
    before = snapshot(run_dir)
    with file_size_limit(LIMIT):
        result = run(monkeypatch, capsys, "report", run_dir)
    assert_clean_failure(result, "cannot write", "report.html", "File too large")
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES])
def test_each_write_errno_is_named_with_what_to_do(tmp_path, code):
    """The errno values a write can meet because of where it goes, raised where the bytes are written."""
    from fiitedsim.errors import InputError

    target = tmp_path / "x.bin"
    with pytest.raises(InputError) as info, atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise OSError(code, "simulated")
    text = str(info.value)
    assert text.startswith(f"cannot write {target}: ") and "nothing was written there" in text
    assert ("free some space" in text) == (code in (errno.ENOSPC, errno.EDQUOT))
    assert list(tmp_path.iterdir()) == []


def test_other_errors_keep_their_traceback(tmp_path):
    """A bug is not a write error: it must not be dressed up as one."""
    with pytest.raises(ZeroDivisionError), atomic_path(tmp_path / "x") as tmp:
        tmp.write_text("a")
        _ = 1 / 0
    with pytest.raises(OSError) as info, atomic_path(tmp_path / "y") as tmp:
        raise OSError(errno.EIO, "io")
    assert info.value.errno == errno.EIO
    assert list(tmp_path.iterdir()) == []


def test_stdout_on_a_full_disk(monkeypatch, capsys, tmp_path):
    """`replay --json > file` on a full disk: the final flush fails; one line, exit 2, no ignored exception.

    (Simulated at the flush: with RLIMIT_FSIZE, CPython's stdout drops the rest of a partial write silently.)
    """
    import io
    import sys

    class FullDisk(io.StringIO):
        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    trace = write_trace(tmp_path / "t.parquet")
    monkeypatch.setattr(sys, "argv", ["fiitedsim", "replay", str(trace), "--policy", "full", "--budget", "0.5",
                                      "--json", "-q"])
    monkeypatch.setattr(sys, "stdout", FullDisk())
    from fiitedsim import cli

    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: cannot write to standard output: No space left on device\n"


# ---------------------------------------------------------------------------
# A read-only output folder is found before the run (issue 14, items 5 and 11)


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` refuses new entries: chmod for a normal user, the immutable attribute for root (who ignores modes)."""
    import os
    import subprocess

    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here: cannot make a folder read-only for root")
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        undo = None
    try:
        try:
            (folder / ".probe").touch()
        except OSError:
            pass
        else:
            pytest.skip("could not make a folder read-only")
        yield folder
    finally:
        if undo:
            subprocess.run(undo, check=True)
        else:
            folder.chmod(0o755)


def _never(*args, **kw):
    raise AssertionError("the run started although its output cannot be written")


READ_ONLY = {
    # name: (arguments given the trace and the read-only folder, what must not run: (module, attribute))
    "replay --out": (lambda t, o: ["replay", t, "--out", o / "run", "-q"], ("fiitedsim.replay", "replay")),
    "replay --report": (lambda t, o: ["replay", t, "--report", o / "r.html", "-q"], ("fiitedsim.replay", "replay")),
    "replay --out below": (lambda t, o: ["replay", t, "--out", o / "a" / "b", "-q"], ("fiitedsim.replay", "replay")),
    "train --out": (lambda t, o: [*TRAIN, "--out", o / "t"], ("fiitedsim.train.runner", "run_all")),
    "train --report": (lambda t, o: [*TRAIN, "--report", o / "t.html"], ("fiitedsim.train.runner", "run_all")),
    "train --emit-importance": (lambda t, o: [*TRAIN, "--emit-importance", o / "i.parquet"],
                                ("fiitedsim.train.runner", "run_all")),
    "generate": (lambda t, o: ["generate", o / "g.parquet", "-q"], ("fiitedsim.traces.generate", "TraceWriter")),
    "import csv": (lambda t, o: ["import", "csv", t.parent / "l.csv", "-o", o / "i.parquet", "-q"],
                   ("fiitedsim.traces.importers.columns", "write_trace")),
    "sweep (new folder)": (lambda t, o: ["sweep", _sweep_file(t.parent.parent, t), "--out", o / "sw", "-q"],
                           ("fiitedsim.sweep", "plan_points")),
    "sweep (the folder itself)": (lambda t, o: ["sweep", _sweep_file(t.parent.parent, t), "--out", o, "-q"],
                                  ("fiitedsim.sweep", "plan_points")),
}


@pytest.mark.parametrize("name", list(READ_ONLY))
def test_a_read_only_output_folder_is_refused_before_the_run(monkeypatch, capsys, tmp_path, trace, name):
    """A sweep into a read-only folder crashed with exit 1; replay and train found out only after the whole run."""
    import importlib

    (trace.parent / "l.csv").write_text("step,table,row\n0,0,1\n")
    args, (module, attribute) = READ_ONLY[name]
    monkeypatch.setattr(importlib.import_module(module), attribute, _never)
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        result = run(monkeypatch, capsys, *args(trace, out))
    assert_clean_failure(result, "cannot write", f"{out} is not writable", "choose a folder you can write to")
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------------------
# Leftovers of killed runs, and the user's own files in a results folder (issue 14, item 11)


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_killed_runs_temporaries_are_removed_by_the_next_write_into_the_folder(monkeypatch, capsys, tmp_path,
                                                                                  trace):
    import os
    import time

    from fiitedsim.atomic import _host

    runs = tmp_path / "runs"
    runs.mkdir()
    host, dead = _host(), _dead_pid()
    dead_dir = runs / f".demo.{host}-{dead}.abcd1234.tmp"       # a replay --out killed while writing
    dead_dir.mkdir()
    (dead_dir / "summary.json").write_text("{}")
    dead_file = runs / f".r.html.{host}-{dead}.zz99_x0q.tmp"    # a report killed while writing
    dead_file.write_text("<html")
    live = runs / f".other.{host}-{os.getpid()}.abcdefgh.tmp"  # a run still going (this process): kept
    live.write_text("x")
    elsewhere = runs / f".other.another-host-{dead}.abcdefgh.tmp"  # another machine's (a shared folder): kept
    elsewhere.write_text("x")
    older = runs / ".demo.q1w2e3r4.tmp"                         # an older fiitedsim's, untouched for two days
    older.mkdir()
    os.utime(older, (time.time() - 2 * 86400,) * 2)
    recent = runs / ".demo.a1s2d3f4.tmp"                        # an older fiitedsim's, recent: maybe running
    recent.write_text("x")
    user = runs / ".my-notes"
    user.write_text("mine")
    result = run(monkeypatch, capsys, "replay", trace, "--policy", "full", "--budget", "0.5", "--out", runs / "demo",
                 "-q")
    assert result.code == 0, result.err
    assert sorted(p.name for p in runs.iterdir()) == sorted([live.name, elsewhere.name, recent.name, user.name,
                                                             "demo"])


def test_rerunning_into_a_results_folder_keeps_the_users_files(monkeypatch, capsys, tmp_path, trace):
    """Re-running used to delete everything in the folder, a user's notes included."""
    out = tmp_path / "demo"
    args = ["replay", trace, "--budget", "0.5", "--out", out, "-q"]
    assert run(monkeypatch, capsys, *args, "--policy", "full").code == 0
    (out / "notes.md").write_text("what I changed")
    (out / "plots").mkdir()
    (out / "plots" / "a.png").write_bytes(b"\x89PNG")
    assert run(monkeypatch, capsys, "report", out).code == 0   # report.html, rendered into the folder
    report = (out / "report.html").read_bytes()
    assert run(monkeypatch, capsys, *args, "--policy", "uniform-dim").code == 0
    assert sorted(p.name for p in out.iterdir()) == ["notes.md", "plots", "report.html", "summary.json", "timeseries"]
    assert (out / "notes.md").read_text() == "what I changed" and (out / "plots" / "a.png").read_bytes() == b"\x89PNG"
    assert (out / "report.html").read_bytes() == report      # kept as it was (render it again for the new results)
    assert [p.name for p in (out / "timeseries").iterdir()] == ["uniform-dim.parquet"]   # ours: replaced whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "in"]


def test_rerunning_train_into_its_folder_keeps_the_users_files(monkeypatch, capsys, tmp_path):
    out = tmp_path / "t"
    assert run(monkeypatch, capsys, *TRAIN, "--out", out).code == 0
    (out / "notes.md").write_text("x")
    assert run(monkeypatch, capsys, *TRAIN, "--out", out, "--policy", "full").code == 0
    assert sorted(p.name for p in out.iterdir()) == ["curve.parquet", "notes.md", "train_summary.json"]
    assert "full@0.10" in (out / "train_summary.json").read_text()


# ---------------------------------------------------------------------------
# Issue 21, class F: the environment (no home folder, an unusable kernel cache, an address-space limit)

def _python(args, env=None, limit_kib=None, user=None, **kw):
    import subprocess

    def pre():
        if limit_kib is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_kib * 1024, limit_kib * 1024))
    as_user = [] if user is None else ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    return subprocess.run([*as_user, sys.executable, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600, preexec_fn=pre, **kw)


def _env(**over):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "HOME", "XDG_CACHE_HOME")}
    env.update({k: v for k, v in over.items() if v is not None})
    return env


def _others_can_read(folder: Path) -> bool:
    """Any user may list and read `folder`: it and every folder above it grant others execute (and it read)."""
    folder = folder.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in (folder, *folder.parents)) and bool(os.stat(folder).st_mode & 0o004)


@pytest.mark.slow  # subprocesses
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root (and setpriv) to run as a user without a passwd entry")
@pytest.mark.parametrize("xdg", [True, False], ids=["XDG_CACHE_HOME", "nothing"])
def test_import_without_home_or_passwd_entry(tmp_path, xdg):
    """`env -u HOME` as a user with no passwd entry crashed at import (Path.home()), even with XDG_CACHE_HOME."""
    import pwd
    import sysconfig

    import fiitedsim
    for where in (Path(fiitedsim.__file__).parent, Path(sysconfig.get_paths()["purelib"])):
        if not _others_can_read(where):
            pytest.skip(f"another user cannot read {where} (a checkout or venv in a private folder, such as "
                        "mktemp -d's): the package cannot be imported as that user")
    uid = next(u for u in range(54321, 64000) if not any(p.pw_uid == u for p in pwd.getpwall()))
    import tempfile
    cache = Path(tempfile.mkdtemp(prefix="xdg-"))  # in /tmp: the user can reach it (not pytest's root-only folder)
    os.chown(cache, uid, uid)
    try:
        p = _python(["-c", "import fiitedsim, os; print(os.environ['NUMBA_CACHE_DIR'])"], user=uid, cwd="/",
                    env=_env(XDG_CACHE_HOME=str(cache) if xdg else None))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert p.returncode == 0, p.stderr
    folder = Path(p.stdout.strip())
    assert (cache in folder.parents) if xdg else folder.parent.name == f"fiitedsim-{uid}"


@pytest.mark.slow  # subprocesses
def test_an_unusable_kernel_cache_folder_falls_back_to_a_private_one(tmp_path):
    """With a cache folder that cannot be made, Numba's kernels landed in the package's __pycache__ (as root) or
    failed with "no locator available" (other users)."""
    import fiitedsim
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    p = _python(["-c", "import fiitedsim, os; print(os.environ['NUMBA_CACHE_DIR'])"],
                env=_env(XDG_CACHE_HOME=str(blocker / "cache"), HOME=str(blocker)))
    assert p.returncode == 0, p.stderr
    folder = Path(p.stdout.strip())
    assert folder.is_dir() and os.access(folder, os.W_OK)
    assert Path(fiitedsim.__file__).parent not in folder.parents and blocker not in folder.parents


@pytest.mark.slow  # subprocesses under an address-space limit
@pytest.mark.parametrize("limit_gib, args, words", [
    (1, ["replay", "TRACE", "--policy", "fiited,lru,full", "--budget", "0.5", "--out", "OUT"], ["ulimit -v"]),
    (3, ["replay", "TRACE", "--policy", "fiited,lru,full", "--budget", "0.5", "--out", "OUT"], ["ulimit -v"]),
    (2.5, ["sweep", "SWEEP"], ["ulimit -v"]),
    (6, ["replay", "TRACE", "--policy", "full", "--budget", "0.5", "--report", "OUT.html"],
     ["ulimit -v", "HTML report"]),
])
def test_an_address_space_limit_is_one_line(tmp_path, limit_gib, args, words):
    """ulimit -v 3 GB: an abort (exit 134) with thousands of allocator lines and a temporary left behind; 1 GB:
    a hang in the BLAS start-up; a sweep printed 14k lines; V8 aborted writing a report."""
    trace = write_trace(tmp_path / "t.parquet")
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'[sweep]\ntraces = ["{trace}"]\npolicies = ["full"]\nbudgets = [0.5]\n'
                     f'out = "{tmp_path / "sw"}"\n')
    args = [{"TRACE": trace, "SWEEP": sweep, "OUT": tmp_path / "o", "OUT.html": tmp_path / "o.html"}.get(a, a)
            for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    p = _python(["-m", "fiitedsim", *args, "-q"], env=_env(HOME=os.environ.get("HOME")),
                limit_kib=int(limit_gib * 2**20))
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ") and all(w in p.stderr for w in words), \
        p.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary
# Outputs that are not regular files, and links (issue 21, class A)

FILE_OUTPUTS = {  # the file outputs of COMMANDS, each named out.parquet
    "replay --report": lambda t, p: ["replay", t, "--policy", "full", "--budget", "0.5", "--report", p, "-q"],
    "generate": lambda t, p: ["generate", p, "--table-count", "2", "--rows", "100", "--steps", "3", "--batch", "64",
                              "--dim", "8", "--chunk", "4", "-q"],
    "import csv": lambda t, p: ["import", "csv", t.parent / "l.csv", "-o", p, "-q"],
    "train --emit-trace": lambda t, p: [*TRAIN, "--emit-trace", p],
    "train --report": lambda t, p: [*TRAIN, "--report", p],
}


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("name", list(FILE_OUTPUTS))
def test_an_output_never_replaces_a_device_or_a_fifo(monkeypatch, capsys, tmp_path, trace, name, kind):
    """The device node became a 921 KB regular file, and so did a FIFO."""
    import os
    import stat
    (trace.parent / "l.csv").write_text("step,table,row\n0,0,1\n")
    target = tmp_path / "out.parquet"
    if kind == "device":
        if os.geteuid() != 0:
            pytest.skip("mknod of a device needs root")
        os.mknod(target, stat.S_IFCHR | 0o644, os.makedev(1, 7))
    else:
        os.mkfifo(target)
    mode = os.lstat(target).st_mode
    result = run(monkeypatch, capsys, *FILE_OUTPUTS[name](trace, target))
    words = {"fifo": "a FIFO (named pipe)", "device": "a character device"}[kind]
    assert_clean_failure(result, str(target), words, "replaces only regular files")
    assert os.lstat(target).st_mode == mode


@pytest.mark.parametrize("name", list(FILE_OUTPUTS))
def test_an_output_through_a_link_replaces_the_file_it_points_to(monkeypatch, capsys, tmp_path, trace, name):
    """The link was replaced and the file it named left untouched: now the link stays and its file is written."""
    (trace.parent / "l.csv").write_text("step,table,row\n" + "".join(f"{i // 50},{i % 2},{i % 37}\n"
                                                                     for i in range(400)))
    real = tmp_path / "real" / "file.parquet"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "out.parquet"
    link.symlink_to(real)
    result = run(monkeypatch, capsys, *FILE_OUTPUTS[name](trace, link))
    assert result.code == 0, result.err
    assert link.is_symlink() and link.resolve() == real
    assert real.read_bytes() != b"old" and real.stat().st_size > 100
    assert [p.name for p in tmp_path.iterdir()] == [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
