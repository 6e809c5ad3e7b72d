"""Settings remembered between runs (QSettings), with typed accessors.

Tests pass their own ``QSettings`` (an INI file in a temporary folder) so a
test run never touches the user's settings.
"""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore

ORGANISATION = "KneeGuidance"
APPLICATION = "guidance-ui"


def default_settings() -> QtCore.QSettings:
    return QtCore.QSettings(ORGANISATION, APPLICATION)


def ini_settings(path: str | Path) -> QtCore.QSettings:
    """Settings kept in one INI file (tests, portable installs)."""
    return QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat)


class Settings:
    """Typed view over a QSettings store."""

    def __init__(self, store: QtCore.QSettings | None = None) -> None:
        self.store = store if store is not None else default_settings()

    def get_str(self, key: str, default: str = "") -> str:
        v = self.store.value(key, default)
        return default if v is None else str(v)

    def get_bool(self, key: str, default: bool) -> bool:
        v = self.store.value(key, default)
        if isinstance(v, str):
            return v.lower() in ("1", "true", "yes")
        return bool(v)

    def get_float(self, key: str, default: float | None) -> float | None:
        v = self.store.value(key, default)
        try:
            return None if v in (None, "") else float(v)
        except (TypeError, ValueError):
            return default

    def set(self, key: str, value) -> None:
        self.store.setValue(key, "" if value is None else value)

    def sync(self) -> None:
        self.store.sync()

    def recordings_dir(self) -> Path:
        default = Path(QtCore.QStandardPaths.writableLocation(
            QtCore.QStandardPaths.StandardLocation.DocumentsLocation) or Path.home()) / "guidance-recordings"
        return Path(self.get_str("record/dir", str(default)))

    def snapshots_dir(self) -> Path:
        return Path(self.get_str("snapshot/dir", str(self.recordings_dir())))
