"""The physician's live view: the image at full frame rate, guidance over it, readouts beside it.

The pipeline runs on its own threads (:class:`ui.worker.PipelineWorker`);
this window only draws the newest result. Guidance is hidden, and the strip
above the image says why, whenever it cannot be trusted: older than
``STALE_MS`` or no signal from the source.
"""

from __future__ import annotations

import collections
import shutil
import threading
import time
from datetime import datetime
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from guidance.errors import GuidanceError
from guidance.overlay import guidance_age_ms, guidance_is_stale
from guidance.recording.format import EVENT_SOURCE_NOTICE
from guidance.sources import classify_spec, open_source
from guidance.types import FrameResult

from . import DISCLAIMER_SHORT
from .image_view import ImageView
from .overlay_items import LAYERS
from .processing import find_stage, make_stages, model_name
from .readouts import MessageStrip, ReadoutPanel, alert_text
from .settings import Settings
from .worker import PipelineWorker

STALE_MS = 100.0
HOLD_MESSAGE_S = 1.0  # a guidance-hidden message stays at least this long (no flicker)

# The picker's kind for each kind of spec guidance.sources understands.
PICKER_KIND = {"sim": "sim", "device": "device", "video": "file", "folder": "file", "image": "file",
               "recording": "recording", "plus": "plus", "dicom": "plus", "igtl": "igtl"}

# Kinds of source in the picker: (label, default spec, file-dialog filter or None).
SOURCE_KINDS = {
    "sim": ("Simulator", "sim", None),
    "device": ("Capture device", "0", None),
    "file": ("Video / image file", "", "Video and images (*.mp4 *.avi *.mkv *.mov *.png *.jpg *.bmp *.tif *.tiff)"),
    "recording": ("Recording (.usrec)", "", "Recordings (*.usrec)"),
    "plus": ("PLUS / DICOM file", "", "PLUS and DICOM (*.mha *.mhd *.nrrd *.dcm *.dicom);;All files (*)"),
    "igtl": ("OpenIGTLink", "igtl://127.0.0.1:18944", None),
}


class LiveWindow(QtWidgets.QMainWindow):
    """Main window of ``guidance demo`` / ``guidance ui``.

    Parameters
    ----------
    settings : Settings, optional
        Where choices are remembered (tests pass an INI-file store).
    source_options : dict, optional
        Extra options for ``open_source`` (e.g. ``fps``, ``size_px`` for the simulator).
    """

    def __init__(self, settings: Settings | None = None, *, source_options: dict | None = None,
                 detector: str | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.source_options = dict(source_options or {})
        self.detector = detector or self.settings.get_str("model/detector", "auto")
        self.setWindowTitle(f"Knee injection guidance \u2014 {DISCLAIMER_SHORT}")
        self.worker: PipelineWorker | None = None
        self.stages: list = []
        self.result: FrameResult | None = None
        self.recorder = None
        self.recording_path: Path | None = None
        self._finishing: list = []  # (thread, recorder, path) of recordings being finished
        self._finish_timer = QtCore.QTimer(self, interval=100)
        self._finish_timer.timeout.connect(self._check_finishing)
        self._record_started_s = 0.0
        self._last_alerts: tuple[str, ...] = ()
        self._paint_times: collections.deque[float] = collections.deque(maxlen=240)
        self.update_ms: collections.deque[float] = collections.deque(maxlen=600)  # GUI time per result
        self.spacing_mm = None  # the user's pixel spacing for the current source (None: the source's own)
        self.target_point_px: tuple[float, float] | None = None
        self.player = None
        self._status = None  # PipelineStatus, refreshed by the freshness timer
        self._stopped_by_user = False
        self._late_since_s = -1e9  # when guidance was last hidden for its age (monotonic s)
        self._late_worst_ms = 0.0

        self.view = ImageView()
        self.view.clicked_px.connect(self._on_image_clicked)
        self.view.painted.connect(self._paint_times.append)
        self.readouts = ReadoutPanel()
        self.strip = MessageStrip()
        central = QtWidgets.QWidget()
        central.setObjectName("central")
        central.setStyleSheet("#central { background: #000; }")
        grid = QtWidgets.QGridLayout(central)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(0)
        grid.addWidget(self.strip, 0, 0)
        grid.addWidget(self.view, 1, 0)
        grid.addWidget(self.readouts, 0, 1, 2, 1)
        grid.setColumnStretch(0, 1)
        self.setCentralWidget(central)
        self._build_actions()
        self._build_toolbar()
        self._build_status_bar()
        for name in LAYERS:
            self._set_layer(name, self.settings.get_bool(f"layers/{name}", self.view.overlay.layers[name]))

        self.set_zoom_to_region(self.settings.get_bool("view/zoom_to_region", False))
        self.fresh_timer = QtCore.QTimer(self, interval=40)  # staleness is checked 25 times a second
        self.fresh_timer.timeout.connect(self._check_freshness)
        self.fresh_timer.start()
        self.status_timer = QtCore.QTimer(self, interval=500)
        self.status_timer.timeout.connect(self._update_status)
        self.status_timer.start()
        geometry = self.settings.store.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 820)

    # -- construction ------------------------------------------------------
    def _action(self, text: str, shortcut, slot, *, checkable: bool = False, tip: str = "") -> QtGui.QAction:
        act = QtGui.QAction(text, self)
        if shortcut:
            act.setShortcuts([QtGui.QKeySequence(s) for s in (shortcut if isinstance(shortcut, list) else [shortcut])])
        act.setCheckable(checkable)
        act.setToolTip(f"{tip or text} ({act.shortcut().toString()})" if shortcut else (tip or text))
        act.triggered.connect(slot)
        self.addAction(act)  # shortcuts work even in full screen, toolbar hidden
        return act

    def _build_actions(self) -> None:
        self.act_start = self._action("Start", "F5", self.toggle_running, checkable=True, tip="Start / stop the source")
        self.act_record = self._action("Record", "Ctrl+R", self.toggle_recording, checkable=True,
                                       tip="Record the session losslessly")
        self.act_pick = self._action("Pick target", "T", self._toggle_pick, checkable=True,
                                     tip="Then click the target on the image")
        self.act_clear_target = self._action("Clear", "Shift+T", lambda: self.set_target_point(None),
                                             tip="Clear the picked target")
        self.act_injection = self._action("Injection", "I", self.mark_injection)
        self.act_spacing = self._action("Spacing", "Ctrl+D", self.edit_spacing,
                                        tip="Set or confirm the pixel spacing / imaging depth")
        self.act_snapshot = self._action("Snapshot", "Ctrl+S", self.snapshot, tip="Save a PNG of the view")
        self.act_fullscreen = self._action("Full screen", ["F11", "F"], self.toggle_fullscreen, checkable=True)
        self.act_zoom = self._action("Zoom", "Z", self.set_zoom_to_region, checkable=True,
                                     tip="Fill the view with the ultrasound image (hide the scanner's screen around it)")
        self.act_player = self._action("Player\u2026", "Ctrl+P", self.open_player, tip="Open the replay player")
        self.act_quit = self._action("Quit", "Ctrl+Q", self.close)
        self.act_help = self._action("Keys", "F1", self.show_shortcuts)
        self.layer_actions: dict[str, QtGui.QAction] = {}
        for i, (name, label) in enumerate(LAYERS.items(), start=1):
            key = f"Alt+{i % 10}"
            act = self._action(label, key, lambda on, n=name: self._set_layer(n, on), checkable=True)
            act.setChecked(self.view.overlay.layers[name])
            self.layer_actions[name] = act

    def _build_toolbar(self) -> None:
        tb = self.addToolBar("Controls")
        tb.setObjectName("controls")
        tb.setMovable(False)
        self.source_kind = QtWidgets.QComboBox()
        for key, (label, _, _) in SOURCE_KINDS.items():
            self.source_kind.addItem(label, key)
        self.source_spec = QtWidgets.QLineEdit()
        self.source_spec.setMinimumWidth(220)
        self.source_spec.setPlaceholderText("source: sim, 0, a file, igtl://host:port")
        self.browse = QtWidgets.QPushButton("\u2026")
        self.browse.setFixedWidth(30)
        self.browse.clicked.connect(self._browse)
        kind = self.settings.get_str("source/kind", "sim")
        self.source_kind.setCurrentIndex(max(0, self.source_kind.findData(kind)))
        self.source_spec.setText(self.settings.get_str("source/spec", SOURCE_KINDS.get(kind, SOURCE_KINDS["sim"])[1]))
        self.source_kind.currentIndexChanged.connect(self._kind_changed)
        tb.addWidget(QtWidgets.QLabel(" Source "))
        tb.addWidget(self.source_kind)
        tb.addWidget(self.source_spec)
        tb.addWidget(self.browse)
        tb.addSeparator()
        for act in (self.act_start, self.act_record, self.act_pick, self.act_clear_target, self.act_injection,
                    self.act_spacing, self.act_snapshot):
            tb.addAction(act)
        layers_button = QtWidgets.QToolButton()
        layers_button.setText("Layers")
        layers_button.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QtWidgets.QMenu(layers_button)
        for act in self.layer_actions.values():
            menu.addAction(act)
        layers_button.setMenu(menu)
        tb.addWidget(layers_button)
        tb.addAction(self.act_zoom)
        tb.addAction(self.act_fullscreen)
        tb.addAction(self.act_player)
        tb.addAction(self.act_help)

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.lab_fps = QtWidgets.QLabel("display \u2014 fps")
        self.lab_latency = QtWidgets.QLabel("latency \u2014")
        self.lab_dropped = QtWidgets.QLabel("dropped 0")
        self.lab_model = QtWidgets.QLabel("detector \u2014")
        self.lab_record = QtWidgets.QLabel("not recording")
        for lab in (self.lab_fps, self.lab_latency, self.lab_dropped, self.lab_model, self.lab_record):
            lab.setContentsMargins(6, 0, 6, 0)
            sb.addWidget(lab)
        notice = QtWidgets.QLabel(DISCLAIMER_SHORT)
        notice.setStyleSheet("color: #a0a0a0;")
        sb.addPermanentWidget(notice)

    # -- source ------------------------------------------------------------
    def _kind_changed(self) -> None:
        kind = self.source_kind.currentData()
        self.source_spec.setText(SOURCE_KINDS[kind][1])
        if SOURCE_KINDS[kind][2]:
            self._browse()

    def _browse(self) -> None:
        kind = self.source_kind.currentData()
        filt = SOURCE_KINDS[kind][2] or "All files (*)"
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open source", self.source_spec.text(), filt)
        if path:
            self.source_spec.setText(path)

    @staticmethod
    def _spacing_key(spec: str) -> str:
        # Remembered per source: a spacing set for one scanner must never silently apply to another.
        return "spacing/" + spec.strip().replace("/", "|").replace("\\", "|")

    def _load_spacing(self, spec: str):
        text = self.settings.get_str(self._spacing_key(spec), "")
        try:
            sx, sy = (float(v) for v in text.split(","))
        except ValueError:
            return None
        return (sx, sy) if sx > 0 and sy > 0 else None

    def remember_spacing(self, spec: str, spacing_mm) -> None:
        """Store the user's pixel spacing for source ``spec`` (None forgets it)."""
        self.settings.set(self._spacing_key(spec), "" if spacing_mm is None else f"{spacing_mm[0]!r},{spacing_mm[1]!r}")

    def start(self, spec: str | None = None) -> bool:
        """Start the pipeline on ``spec`` (default: the spec in the source box). False on a bad spec."""
        self.stop()
        spec = (spec if spec is not None else self.source_spec.text()).strip()
        self.source_spec.setText(spec)
        self.spacing_mm = self._load_spacing(spec)
        self.readouts.set_user_spacing(self.spacing_mm)
        # Files play like a live feed: paced, and round again at the end.
        options = {"realtime": True, "loop": True, **self.source_options}
        try:
            kind = PICKER_KIND.get(classify_spec(spec))
        except GuidanceError:
            kind = None
        if kind is not None and kind != self.source_kind.currentData():
            self.source_kind.blockSignals(True)
            self.source_kind.setCurrentIndex(self.source_kind.findData(kind))
            self.source_kind.blockSignals(False)
        if self.spacing_mm is not None:
            options["spacing_mm"] = self.spacing_mm
        try:
            open_source(spec, **options)  # fail here, with the reason, rather than in the capture thread
        except GuidanceError as exc:
            self.strip.set_message("no_signal", f"Cannot open source: {exc}")
            self.statusBar().showMessage(f"Cannot open source: {exc}", 10000)
            self.act_start.setChecked(False)
            return False
        self.stages = make_stages(detector=self.detector, target_point_px=self.target_point_px,
                                  spacing_mm=self.spacing_mm)
        self.worker = PipelineWorker(lambda: open_source(spec, **options), self.stages, parent=self)
        self.worker.result_ready.connect(self._on_result_ready)
        self.worker.start()
        self._stopped_by_user = False
        self.result = None
        self.act_start.setChecked(True)
        self.act_start.setText("Stop")
        self.lab_model.setText(f"detector {model_name(self.stages)}")
        self.settings.set("source/kind", self.source_kind.currentData())
        self.settings.set("source/spec", spec)
        self.strip.set_message("info", "Starting\u2026")
        return True

    def stop(self) -> None:
        """Stop recording and the pipeline; waits for the threads (bounded)."""
        if self.recorder is not None:
            self.stop_recording()
        if self.worker is not None:
            worker, self.worker = self.worker, None
            worker.result_ready.disconnect(self._on_result_ready)
            worker.stop()
            worker.deleteLater()
        self._status = None
        self.act_start.setChecked(False)
        self.act_start.setText("Start")

    def toggle_running(self) -> None:
        if self.worker is None:
            self.start()
        else:
            self.stop()
            self._stopped_by_user = True
            self.view.overlay.set_shown(False)
            self.readouts.show_result(None)
            self.strip.set_message("info", "Stopped")

    # -- results -----------------------------------------------------------
    @QtCore.Slot()
    def _on_result_ready(self) -> None:
        if self.worker is None:
            return
        result = self.worker.take_latest()
        if result is not None:
            self.show_result(result)

    def show_result(self, result: FrameResult, now_s: float | None = None) -> None:
        """Draw one result (GUI thread). Its guidance is shown only while fresh."""
        t0 = time.perf_counter()
        self.result = result
        fresh = self._guidance_ok(result, now_s)
        self.view.show_result(result, overlay=fresh)
        self.readouts.show_result(result if fresh and self._layer_on("text") else None)
        self._update_strip(result, fresh, now_s, arrived=True)
        if result.alerts != self._last_alerts:
            if self.recorder is not None:
                for alert in set(result.alerts) - set(self._last_alerts):
                    self._record_event(alert, {"frame": result.frame.index})
            self._last_alerts = result.alerts
        self.update_ms.append((time.perf_counter() - t0) * 1000.0)

    def _guidance_ok(self, result: FrameResult, now_s: float | None = None) -> bool:
        now = time.monotonic() if now_s is None else now_s
        if result.received_s and guidance_is_stale(result, now, STALE_MS):
            return False
        status = self._status
        return not (status is not None and status.state in ("no_signal", "error"))

    def _check_freshness(self) -> None:
        """Hide guidance the moment it goes stale, even when no new frame comes to redraw."""
        self._status = self.worker.status() if self.worker is not None else None
        if self._stopped_by_user:
            return
        if self.result is None:
            status = self._status
            if status is not None and status.state in ("no_signal", "error", "ended"):
                self.strip.set_message("no_signal", self._no_signal_text(status))
            return
        fresh = self._guidance_ok(self.result)
        if not fresh and self.view.overlay.shown:
            self.view.overlay.set_shown(False)
            self.readouts.show_result(None)
        self._update_strip(self.result, fresh)

    def _no_signal_text(self, status) -> str:
        if status.state == "ended":
            return "Source ended"
        what = status.message or f"no frame from {status.source or 'the source'}"
        return f"NO SIGNAL \u2014 guidance hidden: {what}"

    def _update_strip(self, result: FrameResult, fresh: bool, now_s: float | None = None,
                      *, arrived: bool = False) -> None:
        """The message above the image, most important first: no signal, guidance hidden,
        alerts, guidance intermittent (held a moment so a message never flickers), nothing."""
        status = self._status
        now = time.monotonic() if now_s is None else now_s
        if status is not None and status.state in ("no_signal", "error", "ended"):
            self.strip.set_message("no_signal", self._no_signal_text(status))
        elif not fresh:
            age = guidance_age_ms(result, now)
            self._late_since_s, self._late_worst_ms = now, max(self._late_worst_ms, age)
            if status is not None and status.paused:
                self.strip.set_message("stale", "PAUSED \u2014 guidance hidden while the source is paused")
            elif arrived:  # a new frame, but already old: processing is running behind the probe
                self.strip.set_message("stale", f"GUIDANCE HIDDEN \u2014 running {age:.0f} ms behind the probe")
            else:
                self.strip.set_message("stale", f"GUIDANCE HIDDEN \u2014 no new frame for {age:.0f} ms")
        elif result.alerts and self._layer_on("alerts"):
            self.strip.set_message("alert", alert_text(result.alerts))
        elif now - self._late_since_s < HOLD_MESSAGE_S:
            self.strip.set_message("stale", f"GUIDANCE INTERMITTENT \u2014 frames up to {self._late_worst_ms:.0f} ms late")
        else:
            self._late_worst_ms = 0.0
            self.strip.set_message("none", "")

    def _layer_on(self, name: str) -> bool:
        return self.view.overlay.layers.get(name, True)

    def _set_layer(self, name: str, on: bool) -> None:
        self.view.overlay.set_layer(name, on)
        if name in self.layer_actions:
            self.layer_actions[name].setChecked(on)
        self.settings.set(f"layers/{name}", bool(on))
        if name == "text" and self.result is not None:
            self.readouts.show_result(self.result if on and self.view.overlay.shown else None)

    # -- status bar --------------------------------------------------------
    def display_fps(self, window_s: float = 1.0) -> float:
        """Frames put on screen in the last ``window_s`` seconds, per second (counted repaints)."""
        now = time.monotonic()
        n = sum(1 for t in self._paint_times if t >= now - window_s)
        return n / window_s

    def _update_status(self) -> None:
        self.lab_fps.setText(f"display {self.display_fps():.0f} fps")
        status = self._status
        if status is not None:
            lat = f"{status.latency_ms:.0f} ms" if status.latency_ms is not None else "\u2014"
            shown = list(self.view.latency_ms)[-30:]
            screen = f", on screen {sorted(shown)[len(shown) // 2]:.0f} ms" if shown else ""
            self.lab_latency.setText(f"processing {lat}{screen}")
            self.lab_dropped.setText(f"dropped {status.frames_dropped}")
        # What the source is missing (a video cut off): a looped file would replay its part unnoticed.
        notice = self.worker.source_notice if self.worker is not None else ""
        name = Path(status.source).name if status is not None else ""  # a long path would not wrap
        self.readouts.source_note.setText(f"{name}: {notice}" if notice else "")
        if self.recorder is not None:
            self._update_record_label()

    # -- target ------------------------------------------------------------
    def _toggle_pick(self, on: bool) -> None:
        self.view.setCursor(QtCore.Qt.CursorShape.CrossCursor if on else QtCore.Qt.CursorShape.ArrowCursor)

    def _on_image_clicked(self, x_px: float, y_px: float) -> None:
        if not self.act_pick.isChecked():
            return
        self.act_pick.setChecked(False)
        self._toggle_pick(False)
        self.set_target_point((x_px, y_px))

    def set_target_point(self, xy_px) -> None:
        """Aim at ``(x, y)`` frame pixels (None clears): handed to the guidance stage from the next frame."""
        self.target_point_px = None if xy_px is None else (float(xy_px[0]), float(xy_px[1]))
        stage = find_stage(self.stages, "guidance")
        if stage is not None and hasattr(stage, "set_target_point"):
            stage.set_target_point(self.target_point_px)
        self.view.overlay.picked_target_px = self.target_point_px
        self.view.overlay.update(self.result)
        if self.recorder is not None:
            self._record_event("target", {"target_point_px": self.target_point_px})

    # -- spacing -----------------------------------------------------------
    def edit_spacing(self) -> None:
        current = self.spacing_mm or (self.result.frame.spacing_mm if self.result else None)
        height_px = self.result.frame.height_px if self.result else None
        if self.result is not None and self.result.region is not None:
            height_px = self.result.region.height_px
        dlg = SpacingDialog(current, height_px, self)
        if dlg.exec() == QtWidgets.QDialog.DialogCode.Accepted:
            self.set_spacing(dlg.spacing_mm())

    def set_spacing(self, spacing_mm) -> None:
        """Use this pixel spacing (mm/px, (sx, sy)) from now on; None uses the source's own."""
        self.spacing_mm = None if spacing_mm is None else (float(spacing_mm[0]), float(spacing_mm[1]))
        self.remember_spacing(self.source_spec.text(), self.spacing_mm)
        self.readouts.set_user_spacing(self.spacing_mm)
        if self.worker is not None:
            self.start()  # the source stamps the spacing on its frames: reopen it

    # -- recording ---------------------------------------------------------
    def toggle_recording(self) -> None:
        if self.recorder is None:
            self.start_recording()
        else:
            self.stop_recording()

    def start_recording(self, path: str | Path | None = None) -> Path | None:
        """Record every processed frame with its guidance to a ``.usrec`` file."""
        self.act_record.setChecked(False)
        if self.worker is None:
            self.statusBar().showMessage("Start a source before recording", 4000)
            return None
        try:
            try:
                from guidance.recording import Recorder
            except ImportError:
                from guidance.recording.recorder import Recorder
        except ImportError as exc:
            self.statusBar().showMessage(f"Recording is not available here: {exc}", 6000)
            return None
        if path is None:
            folder = self.settings.recordings_dir()
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"session_{datetime.now():%Y%m%d_%H%M%S}.usrec"
        path = Path(path)
        metadata = {"source": self.source_spec.text(), "model": model_name(self.stages),
                    "spacing_mm": list(self.spacing_mm) if self.spacing_mm else None,
                    "target_point_px": list(self.target_point_px) if self.target_point_px else None,
                    "started": datetime.now().isoformat(timespec="seconds")}
        try:
            recorder = Recorder(path, metadata)
            recorder.start()
        except (GuidanceError, OSError) as exc:
            self.statusBar().showMessage(f"Cannot record: {exc}", 10000)
            return None
        self.recorder, self.recording_path = recorder, path
        self._record_started_s = time.monotonic()
        self.worker.add_consumer(recorder.submit)
        self.act_record.setChecked(True)
        self._update_record_label()
        return path

    def stop_recording(self, *, wait: bool = False) -> Path | None:
        """Stop recording. The file is finished on a helper thread (the queue may take a
        moment to flush) so the view keeps running; ``wait`` blocks until it is complete."""
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            if wait:
                self.wait_recording_saved()
            return self.recording_path
        if self.worker is not None:
            self.worker.remove_consumer(recorder.submit)
            if self.worker.source_notice:  # kept in the file: whoever replays it is told too
                recorder.add_event(EVENT_SOURCE_NOTICE, {"message": self.worker.source_notice})
        self.act_record.setChecked(False)
        self.lab_record.setStyleSheet("")
        self.lab_record.setText(f"saving {self.recording_path.name}\u2026")
        done = threading.Thread(target=recorder.stop, name="recording-finish", daemon=False)
        done.start()
        self._finishing.append((done, recorder, self.recording_path))
        self._finish_timer.start()
        if wait:
            self.wait_recording_saved()
        return self.recording_path

    def wait_recording_saved(self, timeout_s: float = 60.0) -> None:
        for thread, _, _ in list(self._finishing):
            thread.join(timeout_s)
        self._check_finishing()

    def _check_finishing(self) -> None:
        still = []
        for thread, recorder, path in self._finishing:
            if thread.is_alive():
                still.append((thread, recorder, path))
            elif getattr(recorder, "error", None):
                self.lab_record.setText(f"recording stopped early: {recorder.error}")
                self.lab_record.setStyleSheet("color: #d55e00;")
            elif self.recorder is None:
                self.lab_record.setText(f"saved {path.name}")
        self._finishing = still
        if not still:
            self._finish_timer.stop()

    def _update_record_label(self) -> None:
        elapsed = time.monotonic() - self._record_started_s
        try:
            free_gb = shutil.disk_usage(self.recording_path.parent).free / 1e9
            free = f", {free_gb:.1f} GB free"
        except OSError:
            free = ""
        err = getattr(self.recorder, "error", None)
        if err:
            self.lab_record.setText(f"RECORDING STOPPED: {err}")
            self.lab_record.setStyleSheet("color: #d55e00; font-weight: bold;")
            return
        self.lab_record.setText(f"\u25cf REC {int(elapsed // 60):02d}:{int(elapsed % 60):02d}{free}")
        self.lab_record.setStyleSheet("color: #d55e00; font-weight: bold;")

    def _record_event(self, kind: str, data: dict | None = None) -> None:
        if self.recorder is not None:
            try:
                self.recorder.add_event(kind, data)
            except Exception as exc:  # an event must never take the live view down
                self.statusBar().showMessage(f"event not recorded: {exc}", 4000)

    def mark_injection(self) -> None:
        self._record_event("injection", {"frame": self.result.frame.index if self.result else None})
        self.statusBar().showMessage("Injection marked" if self.recorder else "Injection noted (not recording)", 3000)

    # -- misc --------------------------------------------------------------
    def snapshot(self, path: str | Path | None = None) -> Path:
        """Save what is on screen (image, overlay, readouts) as a PNG."""
        if path is None:
            folder = self.settings.snapshots_dir()
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"snapshot_{datetime.now():%Y%m%d_%H%M%S_%f}.png"
        path = Path(path)
        self.centralWidget().grab().save(str(path), "PNG")
        self.statusBar().showMessage(f"Snapshot saved: {path}", 4000)
        return path

    def shortcuts_text(self) -> str:
        lines = [f"{a.shortcut().toString():>14}   {a.text()}" for a in self.actions() if not a.shortcut().isEmpty()]
        return "\n".join(lines)

    def show_shortcuts(self) -> None:
        box = QtWidgets.QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setText(f"<pre>{self.shortcuts_text()}</pre>")
        box.setModal(False)
        box.show()

    def set_zoom_to_region(self, on: bool) -> None:
        self.act_zoom.setChecked(bool(on))
        self.view.set_zoom_to_region(on)
        self.settings.set("view/zoom_to_region", bool(on))

    def toggle_fullscreen(self) -> None:
        if self.isFullScreen():
            self.showNormal()
        else:
            self.showFullScreen()
        self.act_fullscreen.setChecked(self.isFullScreen())

    def open_player(self, path: str | None = None):
        from .player import PlayerWindow

        self.player = PlayerWindow(settings=self.settings, detector=self.detector)
        if path is None and self.recording_path is not None and self.recorder is None:
            path = str(self.recording_path)
        if path:
            self.player.open(path)
        self.player.show()
        return self.player

    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:
        self.fresh_timer.stop()
        self.status_timer.stop()
        self.stop()
        self.wait_recording_saved()  # never leave a recording half-written
        self.settings.set("window/geometry", self.saveGeometry())
        self.settings.sync()
        if self.player is not None:
            self.player.close()
        super().closeEvent(ev)


class SpacingDialog(QtWidgets.QDialog):
    """Set the pixel spacing directly (mm per pixel) or from the imaging depth (mm over the image height)."""

    def __init__(self, spacing_mm, height_px: int | None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Pixel spacing")
        self.height_px = height_px
        form = QtWidgets.QFormLayout(self)
        self.sx = QtWidgets.QDoubleSpinBox(decimals=4, minimum=0.0, maximum=5.0, singleStep=0.01)
        self.sy = QtWidgets.QDoubleSpinBox(decimals=4, minimum=0.0, maximum=5.0, singleStep=0.01)
        self.depth = QtWidgets.QDoubleSpinBox(decimals=1, minimum=0.0, maximum=300.0, singleStep=1.0, suffix=" mm")
        self.sx.setSuffix(" mm/px")
        self.sy.setSuffix(" mm/px")
        if spacing_mm:
            self.sx.setValue(spacing_mm[0])
            self.sy.setValue(spacing_mm[1])
        form.addRow("Across (x)", self.sx)
        form.addRow("Down (y)", self.sy)
        form.addRow(f"or imaging depth over {height_px or '?'} px", self.depth)
        self.depth.setEnabled(bool(height_px))
        self.depth.valueChanged.connect(self._from_depth)
        form.addRow(QtWidgets.QLabel("0 = unknown: use the source's own spacing."))
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _from_depth(self, depth_mm: float) -> None:
        if self.height_px and depth_mm > 0:
            s = depth_mm / self.height_px
            self.sx.setValue(s)
            self.sy.setValue(s)

    def spacing_mm(self):
        sx, sy = self.sx.value(), self.sy.value()
        return (sx, sy) if sx > 0 and sy > 0 else None
