"""The simulator's state: transmissions received and return messages queued, in SQLite.

A file by default, so a restarted simulator still knows every transmission (idempotency
holds across restarts) and still serves the messages not yet fetched; ``:memory:`` for
unit tests. Calls are short and synchronous behind one lock: the simulator serves one
platform, not a country.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transmission (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    identifiant_acte TEXT NOT NULL,
    siren TEXT NOT NULL,
    archive_name TEXT NOT NULL,
    archive_sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    received_at TEXT NOT NULL,
    received_epoch REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS transmission_identifiant ON transmission (identifiant_acte);
CREATE INDEX IF NOT EXISTS transmission_epoch ON transmission (received_epoch);
CREATE TABLE IF NOT EXISTS message (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    transmission_id TEXT,
    identifiant_acte TEXT,
    code TEXT NOT NULL,
    filename_stem TEXT NOT NULL,
    content BLOB NOT NULL,
    created_at TEXT NOT NULL,
    available_epoch REAL NOT NULL
);
"""
# Columns added after the first release of the simulator: added to an older state file.
_ADDED_COLUMNS = (
    "ALTER TABLE message ADD COLUMN files TEXT",
    "ALTER TABLE message ADD COLUMN departement TEXT",
)


@dataclass(frozen=True)
class Transmission:
    id: str
    idempotency_key: str
    identifiant_acte: str
    siren: str
    archive_name: str
    archive_sha256: str
    size: int
    outcome: str
    deliveries: int
    received_at: datetime


@dataclass(frozen=True)
class QueuedMessage:
    seq: int
    transmission_id: str | None
    identifiant_acte: str | None
    code: str
    filename: str
    content: bytes
    created_at: datetime
    files: tuple[tuple[str, bytes], ...] = ()
    departement: str | None = None


@dataclass(frozen=True)
class NewMessage:
    code: str
    filename_stem: str
    content: bytes
    available_epoch: float
    files: tuple[tuple[str, bytes], ...] = ()
    departement: str | None = None


class SimulatorStore:
    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            for statement in _ADDED_COLUMNS:
                with contextlib.suppress(sqlite3.OperationalError):
                    self._db.execute(statement)

    def close(self) -> None:
        self._db.close()

    def find_by_key(self, idempotency_key: str) -> Transmission | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM transmission WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
        return _transmission(row) if row else None

    def redelivered(self, idempotency_key: str) -> Transmission | None:
        """Count one more delivery of a known key and return its transmission."""
        with self._lock:
            self._db.execute(
                "UPDATE transmission SET deliveries = deliveries + 1 WHERE idempotency_key = ?",
                (idempotency_key,),
            )
            row = self._db.execute(
                "SELECT * FROM transmission WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
        return _transmission(row) if row else None

    def get(self, transmission_id: str) -> Transmission | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM transmission WHERE id = ?", (transmission_id,)
            ).fetchone()
        return _transmission(row) if row else None

    def search(
        self, *, idempotency_key: str | None, identifiant_acte: str | None
    ) -> list[Transmission]:
        clauses, values = [], []
        if idempotency_key is not None:
            clauses.append("idempotency_key = ?")
            values.append(idempotency_key)
        if identifiant_acte is not None:
            clauses.append("identifiant_acte = ?")
            values.append(identifiant_acte)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM transmission {where} ORDER BY received_epoch",  # noqa: S608
                values,
            ).fetchall()
        return [_transmission(row) for row in rows]

    def count_since(self, epoch: float) -> tuple[int, float | None]:
        """How many transmissions arrived since ``epoch``, and when the oldest of them did."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), MIN(received_epoch) FROM transmission WHERE received_epoch > ?",
                (epoch,),
            ).fetchone()
        return int(row[0]), row[1]

    def identifiant_known(self, identifiant_acte: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM transmission WHERE identifiant_acte = ? AND outcome = 'accepted'",
                (identifiant_acte,),
            ).fetchone()
        return row is not None

    def record(
        self, transmission: Transmission, epoch: float, message: NewMessage | None
    ) -> Transmission:
        """Store a transmission and the reply it will get, at once; a known key wins."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                existing = self._db.execute(
                    "SELECT * FROM transmission WHERE idempotency_key = ?",
                    (transmission.idempotency_key,),
                ).fetchone()
                if existing is not None:
                    self._db.execute("ROLLBACK")
                    return _transmission(existing)
                self._insert(transmission, epoch, message)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return transmission

    def _insert(self, transmission: Transmission, epoch: float, message: NewMessage | None) -> None:
        self._db.execute(
            "INSERT INTO transmission (id, idempotency_key, identifiant_acte, siren,"
            " archive_name, archive_sha256, size, outcome, deliveries, received_at,"
            " received_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
            (
                transmission.id,
                transmission.idempotency_key,
                transmission.identifiant_acte,
                transmission.siren,
                transmission.archive_name,
                transmission.archive_sha256,
                transmission.size,
                transmission.outcome,
                transmission.received_at.isoformat(),
                epoch,
            ),
        )
        if message is not None:
            self._insert_message(transmission.id, transmission.identifiant_acte, message)

    def _insert_message(
        self, transmission_id: str | None, identifiant_acte: str | None, message: NewMessage
    ) -> None:
        files = json.dumps(
            [[name, base64.b64encode(content).decode()] for name, content in message.files]
        )
        self._db.execute(
            "INSERT INTO message (transmission_id, identifiant_acte, code, filename_stem,"
            " content, created_at, available_epoch, files, departement)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                transmission_id,
                identifiant_acte,
                message.code,
                message.filename_stem,
                message.content,
                datetime.now(UTC).isoformat(),
                message.available_epoch,
                files,
                message.departement,
            ),
        )

    def queue(
        self, transmission_id: str | None, identifiant_acte: str | None, message: NewMessage
    ) -> None:
        """Queue a message of the prefecture's own initiative (a letter, a déféré)."""
        with self._lock:
            self._insert_message(transmission_id, identifiant_acte, message)

    def accepted(self, identifiant_acte: str) -> Transmission | None:
        """The acte's accepted dépôt, if the prefecture received one."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM transmission WHERE identifiant_acte = ? AND outcome = 'accepted'",
                (identifiant_acte,),
            ).fetchone()
        return _transmission(row) if row else None

    def messages_after(self, after: int, now_epoch: float, limit: int) -> list[QueuedMessage]:
        """Messages whose time has come, in order, after ``after``.

        Stops at the first message not yet available so that a cursor never skips one.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM message WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()
        ready: list[QueuedMessage] = []
        for row in rows:
            if row["available_epoch"] > now_epoch:
                break
            ready.append(_message(row))
        return ready

    def next_available_after(self, after: int) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT available_epoch FROM message WHERE seq > ? ORDER BY seq LIMIT 1",
                (after,),
            ).fetchone()
        return float(row[0]) if row else None


def _transmission(row: sqlite3.Row) -> Transmission:
    return Transmission(
        id=row["id"],
        idempotency_key=row["idempotency_key"],
        identifiant_acte=row["identifiant_acte"],
        siren=row["siren"],
        archive_name=row["archive_name"],
        archive_sha256=row["archive_sha256"],
        size=row["size"],
        outcome=row["outcome"],
        deliveries=row["deliveries"],
        received_at=datetime.fromisoformat(row["received_at"]),
    )


def _message(row: sqlite3.Row) -> QueuedMessage:
    files = tuple(
        (str(name), base64.b64decode(content)) for name, content in json.loads(row["files"] or "[]")
    )
    return QueuedMessage(
        files=files,
        departement=row["departement"],
        seq=row["seq"],
        transmission_id=row["transmission_id"],
        identifiant_acte=row["identifiant_acte"],
        code=row["code"],
        filename=f"{row['filename_stem']}-{row['code']}_{row['seq']}.xml",
        content=row["content"],
        created_at=datetime.fromisoformat(row["created_at"]),
    )
