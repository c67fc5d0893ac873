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
from typing import Any

HOST = "127.0.0.1"
TEST_CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}


def s3_env(endpoint: str) -> dict[str, str]:
    """The ``DSPROC_S3_*`` variables that point a dsproc process at the test server."""
    return {
        "DSPROC_S3_ENDPOINT_URL": endpoint,
        "DSPROC_S3_ACCESS_KEY_ID": TEST_CREDENTIALS["access_key_id"],
        "DSPROC_S3_SECRET_ACCESS_KEY": TEST_CREDENTIALS["secret_access_key"],
    }


def s3_client(endpoint: str) -> Any:
    """A boto3 client for the test server, for a test to put and read objects directly."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=TEST_CREDENTIALS["access_key_id"],
        aws_secret_access_key=TEST_CREDENTIALS["secret_access_key"],
        region_name=TEST_CREDENTIALS["region"],
    )


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
