"""Local SQLite store of trainees' scores and knees' follow-up measurements.

Stdlib ``sqlite3``. The schema version lives in ``PRAGMA user_version``;
opening a database applies, in one transaction each, every migration above
its version, so a database written by an older release keeps its data.
Nothing identifying a patient is stored: a knee is a pseudonymous ID chosen
by the site, a session is named by its file name only (no folders).
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import InputError

DEFAULT_DB = Path.home() / ".local" / "share" / "knee-guidance" / "progress.sqlite"

# Each entry moves the schema from version i to i+1. Never edit a shipped one: add a new one.
MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: first release: one row per scored session
    """
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        trainee TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        score REAL NOT NULL
    );
    """,
    # 1 -> 2: trainees get their own table; sessions keep their kind, source name and metrics;
    # follow-up cartilage measurements per knee and date
    """
    CREATE TABLE trainees (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    INSERT INTO trainees (name) SELECT DISTINCT trainee FROM sessions;
    CREATE TABLE sessions_v2 (
        id INTEGER PRIMARY KEY,
        trainee_id INTEGER NOT NULL REFERENCES trainees(id),
        recorded_at TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'performed' CHECK (kind IN ('performed', 'practice')),
        source_name TEXT NOT NULL DEFAULT '',
        score REAL NOT NULL,
        metrics_json TEXT NOT NULL DEFAULT '{}'
    );
    INSERT INTO sessions_v2 (id, trainee_id, recorded_at, score)
        SELECT s.id, t.id, s.recorded_at, s.score FROM sessions s JOIN trainees t ON t.name = s.trainee;
    DROP TABLE sessions;
    ALTER TABLE sessions_v2 RENAME TO sessions;
    CREATE INDEX sessions_by_trainee ON sessions (trainee_id, recorded_at);
    CREATE TABLE measurements (
        id INTEGER PRIMARY KEY,
        knee_id TEXT NOT NULL,
        measured_on TEXT NOT NULL,
        median_thickness_mm REAL,
        profile_json TEXT NOT NULL DEFAULT '[]',
        source_name TEXT NOT NULL DEFAULT '',
        detector TEXT NOT NULL DEFAULT '',
        UNIQUE (knee_id, measured_on, source_name)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def check_id(value: str, what: str) -> str:
    """A trainee or knee ID: letters, digits, ``_.-``, up to 64 characters (no spaces: not a name)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise InputError(f"{what} {value!r}: use a pseudonymous ID of letters, digits, '_', '.', '-' "
                         "(at most 64 characters, no spaces); never a patient's name")
    return value


def check_date(value: str | date | None) -> str:
    if value is None:
        return date.today().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InputError(f"date {value!r}: expected YYYY-MM-DD") from None


@dataclass(frozen=True)
class SessionRow:
    recorded_at: str
    kind: str
    source_name: str
    score: float
    metrics: dict[str, Any]


@dataclass(frozen=True)
class MeasurementRow:
    knee_id: str
    measured_on: str
    median_thickness_mm: float | None
    profile_mm: list
    source_name: str
    detector: str


class ProgressDB:
    """The progress database at ``path`` (created and migrated on open).

    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | Path = DEFAULT_DB):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise InputError(f"{self.path}: cannot open the progress database ({exc})") from None
        self._con.execute("PRAGMA foreign_keys = ON")
        try:
            self.migrate()
        except InputError:
            self._con.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._con.close()
            raise InputError(f"{self.path}: not a usable progress database ({exc})") from None

    @property
    def version(self) -> int:
        return int(self._con.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Apply every migration above the stored version, each in its own transaction."""
        v = self.version
        if v > SCHEMA_VERSION:
            raise InputError(f"{self.path}: written by a newer release (schema {v}, "
                             f"this one knows up to {SCHEMA_VERSION}); not changed")
        for target in range(v + 1, SCHEMA_VERSION + 1):
            script = MIGRATIONS[target - 1]
            # executescript commits first; wrap explicitly so a failed step leaves the old schema
            try:
                self._con.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {target};\nCOMMIT;")
            except sqlite3.Error as exc:
                if self._con.in_transaction:
                    self._con.rollback()
                raise InputError(f"{self.path}: cannot upgrade the progress database from schema "
                                 f"{target - 1} to {target} ({exc}); left unchanged") from None

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "ProgressDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _trainee_id(self, trainee: str) -> int:
        check_id(trainee, "trainee")
        self._con.execute("INSERT OR IGNORE INTO trainees (name) VALUES (?)", (trainee,))
        return int(self._con.execute("SELECT id FROM trainees WHERE name = ?", (trainee,)).fetchone()[0])

    def add_session(self, trainee: str, score: float, *, metrics: dict | None = None,
                    kind: str = "performed", source_name: str = "",
                    recorded_at: str | datetime | None = None) -> None:
        """Store one scored session. ``source_name`` is reduced to a bare file name."""
        if isinstance(recorded_at, datetime):
            recorded_at = recorded_at.astimezone(timezone.utc).isoformat(timespec="seconds")
        when = recorded_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._con:
            tid = self._trainee_id(trainee)
            self._con.execute(
                "INSERT INTO sessions (trainee_id, recorded_at, kind, source_name, score, metrics_json)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (tid, when, kind, Path(source_name).name, float(score),
                 json.dumps(metrics or {}, default=str)))

    def sessions(self, trainee: str) -> list[SessionRow]:
        """The trainee's sessions, oldest first."""
        check_id(trainee, "trainee")
        rows = self._con.execute(
            "SELECT s.recorded_at, s.kind, s.source_name, s.score, s.metrics_json FROM sessions s"
            " JOIN trainees t ON t.id = s.trainee_id WHERE t.name = ? ORDER BY s.recorded_at, s.id",
            (trainee,)).fetchall()
        return [SessionRow(r[0], r[1], r[2], float(r[3]), json.loads(r[4])) for r in rows]

    def trainees(self) -> list[str]:
        return [r[0] for r in self._con.execute("SELECT name FROM trainees ORDER BY name")]

    def add_measurement(self, knee_id: str, measured_on: str | date | None, median_thickness_mm: float | None,
                        profile_mm: list | None = None, *, source_name: str = "", detector: str = "") -> None:
        """Store (or replace) a knee's cartilage measurement for a date and source file."""
        check_id(knee_id, "knee")
        day = check_date(measured_on)
        with self._con:
            self._con.execute(
                "INSERT OR REPLACE INTO measurements (knee_id, measured_on, median_thickness_mm,"
                " profile_json, source_name, detector) VALUES (?, ?, ?, ?, ?, ?)",
                (knee_id, day, median_thickness_mm, json.dumps(profile_mm or []),
                 Path(source_name).name, detector))

    def measurements(self, knee_id: str) -> list[MeasurementRow]:
        """The knee's measurements, oldest first (the trend)."""
        check_id(knee_id, "knee")
        rows = self._con.execute(
            "SELECT knee_id, measured_on, median_thickness_mm, profile_json, source_name, detector"
            " FROM measurements WHERE knee_id = ? ORDER BY measured_on, id", (knee_id,)).fetchall()
        return [MeasurementRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]
