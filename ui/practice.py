"""Practice mode panel: the session plays with guidance hidden, stops at checkpoints,
asks for the needle tip and the target, scores each answer and reveals the guidance.

All scoring is in :mod:`guidance.training.practice` (Qt-free); this panel only
plays frames, takes clicks and shows feedback. :class:`ProgressPanel` shows a
trainee's scores over time from the progress database.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from guidance.training.practice import Answer, PracticeResult, PracticeRun
from guidance.training.session import record_to_result

from .image_view import ImageView
from .palette import colour, css, pen

_PROMPTS = {"ask_tip": "Click the needle TIP", "ask_target": "Click the TARGET (where the needle should end)"}


class PracticePanel(QtWidgets.QWidget):
    """Drives one :class:`PracticeRun` over a session's frames.

    Parameters
    ----------
    run : PracticeRun
    image_of : callable
        ``image_of(row) -> uint8 HxW`` frame of the session's record ``row``.
    fps : float
        Playback rate between checkpoints (frames per second, at ``speed`` 1).
    playback : bool
        False jumps straight to each checkpoint (no playing in between).

    Signals
    -------
    answered(object)
        An :class:`Answer` after the second click of a checkpoint.
    finished(object)
        The :class:`PracticeResult` when the last checkpoint is answered.
    """

    answered = QtCore.Signal(object)
    finished = QtCore.Signal(object)

    def __init__(self, run: PracticeRun, image_of: Callable[[int], np.ndarray], *, fps: float = 20.0,
                 speed: float = 1.0, playback: bool = True, trainee: str | None = None, db_path=None,
                 session_id: str = "", parent=None) -> None:
        super().__init__(parent)
        self.run = run
        self.trainee, self.db_path, self.session_id = trainee, db_path, session_id
        self.saved = False
        self.image_of = image_of
        self.playback = playback
        self.state = "idle"
        self.row = 0
        self._tip_click: tuple[float, float] | None = None
        self.view = ImageView(self)
        self.view.clicked_px.connect(self.click_at)
        self.prompt = QtWidgets.QLabel("Practice: guidance is hidden. Press Start.")
        self.prompt.setStyleSheet("font-size: 15px; font-weight: bold;")
        self.feedback = QtWidgets.QLabel("")
        self.feedback.setWordWrap(True)
        self.start_button = QtWidgets.QPushButton("Start")
        self.skip_button = QtWidgets.QPushButton("Can't see it")
        self.next_button = QtWidgets.QPushButton("Next")
        self.save_button = QtWidgets.QPushButton("Save score\u2026")
        self.save_button.clicked.connect(self.save_score)
        self.worst_list = QtWidgets.QListWidget()
        self.worst_list.setVisible(False)
        self.worst_list.currentRowChanged.connect(self._review)
        self.start_button.clicked.connect(self.start)
        self.skip_button.clicked.connect(lambda: self.click_at(None, None))
        self.next_button.clicked.connect(self.next_checkpoint)
        buttons = QtWidgets.QHBoxLayout()
        for b in (self.start_button, self.skip_button, self.next_button, self.save_button):
            buttons.addWidget(b)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.prompt)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.feedback)
        lay.addLayout(buttons)
        lay.addWidget(self.worst_list)
        self._markers = pg.ScatterPlotItem(pxMode=True)
        self._markers.setZValue(50)
        self._links = pg.PlotCurveItem(pen=pen("text", 1.5, dashed=True), connect="pairs")
        self._links.setZValue(49)
        self.view.vb.addItem(self._links)
        self.view.vb.addItem(self._markers)
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(max(1, int(round(1000.0 / (fps * speed)))))
        self._timer.timeout.connect(self._tick)
        self._review_answers: list[Answer] = []
        self._update_buttons()
        if run.records:
            self._show(0, overlay=False)

    # -- flow --------------------------------------------------------------
    def start(self) -> None:
        if not self.run.checkpoints:
            self.prompt.setText("No checkpoints in this session (the needle is never seen with a target).")
            self.state = "done"
            self._update_buttons()
            return
        self.state = "playing"
        self._go_to_checkpoint()

    def next_checkpoint(self) -> None:
        if self.state != "feedback":
            return
        if self.run.finished:
            self._finish()
        else:
            self.state = "playing"
            self._go_to_checkpoint()

    def click_at(self, x_px: float | None, y_px: float | None) -> None:
        """A click (frame pixels) or None for "can't see it", in the asking states."""
        xy = None if x_px is None else (float(x_px), float(y_px))
        if self.state == "ask_tip":
            self._tip_click = xy
            self.state = "ask_target"
            self._draw_clicks([xy], [])
        elif self.state == "ask_target":
            ans = self.run.submit(self._tip_click, xy)
            self.state = "feedback"
            self._show_feedback(ans)
            self.answered.emit(ans)
        self._update_buttons()

    # -- internals ---------------------------------------------------------
    def _go_to_checkpoint(self) -> None:
        self._clear_marks()
        self.feedback.setText("")
        cp = self.run.current
        if not self.playback or cp.row <= self.row:
            self._arrive()
            return
        self.prompt.setText(f"Watching... (checkpoint {len(self.run.answers) + 1}/{len(self.run.checkpoints)})")
        self._timer.start()
        self._update_buttons()

    def _tick(self) -> None:
        cp = self.run.current
        self.row = min(self.row + 1, cp.row)
        self._show(self.row, overlay=False)
        if self.row >= cp.row:
            self._timer.stop()
            self._arrive()

    def _arrive(self) -> None:
        cp = self.run.current
        self.row = cp.row
        self._show(cp.row, overlay=False)
        self.state = "ask_tip"
        self._update_buttons()

    def _show(self, row: int, *, overlay: bool) -> None:
        self.view.show_result(record_to_result(self.run.records[row], self.image_of(row)), overlay=overlay)

    def _show_feedback(self, ans: Answer) -> None:
        self._show(ans.checkpoint.row, overlay=True)
        cp = ans.checkpoint
        truth_tgt = cp.target_point_px or ans.nearest_target_px
        self._draw_clicks([ans.tip_click_px, ans.target_click_px], [cp.tip_px, truth_tgt])
        u = self.run.units
        fmt = lambda e: "not given" if e is None else f"{e:.1f} {u}"  # noqa: E731
        self.feedback.setText(f"Tip off by {fmt(ans.tip_error_mm)}, target off by {fmt(ans.target_error_mm)} "
                              f"(reference: {self.run.reference}). Score {ans.score:.0f}/100. "
                              f"Guidance shown; white crosses are your clicks.")
        last = self.run.finished
        self.prompt.setText("Last checkpoint answered: press Next for your score." if last
                            else "Feedback: press Next to continue.")

    def _finish(self) -> None:
        res: PracticeResult = self.run.result()
        self.state = "done"
        self.prompt.setText(f"Practice score {res.score:.0f}/100 over {len(res.answers)} checkpoints")
        u = res.units
        self._review_answers = res.worst(3)
        self.worst_list.clear()
        for a in self._review_answers:
            tip = "missed" if a.tip_error_mm is None else f"{a.tip_error_mm:.1f} {u}"
            tgt = "missed" if a.target_error_mm is None else f"{a.target_error_mm:.1f} {u}"
            self.worst_list.addItem(f"t = {a.checkpoint.t_s:.1f} s: score {a.score:.0f}, tip {tip}, target {tgt}")
        self.worst_list.setVisible(True)
        self.feedback.setText("Your worst answers are listed below: select one to review it.")
        self._update_buttons()
        self.finished.emit(res)

    def save_score(self) -> bool:
        """Store the run's score for the trainee (asked for when not set) in the progress database."""
        from guidance.errors import GuidanceError
        from guidance.training.progress_db import DEFAULT_DB, ProgressDB, check_id

        if self.state != "done" or self.saved:
            return False
        trainee = self.trainee
        if not trainee:
            trainee, ok = QtWidgets.QInputDialog.getText(self, "Save practice score",
                                                         "Trainee ID (letters, digits, _ . -; not a name):")
            if not ok or not trainee:
                return False
        res = self.run.result()
        try:
            check_id(trainee, "trainee")
            with ProgressDB(self.db_path or DEFAULT_DB) as db:
                db.add_session(trainee, res.score, metrics=res.summary_metrics(), kind="practice",
                               source_name=f"session {self.session_id}" if self.session_id else "")
        except GuidanceError as exc:
            QtWidgets.QMessageBox.warning(self, "Score not saved", str(exc))
            return False
        self.trainee, self.saved = trainee, True
        self.feedback.setText(f"Score saved for trainee {trainee}.")
        self._update_buttons()
        return True

    def _review(self, i: int) -> None:
        if 0 <= i < len(self._review_answers):
            self._show_feedback(self._review_answers[i])
            self.prompt.setText(f"Reviewing answer {i + 1} of the worst {len(self._review_answers)}")

    def _clear_marks(self) -> None:
        self._markers.setData([])
        self._links.setData([], [])

    def _draw_clicks(self, clicks, refs) -> None:
        spots = []
        for xy in clicks:
            if xy is not None:
                spots.append({"pos": xy, "symbol": "x", "size": 16, "brush": colour("text"),
                              "pen": pen("halo", 1.0)})
        for xy, role in zip(refs, ("tip", "surface")):
            if xy is not None:
                spots.append({"pos": xy, "symbol": "o", "size": 14, "brush": None, "pen": pen(role, 2.5)})
        self._markers.setData(spots)
        pairs = [(c, r) for c, r in zip(clicks, refs) if c is not None and r is not None]
        if pairs:
            xs = np.array([[c[0], r[0]] for c, r in pairs]).ravel()
            ys = np.array([[c[1], r[1]] for c, r in pairs]).ravel()
            self._links.setData(xs, ys)

    def _update_buttons(self) -> None:
        asking = self.state in _PROMPTS
        if asking:
            self.prompt.setText(f"Checkpoint {len(self.run.answers) + 1}/{len(self.run.checkpoints)}: "
                                f"{_PROMPTS[self.state]}")
            self.prompt.setStyleSheet(f"font-size: 15px; font-weight: bold; color: {css('tip')};"
                                      " background: black; padding: 3px;")
        else:
            self.prompt.setStyleSheet("font-size: 15px; font-weight: bold;")
        self.start_button.setEnabled(self.state == "idle")
        self.skip_button.setEnabled(asking)
        self.next_button.setEnabled(self.state == "feedback")
        self.save_button.setEnabled(self.state == "done" and bool(self.run.answers) and not self.saved)


class ProgressPanel(QtWidgets.QWidget):
    """A trainee's scores over time (performed sessions and practice runs)."""

    def __init__(self, db_path, trainee: str, parent=None) -> None:
        super().__init__(parent)
        self.db_path, self.trainee = db_path, trainee
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "session")
        self.plot.setLabel("left", "score (0-100)")
        self.plot.setYRange(0, 100)
        self.plot.addLegend()
        self.summary = QtWidgets.QLabel()
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.plot, 1)
        self.series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.refresh()

    def refresh(self) -> None:
        from guidance.training.progress_db import ProgressDB

        with ProgressDB(self.db_path) as db:
            rows = db.sessions(self.trainee)
        self.plot.clear()
        self.series = {}
        for kind, role in (("performed", "blue"), ("practice", "orange")):
            idx = np.array([i for i, r in enumerate(rows) if r.kind == kind], float)
            sc = np.array([r.score for r in rows if r.kind == kind], float)
            self.series[kind] = (idx, sc)
            if len(idx):
                self.plot.plot(idx + 1, sc, pen=pen(role, 2), symbol="o", symbolBrush=colour(role), name=kind)
        if rows:
            self.summary.setText(f"Trainee {self.trainee}: {len(rows)} sessions, last score {rows[-1].score:.0f}, "
                                 f"first {rows[0].score:.0f}")
        else:
            self.summary.setText(f"Trainee {self.trainee}: no sessions yet")


def find_truth(path) -> list[dict] | None:
    """The ``truth.jsonl`` beside a sample recording (../shared/CONTRACT.md), when there is one."""
    from pathlib import Path

    from guidance.contract import read_jsonl

    path = Path(path)
    for p in ((path / "truth.jsonl") if path.is_dir() else None, path.with_name("truth.jsonl")):
        if p is not None and p.is_file():
            return list(read_jsonl(p))
    return None


class PracticeDialog(QtWidgets.QDialog):
    """A practice run in its own window (what the replay player opens)."""

    def __init__(self, run: PracticeRun, image_of, *, fps: float = 20.0, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Practice mode — guidance hidden until you answer")
        self.panel = PracticePanel(run, image_of, fps=fps, parent=self)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.panel)
        self.resize(900, 900)


def open_practice(parent, data) -> PracticeDialog | None:
    """Start practice mode on the replay player's data (``ui.replay_data.ReplayData``).

    Needs the guidance as recorded (or a ``truth.jsonl`` beside the file) to
    score against; says so in a message box otherwise. Returns the (shown) dialog.
    """
    if data is None:
        return None
    n = len(data)
    truth = find_truth(data.path)
    if truth is not None and len(truth) != n:
        truth = None
    if data.has_recorded_guidance:
        records = [data.record(i) for i in range(n)]
    elif truth is not None:
        records = truth
    else:
        QtWidgets.QMessageBox.information(parent, "Practice mode",
                                          "Practice needs a recording made by this system (its guidance is the "
                                          "reference) or a truth.jsonl beside the file.")
        return None
    # instructor checkpoints are events; the player keeps them as marks on the timeline
    events = [{"kind": m.kind, "t_s": records[m.index].get("t_s", 0.0)} for m in getattr(data, "marks", [])]
    run = PracticeRun(records, events, truth=truth)
    dlg = PracticeDialog(run, lambda i: data.frame(i).image, fps=float(getattr(data, "fps", 20.0)), parent=parent)
    dlg.show()
    return dlg


def main(argv=None) -> int:
    """``python -m ui.practice REC [--truth truth.jsonl] [--trainee ID --db PATH]``: practise on a recording."""
    import argparse
    import sys

    from guidance.contract import read_jsonl
    from guidance.errors import GuidanceError
    from guidance.training.progress_db import DEFAULT_DB, check_id
    from guidance.training.session import load_session

    ap = argparse.ArgumentParser(prog="python -m ui.practice", description="Practice mode on a recorded session.")
    ap.add_argument("recording", nargs="?", help="a recording with frames (.usrec)")
    ap.add_argument("--progress", metavar="TRAINEE", help="show the trainee's scores over time instead")
    ap.add_argument("--truth", help="truth.jsonl to score against (else the recorded detections)")
    ap.add_argument("--trainee", help="trainee ID: store the practice score")
    ap.add_argument("--db", help="progress database")
    ap.add_argument("--speed", type=float, default=1.0, help="playback speed between checkpoints")
    args = ap.parse_args(argv)
    if args.progress:
        try:
            check_id(args.progress, "trainee")
        except GuidanceError as exc:
            print(f"practice: {exc}", file=sys.stderr)
            return 2
        app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
        prog = ProgressPanel(args.db or DEFAULT_DB, args.progress)
        prog.setWindowTitle(f"Progress of {args.progress}")
        prog.resize(700, 450)
        prog.show()
        return app.exec()
    if not args.recording:
        ap.error("a recording is needed (or --progress TRAINEE)")
    try:
        if args.trainee:
            check_id(args.trainee, "trainee")
        session = load_session(args.recording)
        if session.image_of is None:
            raise GuidanceError(f"{args.recording}: has no frames to practise on (a recording is needed)")
        truth = list(read_jsonl(args.truth)) if args.truth else None
        run = PracticeRun(session.records, session.events, truth=truth)
    except (GuidanceError, ValueError) as exc:
        print(f"practice: {exc}", file=sys.stderr)
        return 2
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    fps = float(session.metadata.get("fps") or 20.0)
    panel = PracticePanel(run, session.image, fps=fps, speed=args.speed, trainee=args.trainee, db_path=args.db,
                          session_id=session.session_id)
    panel.setWindowTitle("Practice mode (not a cleared medical device)")
    if args.trainee:
        panel.finished.connect(lambda _res: panel.save_score())
    panel.resize(900, 900)
    panel.show()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
