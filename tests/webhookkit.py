"""The webhook tests' receiver process (tests/webhook_receiver.py) and change events written as the outbox
writes them (a row of ``change_events`` and the counter of ``outbox_head``).

Why a real process: the receiver must refuse connections (stopped), answer 500, and come back on the same
port, and what it accepts is checked by the ``standardwebhooks`` package itself, not by our code.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import trustme
from sqlalchemy import Engine, update

from store.db import utcnow
from store.models import ChangeEvent, OutboxHead

SCRIPT = Path(__file__).with_name("webhook_receiver.py")


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Receiver:
    """The receiver process: ``start`` (again on the same port after ``stop``), ``mode``, ``entries``."""

    folder: Path
    secret: str = field(default_factory=new_secret)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_path))
        leaf = ca.issue_cert("127.0.0.1")
        leaf.private_key_pem.write_to_path(str(self.folder / "key.pem"))
        leaf.cert_chain_pems[0].write_to_path(str(self.folder / "cert.pem"))
        for pem in leaf.cert_chain_pems[1:]:
            pem.write_to_path(str(self.folder / "cert.pem"), append=True)

    @property
    def ca_path(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def record(self) -> Path:
        return self.folder / "record.jsonl"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/hooks/rostersync"

    def start(self) -> Receiver:
        port_file = self.folder / "port"
        port_file.unlink(missing_ok=True)
        args = [sys.executable, str(SCRIPT), "--secret", self.secret, "--port", str(self.port)]
        args += ["--cert", str(self.folder / "cert.pem"), "--key", str(self.folder / "key.pem")]
        args += ["--record", str(self.record), "--mode", str(self.folder / "mode"), "--port-file", str(port_file)]
        self.process = subprocess.Popen(args)  # a helper process of the test, on loopback only
        for _ in range(400):  # up to 20 s for the interpreter to start; not a timing assertion
            if port_file.exists() and port_file.read_text():
                self.port = int(port_file.read_text())
                return self
            assert self.process.poll() is None, "the receiver exited"
            time.sleep(0.05)
        raise AssertionError("the receiver did not start")

    def stop(self) -> None:
        """Gone: connections to its port are refused until ``start``."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def mode(self, value: str) -> None:
        (self.folder / "mode").write_text(value)

    def entries(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def batches(self) -> list[list[dict[str, Any]]]:
        """Every verified batch, in the order it arrived (an ``ack-lost`` one too: it was received)."""
        return [entry["body"]["data"] for entry in self.entries() if entry["verified"]]

    def seqs(self) -> list[int]:
        return [event["seq"] for batch in self.batches() for event in batch]


def add_events(engine: Engine, count: int, *, at: datetime | None = None, integration_id: int = 7) -> list[int]:
    """``count`` events after the head, written as the outbox writes them; returns their seqs."""
    with engine.begin() as connection:
        head = connection.execute(OutboxHead.__table__.select()).one()
        first = int(head.last_seq) + 1
        seqs = list(range(first, first + count))
        rows = [
            {
                "seq": seq,
                "at": at or utcnow(),
                "type": "member.added",
                "integration_id": integration_id,
                "person": f"p{seq:04d}",
                "data": json.dumps({"class": "c1", "person": f"p{seq:04d}", "role": "student", "display_name": None}),
            }
            for seq in seqs
        ]
        if rows:
            connection.execute(ChangeEvent.__table__.insert(), rows)
        connection.execute(update(OutboxHead).where(OutboxHead.id == 1).values(last_seq=first + count - 1))
    return seqs


def forget_through(engine: Engine, seq: int) -> None:
    """What retention does: delete events up to ``seq`` and remember it."""
    with engine.begin() as connection:
        connection.execute(ChangeEvent.__table__.delete().where(ChangeEvent.seq <= seq))
        connection.execute(update(OutboxHead).where(OutboxHead.id == 1).values(forgotten_through=seq))
