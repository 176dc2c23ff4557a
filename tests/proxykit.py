"""Real servers for the web app's edge tests: `rostersync web` in a process, Caddy terminating TLS in front.

Both bind ephemeral ports on 127.0.0.1; Caddy runs with its admin endpoint off, no autosave, and
its own HOME/XDG dirs under the test's tmp_path, so nothing outside the test is read or left.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests
import trustme

from tests.clikit import ROSTERSYNC

START_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def session(verify: Path | bool = False) -> requests.Session:
    browser = requests.Session()
    browser.trust_env = False
    browser.verify = str(verify) if isinstance(verify, Path) else verify
    return browser


def wait_until_serving(url: str, process: subprocess.Popen[bytes], verify: Path | bool = False) -> None:
    deadline = time.monotonic() + START_SECONDS
    with session(verify) as probe:
        while True:
            try:
                probe.get(url, timeout=2)
                return
            except requests.ConnectionError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, f"{url} did not answer in {START_SECONDS} s"
                time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> bytes:
    process.terminate()
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return stderr


@contextmanager
def rostersync_web(env: Mapping[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`rostersync web` as deploy.md runs it, on 127.0.0.1:port."""
    process = subprocess.Popen(
        [ROSTERSYNC, "web", "--host", "127.0.0.1", "--port", str(port)],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/healthz", process)
        yield process
    finally:
        stderr = stop(process)
        assert b"Traceback" not in stderr, stderr.decode(errors="replace")


def caddy_config(directory: Path, *, port: int, upstream: int, cert: Path, key: Path) -> Path:
    config = {
        "admin": {"disabled": True, "config": {"persist": False}},
        "storage": {"module": "file_system", "root": str(directory / "data")},
        "logging": {"logs": {"default": {"level": "ERROR"}}},
        "apps": {
            "http": {
                "servers": {
                    "proxy": {
                        "listen": [f"127.0.0.1:{port}"],
                        "automatic_https": {"disable": True},
                        "tls_connection_policies": [
                            {"certificate_selection": {"any_tag": ["proxy"]}, "default_sni": "127.0.0.1"}
                        ],
                        "routes": [
                            {"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": f"127.0.0.1:{upstream}"}]}]}
                        ],
                    }
                }
            },
            "tls": {"certificates": {"load_files": [{"certificate": str(cert), "key": str(key), "tags": ["proxy"]}]}},
        },
    }
    path = directory / "caddy.json"
    path.write_text(json.dumps(config))
    return path


@contextmanager
def caddy(directory: Path, *, port: int, upstream: int) -> Iterator[Path]:
    """Caddy terminating TLS on 127.0.0.1:port for 127.0.0.1:upstream; yields the CA file that trusts it."""
    binary = shutil.which("caddy")
    assert binary is not None, "Caddy is missing: `apt-get install caddy` (.ci/run installs it)"
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_path = directory / "proxy.pem", directory / "proxy.key", directory / "proxy-ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_path))
    config = caddy_config(directory, port=port, upstream=upstream, cert=cert, key=key)
    home = {name: str(directory / name.lower()) for name in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **home}
    process = subprocess.Popen(
        [binary, "run", "--config", str(config)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_until_serving(f"https://127.0.0.1:{port}/healthz", process, verify=ca_path)
        yield ca_path
    finally:
        stop(process)
