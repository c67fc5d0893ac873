"""Start a real S3-protocol HTTP server (moto_server) on a free loopback port for tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HOST = "127.0.0.1"
TEST_CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _server_command(host: str, port: int) -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    if script.is_file():
        return [str(script), "-H", host, "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]


def _answers(url: str) -> bool:
    # No proxies: a proxy from the environment must not answer for a loopback server.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP status means the server is up
    except OSError:
        return False


@contextlib.contextmanager
def running_moto_server(host: str = HOST, timeout_s: float = 20.0) -> Iterator[str]:
    """Yield the base URL of a fresh moto_server; ``RuntimeError`` with its stderr if it does not start."""
    port = _free_port(host)
    url = f"http://{host}:{port}"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    # stderr goes to a file: a pipe nobody reads would block the server once its buffer fills.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(_server_command(host, port), stdout=subprocess.DEVNULL, stderr=log, env=env)
        try:
            deadline = time.monotonic() + timeout_s
            while not _answers(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    state = (
                        f"exited with status {proc.returncode}"
                        if proc.returncode is not None
                        else f"did not answer within {timeout_s:.0f} s"
                    )
                    log.seek(0)
                    stderr = log.read().decode(errors="replace")[-4000:]
                    raise RuntimeError(
                        f"moto_server on {url} {state} (is `moto[server]` installed?); stderr:\n{stderr}"
                    )
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
