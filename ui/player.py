"""The replay player: step through a recording or any file, with its guidance.

The overlay is either the guidance as it was shown live (from the
recording), the guidance recomputed now with the current model, or both side
by side. Playback follows the recorded timestamps at 0.25x to 4x.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from guidance.errors import GuidanceError
from guidance.types import FrameResult

from . import DISCLAIMER_SHORT
from .image_view import ImageView
from .processing import make_stages, model_name
from .recompute import Recomputer
from .readouts import MessageStrip, ReadoutPanel, alert_text
from .replay_data import ReplayData
from .settings import Settings
from .timeline import Timeline

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0)
MODES = {"recorded": "As recorded", "recomputed": "Recomputed (current model)", "side": "Side by side"}


class PlayerWindow(QtWidgets.QMainWindow):
    """Replay window. Emits ``position_changed(index)`` whenever another frame is shown."""

    position_changed = QtCore.Signal(int)

    def __init__(self, settings: Settings | None = None, *, detector: str | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.detector = detector or self.settings.get_str("model/detector", "auto")
        self.setWindowTitle(f"Replay player \u2014 {DISCLAIMER_SHORT}")
        self.data: ReplayData | None = None
        self.index = 0
        self.speed = 1.0
        self.loop_range: tuple[int, int] | None = None
        self.spacing_mm = None  # override for recomputed guidance on files without spacing
        self.recomputer: Recomputer | None = None
        self._awaiting: int | None = None  # frame whose recomputed guidance is being computed
        self._playing = False
        self.results: dict[str, FrameResult | None] = {"recorded": None, "recomputed": None}

        self.view = ImageView()       # recorded (or the only view)
        self.view_b = ImageView()     # recomputed, when side by side
        self.caption_a = QtWidgets.QLabel("as recorded")
        self.caption_b = QtWidgets.QLabel("recomputed")
        for cap in (self.caption_a, self.caption_b):
            cap.setStyleSheet("color: #c0c0c0; font-size: 11pt; padding: 2px;")
        self.readouts = ReadoutPanel()
        self.strip = MessageStrip()
        self.timeline = Timeline()
        self.timeline.valueChanged.connect(self._on_slider)
        self.position_label = QtWidgets.QLabel("\u2014")
        self.position_label.setMinimumWidth(220)

        views = QtWidgets.QGridLayout()
        views.setSpacing(4)
        views.addWidget(self.caption_a, 0, 0)
        views.addWidget(self.caption_b, 0, 1)
        views.addWidget(self.view, 1, 0)
        views.addWidget(self.view_b, 1, 1)
        left = QtWidgets.QVBoxLayout()
        left.setContentsMargins(0, 0, 0, 0)
        left.addWidget(self.strip)
        left.addLayout(views, 1)
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(self.timeline, 1)
        bottom.addWidget(self.position_label)
        left.addLayout(bottom)
        central = QtWidgets.QWidget()
        lay = QtWidgets.QHBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(left, 1)
        lay.addWidget(self.readouts)
        self.setCentralWidget(central)

        self.timer = QtCore.QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._advance)
        self._build_controls()
        self.statusBar().addPermanentWidget(QtWidgets.QLabel(DISCLAIMER_SHORT))
        self.set_mode(self.settings.get_str("player/mode", "recorded"))
        self.resize(1280, 800)

    # -- controls ----------------------------------------------------------
    def _action(self, text, shortcut, slot, checkable=False) -> QtGui.QAction:
        act = QtGui.QAction(text, self)
        if shortcut:
            act.setShortcuts([QtGui.QKeySequence(s) for s in (shortcut if isinstance(shortcut, list) else [shortcut])])
            act.setToolTip(f"{text} ({act.shortcut().toString()})")
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        self.addAction(act)
        return act

    def _build_controls(self) -> None:
        tb = self.addToolBar("Player")
        tb.setObjectName("player")
        tb.setMovable(False)
        self.act_open = self._action("Open\u2026", "Ctrl+O", self._open_dialog)
        self.act_play = self._action("Play", "Space", self.toggle_play, checkable=True)
        self.act_back = self._action("\u25c0 Step", ["Left", ","], lambda: self.step(-1))
        self.act_fwd = self._action("Step \u25b6", ["Right", "."], lambda: self.step(1))
        self.act_back10 = self._action("\u25c0\u25c0 1 s", "Shift+Left", lambda: self.step(-max(1, round(self._fps()))))
        self.act_fwd10 = self._action("1 s \u25b6\u25b6", "Shift+Right", lambda: self.step(max(1, round(self._fps()))))
        self.act_slower = self._action("Slower", "-", lambda: self.set_speed(self._next_speed(-1)))
        self.act_faster = self._action("Faster", ["+", "="], lambda: self.set_speed(self._next_speed(+1)))
        self.act_loop_in = self._action("Loop from here", "[", self.set_loop_in)
        self.act_loop_out = self._action("Loop to here", "]", self.set_loop_out)
        self.act_loop_clear = self._action("No loop", "\\", lambda: self.set_loop(None))
        self.act_prev_mark = self._action("Previous event", "PgUp", lambda: self.jump_mark(-1))
        self.act_next_mark = self._action("Next event", "PgDown", lambda: self.jump_mark(+1))
        self.act_snapshot = self._action("Snapshot", "Ctrl+S", self.snapshot)
        self.act_spacing = self._action("Spacing\u2026", "Ctrl+D", self.edit_spacing)
        self.act_full = self._action("Full screen", ["F11", "F"], self.toggle_fullscreen)
        self.act_practice = self._action("Practice\u2026", "Ctrl+P", self.start_practice)
        self.speed_box = QtWidgets.QComboBox()
        for s in SPEEDS:
            self.speed_box.addItem(f"{s:g}x", s)
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.currentIndexChanged.connect(lambda i: self.set_speed(SPEEDS[i]))
        self.mode_box = QtWidgets.QComboBox()
        for key, label in MODES.items():
            self.mode_box.addItem(label, key)
        self.mode_box.currentIndexChanged.connect(lambda i: self.set_mode(self.mode_box.itemData(i)))
        for key, shortcut in zip(MODES, ("Ctrl+1", "Ctrl+2", "Ctrl+3")):
            self._action(MODES[key], shortcut, lambda _=False, k=key: self.set_mode(k))
        for act in (self.act_open, self.act_play, self.act_back, self.act_fwd, self.act_back10, self.act_fwd10):
            tb.addAction(act)
        tb.addWidget(QtWidgets.QLabel(" speed "))
        tb.addWidget(self.speed_box)
        tb.addSeparator()
        for act in (self.act_loop_in, self.act_loop_out, self.act_loop_clear, self.act_prev_mark, self.act_next_mark):
            tb.addAction(act)
        tb.addSeparator()
        tb.addWidget(QtWidgets.QLabel(" overlay "))
        tb.addWidget(self.mode_box)
        tb.addAction(self.act_spacing)
        tb.addAction(self.act_snapshot)
        tb.addAction(self.act_practice)

    # -- opening -----------------------------------------------------------
    def _open_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open recording or file", self.settings.get_str("player/last", ""),
            "Recordings and files (*.usrec *.mp4 *.avi *.mkv *.mha *.mhd *.nrrd *.dcm *.png *.jpg);;All files (*)")
        if path:
            try:
                self.open(path)
            except GuidanceError as exc:
                QtWidgets.QMessageBox.warning(self, "Cannot open", str(exc))

    def open(self, path: str | Path) -> None:
        """Open a recording or any file the sources read. Raises GuidanceError for a bad file."""
        self.pause()
        self.data = ReplayData(path)
        self.settings.set("player/last", str(path))
        if self.recomputer is not None:
            self.recomputer.reset()
        self.loop_range = None
        self.timeline.set_loop_range(None)
        self.timeline.blockSignals(True)
        self.timeline.setRange(0, len(self.data) - 1)
        self.timeline.setValue(0)
        self.timeline.blockSignals(False)
        self.timeline.set_marks(self.data.marks)
        if not self.data.has_recorded_guidance and self.mode != "recomputed":
            self.set_mode("recomputed")
        self.setWindowTitle(f"{self.data.name} \u2014 Replay player \u2014 {DISCLAIMER_SHORT}")
        self.seek(0)

    # -- position ----------------------------------------------------------
    def _fps(self) -> float:
        return self.data.fps if self.data is not None else 30.0

    def seek(self, index: int) -> None:
        """Show frame ``index`` (clamped) with its overlay(s)."""
        if self.data is None:
            return
        self.index = int(min(max(index, 0), len(self.data) - 1))
        if self.timeline.value() != self.index:
            self.timeline.blockSignals(True)
            self.timeline.setValue(self.index)
            self.timeline.blockSignals(False)
        self._show()
        self.position_changed.emit(self.index)

    def step(self, n: int) -> None:
        self.pause()
        self.seek(self.index + n)

    def _on_slider(self, value: int) -> None:
        if value != self.index:
            self.seek(value)

    def jump_mark(self, direction: int) -> None:
        if self.data is None or not self.data.marks:
            return
        idx = [m.index for m in self.data.marks]
        cands = [i for i in idx if (i > self.index if direction > 0 else i < self.index)]
        if cands:
            self.pause()
            self.seek(min(cands) if direction > 0 else max(cands))

    # -- playing -----------------------------------------------------------
    def toggle_play(self) -> None:
        if self.playing:
            self.pause()
        else:
            self.play()

    def play(self) -> None:
        if self.data is None:
            return
        if self.index >= len(self.data) - 1 and self.loop_range is None:
            self.seek(0)
        self._playing = True
        self.act_play.setChecked(True)
        self.act_play.setText("Pause")
        if not self.waiting_for_recompute:
            self._schedule()

    def pause(self) -> None:
        self._playing = False
        self.timer.stop()
        self.act_play.setChecked(False)
        self.act_play.setText("Play")

    @property
    def playing(self) -> bool:
        return self._playing

    def _next_index(self) -> int | None:
        nxt = self.index + 1
        if self.loop_range is not None:
            a, b = self.loop_range
            if nxt > b or nxt < a:
                return a
        if nxt >= len(self.data):
            return None
        return nxt

    def _schedule(self) -> None:
        nxt = self._next_index()
        if nxt is None:
            self.pause()
            return
        ts = self.data.timestamps_s
        dt = float(ts[nxt] - ts[self.index]) if nxt > self.index else 1.0 / self._fps()
        if not (0.0 < dt < 2.0):
            dt = 1.0 / self._fps()
        self.timer.start(max(1, int(round(dt / self.speed * 1000))))

    def _advance(self) -> None:
        nxt = self._next_index()
        if nxt is None:
            self.pause()
            return
        self.seek(nxt)
        if not self.waiting_for_recompute:
            self._schedule()  # otherwise scheduled when the recomputed frame arrives

    def set_speed(self, speed: float) -> None:
        self.speed = float(min(max(speed, SPEEDS[0]), SPEEDS[-1]))
        i = min(range(len(SPEEDS)), key=lambda k: abs(SPEEDS[k] - self.speed))
        if self.speed_box.currentIndex() != i:
            self.speed_box.blockSignals(True)
            self.speed_box.setCurrentIndex(i)
            self.speed_box.blockSignals(False)
        self.statusBar().showMessage(f"speed {self.speed:g}x", 2000)

    def _next_speed(self, direction: int) -> float:
        i = min(range(len(SPEEDS)), key=lambda k: abs(SPEEDS[k] - self.speed))
        return SPEEDS[min(max(i + direction, 0), len(SPEEDS) - 1)]

    def set_loop(self, loop: tuple[int, int] | None) -> None:
        """Loop playback over frames ``[a, b]`` (inclusive), or stop looping (None)."""
        if loop is not None:
            a, b = sorted(int(v) for v in loop)
            loop = (a, b)
        self.loop_range = loop
        self.timeline.set_loop_range(loop)

    def set_loop_in(self) -> None:
        end = self.loop_range[1] if self.loop_range else len(self.data) - 1 if self.data else 0
        self.set_loop((self.index, max(end, self.index)))

    def set_loop_out(self) -> None:
        start = self.loop_range[0] if self.loop_range else 0
        self.set_loop((min(start, self.index), self.index))

    # -- overlays ----------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.mode_box.currentData() or "recorded"

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            mode = "recorded"
        if mode != "recomputed" and self.data is not None and not self.data.has_recorded_guidance:
            mode = "recomputed"  # nothing was recorded: only recomputed guidance exists
        i = self.mode_box.findData(mode)
        if self.mode_box.currentIndex() != i:
            self.mode_box.blockSignals(True)
            self.mode_box.setCurrentIndex(i)
            self.mode_box.blockSignals(False)
        side = mode == "side"
        self.view_b.setVisible(side)
        self.caption_b.setVisible(side)
        self.caption_a.setVisible(side)
        self.caption_a.setText("as recorded" if side else "")
        self.settings.set("player/mode", mode)
        if self.data is not None:
            self._show()

    def _frame_for_recompute(self, i: int):
        frame = self.data.frame(i)
        return frame if self.spacing_mm is None else replace(frame, spacing_mm=self.spacing_mm)

    def _make_stages(self) -> list:
        tp = self.data.metadata.get("target_point_px") if self.data else None
        return make_stages(detector=self.detector, target_point_px=tp)

    def _ensure_recomputer(self) -> Recomputer:
        if self.recomputer is None:
            self.recomputer = Recomputer(self._make_stages, self._frame_for_recompute, parent=self)
            self.recomputer.ready.connect(self._on_recomputed)
        return self.recomputer

    @property
    def waiting_for_recompute(self) -> bool:
        return self._awaiting is not None

    def _show(self) -> None:
        """Draw frame ``index``: recorded guidance at once, recomputed guidance when the helper has it."""
        data, i = self.data, self.index
        mode = self.mode
        frame = data.frame(i)
        recorded = data.recorded_result(i) if mode in ("recorded", "side") else None
        self.results = {"recorded": recorded, "recomputed": None}
        if mode in ("recomputed", "side"):
            self._awaiting = i
            self._ensure_recomputer().request(i)
            # the frame at once, without guidance: never another frame's guidance on it
            target = self.view if mode == "recomputed" else self.view_b
            target.show_result(FrameResult(frame), overlay=False)
            self.caption_b.setText("recomputing\u2026")
        else:
            self._awaiting = None
        if mode != "recomputed":
            self._show_primary(recorded if recorded is not None else FrameResult(frame))
        else:
            self.readouts.show_result(None)
            self.strip.set_message("info", "recomputing\u2026")
        t = data.timestamps_s[i] - data.timestamps_s[0]
        marks_here = [m.label or m.kind for m in data.marks if m.index == i]
        self.position_label.setText(f"frame {i + 1} / {len(data)}   {t:6.2f} s"
                                    + (f"   \u25cf {', '.join(marks_here)}" if marks_here else ""))

    def _show_primary(self, result: FrameResult) -> None:
        self.view.show_result(result)
        self.readouts.show_result(result)
        alerts = result.alerts
        if alerts:
            self.strip.set_message("alert", alert_text(alerts))
        else:
            self.strip.set_message("none", "")

    def _on_recomputed(self) -> None:
        done = self.recomputer.take() if self.recomputer is not None else None
        if done is None or self.data is None:
            return
        index, result, error = done
        if index != self._awaiting:
            return  # the user moved on; the newer request is on its way
        self._awaiting = None
        if result is None:
            self.strip.set_message("alert", f"recomputing failed: {error}")
            self.statusBar().showMessage(f"recomputing failed: {error}", 8000)
        else:
            self.results["recomputed"] = result
            name = model_name(self.recomputer.stages)
            if self.mode == "recomputed":
                self._show_primary(result)
            elif self.mode == "side":
                self.view_b.show_result(result)
                self.caption_b.setText(f"recomputed: {name}")
        if self._playing:
            self._schedule()  # playback waits for the recomputed frame, never outruns it

    # -- misc --------------------------------------------------------------
    def edit_spacing(self) -> None:
        from .live_view import SpacingDialog

        frame = self.data.frame(self.index) if self.data is not None else None
        dlg = SpacingDialog(self.spacing_mm or (frame.spacing_mm if frame else None),
                            frame.height_px if frame else None, self)
        if dlg.exec() == QtWidgets.QDialog.DialogCode.Accepted:
            self.set_spacing(dlg.spacing_mm())

    def set_spacing(self, spacing_mm) -> None:
        """Pixel spacing (mm/px) for recomputed guidance; None uses the file's own."""
        self.spacing_mm = None if spacing_mm is None else (float(spacing_mm[0]), float(spacing_mm[1]))
        if self.recomputer is not None:
            self.recomputer.reset()
        if self.data is not None:
            self._show()

    def snapshot(self, path: str | Path | None = None) -> Path:
        if path is None:
            folder = self.settings.snapshots_dir()
            folder.mkdir(parents=True, exist_ok=True)
            stem = Path(self.data.name).stem if self.data else "player"
            path = folder / f"{stem}_frame{self.index:05d}.png"
        path = Path(path)
        self.centralWidget().grab().save(str(path), "PNG")
        self.statusBar().showMessage(f"Snapshot saved: {path}", 4000)
        return path

    def start_practice(self):
        """Practice mode on this file (ui/practice.py): guidance hidden, the trainee clicks tip and target."""
        from .practice import open_practice

        self.pause()
        self.practice_dialog = open_practice(self, self.data)
        return self.practice_dialog

    def toggle_fullscreen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    def closeEvent(self, ev) -> None:
        self.pause()
        if self.recomputer is not None:
            self.recomputer.close()
            self.recomputer = None
        self.settings.sync()
        super().closeEvent(ev)
