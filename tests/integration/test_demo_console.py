"""``rostersync demo --console``: the story, then the admin console served on its data with a throwaway token."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import requests

from tests.clikit import ROSTERSYNC

TOKEN_LINE = re.compile(r"^  ([A-Za-z0-9_-]{40,})$")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cookies_of(response: requests.Response) -> str:
    """The cookies a browser keeps (``Secure`` ones too: browsers keep them for http://localhost)."""
    raw = response.raw.headers.getlist("Set-Cookie")
    return "; ".join(value.split(";")[0] for value in raw if not value.split(";")[0].endswith("="))


def test_the_demo_serves_the_console_on_its_own_data_until_interrupted(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTERSYNC_")} | {"TMPDIR": str(scratch)}
    demo = subprocess.Popen(
        [ROSTERSYNC, "demo", "--students", "30", "--console", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stderr is not None
        told = []
        for line in demo.stderr:
            told.append(line)
            if TOKEN_LINE.match(line.rstrip("\n")):
                break
        assert f"open http://localhost:{port}/console/" in "".join(told), "".join(told)
        token = TOKEN_LINE.match(told[-1].rstrip("\n")).group(1)  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        form = requests.get(f"{base}/console/sign-in", timeout=10)
        guard = re.search(r'name="guard" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        signed = requests.post(
            f"{base}/console/sign-in",
            data={"guard": guard, "token": token, "next": "/console/integrations"},
            headers={"Cookie": cookies_of(form)},
            allow_redirects=False,
            timeout=10,
        )
        assert signed.status_code == 303
        table = requests.get(f"{base}/console/integrations", headers={"Cookie": cookies_of(signed)}, timeout=10)
        assert table.status_code == 200
        assert len(re.findall(r'<th scope="row"><a href="/console/integrations/\d+">', table.text)) == 9
    finally:
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=60)
    assert demo.returncode == 130  # stopped by Ctrl-C, as a shell expects; nothing failed
    assert list(scratch.iterdir()) == []  # the story's data and token are gone with it
