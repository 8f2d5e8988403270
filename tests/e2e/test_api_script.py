"""The README's Python API example runs when saved as a script; without its ``__main__`` guard
the build stops with a message saying so, promptly and leaving no process behind."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.sessions import kill_session, wait_until_gone

from imagenet_prep import verify

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
GUARD = 'if __name__ == "__main__":'
ADVICE = f"put the code that starts the build under `{GUARD}`"


def example() -> str:
    """The first Python block of the README's "Python API" section."""
    section = README.read_text("utf-8").split("\n## Python API\n", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert found is not None, "the Python API section has no Python example"
    return found.group(1)


def adapted(code: str, download: Path, out: Path) -> str:
    """The example on this test's download and output, with a pool of two workers (the
    default is one per core, and one worker builds in the calling process)."""
    assert code.count('"demo/download"') == 1 and code.count('"/tmp/prepared-api"') == 2
    code = code.replace('"demo/download"', repr(str(download)))
    code = code.replace('"/tmp/prepared-api"', repr(str(out)))
    return code.replace("BuildConfig(", "BuildConfig(workers=2, ", 1)


def unguarded(code: str) -> str:
    """The example as a script that starts the build at its top level."""
    head, guarded = code.split(GUARD + "\n", 1)
    return head + textwrap.dedent(guarded)


def run(script: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``script`` in a session of its own; return its outcome and how long its processes
    (fork server, workers, resource tracker) outlived it."""
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=script.parent,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=120)
        took, left = wait_until_gone(proc.pid, 10)
        assert not left, f"still running {took:.1f} s after the script ended: {left}"
    finally:
        kill_session(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), took


def test_the_readme_example_runs_as_a_script(small_download: Path, tmp_path: Path) -> None:
    code = example()
    assert GUARD in code
    out = tmp_path / "prepared-api"
    script = tmp_path / "api.py"
    script.write_text(adapted(code, small_download, out))
    done, _ = run(script)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "'train': 48" in done.stdout
    assert verify(out).ok


def test_without_the_guard_the_build_says_what_is_wrong(
    small_download: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prepared-api"
    script = tmp_path / "api.py"
    script.write_text(unguarded(adapted(example(), small_download, out)))
    done, took = run(script)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("imagenet_prep.executors.local.UnguardedMain: ")
    assert str(script) in last and ADVICE in last
    assert "worker process died" not in done.stderr
    # Each worker that got as far as the build says so too, naming the line.
    assert f"imported the main module ({script}, line " in done.stderr
    assert took < 5
    assert not (out / "manifest.json").exists()
