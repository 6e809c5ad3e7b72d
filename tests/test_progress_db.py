"""The progress database: per-trainee scores, per-knee measurements, schema migrations."""

from __future__ import annotations

import sqlite3

import pytest

from guidance.errors import InputError
from guidance.training.progress_db import SCHEMA_VERSION, ProgressDB


def _make_v1(path):
    """A database as the first release wrote it (schema 1), with two sessions."""
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE sessions (id INTEGER PRIMARY KEY, trainee TEXT NOT NULL,
                               recorded_at TEXT NOT NULL, score REAL NOT NULL);
        INSERT INTO sessions (trainee, recorded_at, score) VALUES ('T01', '2026-01-05T10:00:00+00:00', 55.0);
        INSERT INTO sessions (trainee, recorded_at, score) VALUES ('T01', '2026-02-05T10:00:00+00:00', 71.5);
        INSERT INTO sessions (trainee, recorded_at, score) VALUES ('T02', '2026-02-06T10:00:00+00:00', 80.0);
        PRAGMA user_version = 1;
    """)
    con.commit()
    con.close()


def test_migrates_an_older_schema_keeping_its_scores(tmp_path):
    db_path = tmp_path / "old.sqlite"
    _make_v1(db_path)
    with ProgressDB(db_path) as db:
        assert db.version == SCHEMA_VERSION
        rows = db.sessions("T01")
        assert [r.score for r in rows] == [55.0, 71.5]
        assert all(r.kind == "performed" for r in rows)
        assert db.trainees() == ["T01", "T02"]
        # the new tables work after the upgrade
        db.add_session("T01", 90.0, metrics={"redirections": 0}, kind="practice",
                       source_name="/home/someone/cases/run3.usrec", recorded_at="2026-03-01T09:00:00+00:00")
        db.add_measurement("K-0001", "2026-03-01", 2.1, [[0.0, 2.0], [1.0, 2.2]], source_name="a.png")
    with ProgressDB(db_path) as db:  # reopening does not migrate again
        rows = db.sessions("T01")
        assert [r.score for r in rows] == [55.0, 71.5, 90.0]
        assert rows[-1].metrics == {"redirections": 0}
        assert rows[-1].source_name == "run3.usrec"  # no folders (they may name a patient)
        assert db.measurements("K-0001")[0].median_thickness_mm == 2.1


def test_a_failed_migration_leaves_the_old_database_usable(tmp_path):
    db_path = tmp_path / "odd.sqlite"
    _make_v1(db_path)
    con = sqlite3.connect(db_path)
    con.execute("CREATE TABLE trainees (x TEXT)")  # clashes with the upgrade
    con.commit()
    con.close()
    with pytest.raises(InputError, match="cannot upgrade"):
        ProgressDB(db_path)
    con = sqlite3.connect(db_path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    assert con.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 3
    con.close()


def test_a_newer_database_is_refused_untouched(tmp_path):
    db_path = tmp_path / "new.sqlite"
    con = sqlite3.connect(db_path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(InputError, match="newer release"):
        ProgressDB(db_path)


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_text("these are notes, not a database " * 100)
    with pytest.raises(InputError, match="notes.sqlite"):
        ProgressDB(bad)


def test_fresh_database_orders_scores_over_time(tmp_path):
    with ProgressDB(tmp_path / "p.sqlite") as db:
        db.add_session("T9", 60, recorded_at="2026-05-02T00:00:00+00:00")
        db.add_session("T9", 40, recorded_at="2026-05-01T00:00:00+00:00")
        assert [r.score for r in db.sessions("T9")] == [40, 60]
        assert db.sessions("nobody") == []


@pytest.mark.parametrize("bad", ["John Smith", "", "a/b", "x" * 65])
def test_ids_must_be_pseudonymous_tokens(tmp_path, bad):
    with ProgressDB(tmp_path / "p.sqlite") as db:
        with pytest.raises(InputError):
            db.add_session(bad, 50)
        with pytest.raises(InputError):
            db.add_measurement(bad, "2026-01-01", 2.0)


def test_measurement_date_is_validated_and_replaced_per_day(tmp_path):
    with ProgressDB(tmp_path / "p.sqlite") as db:
        with pytest.raises(InputError, match="YYYY-MM-DD"):
            db.add_measurement("K1", "01/02/2026", 2.0)
        db.add_measurement("K1", "2026-01-01", 2.0, source_name="x.png")
        db.add_measurement("K1", "2026-01-01", 2.4, source_name="x.png")  # re-measured
        db.add_measurement("K1", "2025-12-01", 2.6, source_name="x.png")
        assert [(m.measured_on, m.median_thickness_mm) for m in db.measurements("K1")] == \
            [("2025-12-01", 2.6), ("2026-01-01", 2.4)]
