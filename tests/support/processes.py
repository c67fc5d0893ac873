"""Run the real ``dsproc`` commands as subprocesses for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def dsproc_process(args: list[str], env: dict[str, str], log_name: str) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m dsproc.cli ARGS`` with ``env``; its log is printed if the test fails."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("DSPROC_")}
    full_env = {**inherited, **env, "PYTHONUNBUFFERED": "1"}
    with tempfile.NamedTemporaryFile(prefix=f"{log_name}-", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dsproc.cli", *args], stdout=log, stderr=subprocess.STDOUT, env=full_env
        )
    proc.log_path = log.name  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        text = Path(log.name).read_text(errors="replace")
        print(f"----- {log_name} log (last 4000 chars) -----\n{text[-4000:]}")
        os.unlink(log.name)


def wait_log(proc: subprocess.Popen[bytes], text: str, timeout_s: float = 90.0) -> None:
    """Wait until a process started by ``dsproc_process`` has written ``text`` to its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dsproc exited early with status {proc.returncode}")
        if text in Path(proc.log_path).read_text(errors="replace"):  # type: ignore[attr-defined]
            return
        time.sleep(0.2)
    raise RuntimeError(f"{text!r} did not appear in the log within {timeout_s} s")


def create_key(project: str, env: dict[str, str], data_dir: Path | None = None) -> str:
    """``dsproc keys create --project P``; returns the token it prints alone on its last line."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("DSPROC_")}
    args = [sys.executable, "-m", "dsproc.cli", "keys", "create", "--project", project]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    done = subprocess.run(
        args, env={**inherited, **env}, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"dsproc keys create failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def wait_http_ready(base_url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dsproc exited early with status {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/health/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"dsproc did not answer at {base_url} within {timeout_s} s")


def poll_task(
    base_url: str, project: str, task_id: str, timeout_s: float = 120.0, headers: dict[str, str] | None = None
) -> dict:
    """Poll a task until it is terminal (2, 3 or 4)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task = httpx.get(
            f"{base_url}/v2/{project}/processor-tasks/{task_id}", timeout=5, headers=headers
        ).json()
        if task.get("status") in (2, 3, 4):
            return task
        time.sleep(0.25)
    raise AssertionError(f"task {task_id} did not finish within {timeout_s} s: {task}")
