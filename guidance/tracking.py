"""Needle tracking and target smoothing over time.

:class:`NeedleTracker` filters the detected needle with OpenCV's Kalman filter
(tip position and velocity, shaft direction as a unit vector). Each prediction
adds the picture's own motion around the shaft, measured by Lucas-Kanade
optical flow (hand tremor, probe drift), so the drawn needle stays on the
needle while detector noise is smoothed. A detection outside the filter's
innovation gate is not folded into the track (a persistent one starts a new
track): a stray one is held back, and once such detections are no longer
rare (frames that are not a continuous sequence) each is shown as it is, not
confirmed, with the track held behind it. Frames where the detector misses
hold the last position, moved by the flow (not by the old velocity), for at
most ``coast_s`` seconds and only while the picture still shows the shaft's
echo there: then the needle is ``lost`` and is not shown. A lost needle is
never invented.

:class:`TargetSmoother` smooths the target surfaces (cartilage top, bone) over
time on a common 1-pixel x-grid and follows probe motion by re-registering or
resetting on large shifts.

Time comes from ``frame.timestamp_s``; a timestamp that goes backwards (a
replay seeking or looping) resets both, and so does a frame that shows another
scene (:class:`TrackStage`: a folder of unrelated frames, a cut in a video).
"""

from __future__ import annotations

import collections
import math
from dataclasses import replace

import cv2
import numpy as np

from .geometry import length_mm, resample_on_grid, sample_along
from .scene import SCENE_CHANGE_SIMILARITY, SceneWatch
from .types import Detection, Frame, FrameResult, NeedleDetection, NeedleTrack, TargetDetection

# Chi-square 99.9 % quantile for 4 degrees of freedom (tip x, y, direction x, y).
GATE_CHI2_4DOF = 18.47
_MARGIN = 24  # px of picture kept around the shaft points for the flow
_MIN_ECHO = 4.0  # grey levels: a shaft echo weaker than this over its sides cannot say it has gone
_ACROSS_PX = np.concatenate([np.arange(-16.0, -11.0), np.arange(-8.0, 9.0), np.arange(12.0, 17.0)])
_ON_SHAFT = np.abs(_ACROSS_PX) <= 8.0

_F64 = np.float64  # the filter runs in double precision (CV_64F)


class NeedleTracker:
    """Kalman filter on the needle: flow-compensated prediction, outlier gating, bounded coast.

    Parameters
    ----------
    coast_s : float
        Longest time without an accepted detection before the needle is lost.
    tip_along_sd_px, tip_across_sd_px : float
        Measurement noise of the detector's tip (1 SD, pixels) along the shaft
        and across it. Detectors place the tip less surely along the shaft
        (where the bright line fades out) than across it; 4 px along suits the
        model detector on the simulator (its tip wobble about a 0.5 s running
        mean: 0.25 mm raw, 0.25 tracked with 2 px, 0.20 with 4 px).
    dir_sd : float
        Least measurement noise of the detector's unit direction (1 SD; 0.02 ~ 1.1 deg).
    dir_endpoint_sd_px : float
        Error of the detector's shaft ends across the shaft (1 SD, px): the
        direction's noise is ``sqrt(2) * dir_endpoint_sd_px / length`` when that
        is larger, so a short visible shaft is trusted less. 2.5 px matches the
        model detector on the simulator (angle error x shaft length ~ constant).
        The reported ``angle_sd_deg`` never drops below one detection's: the
        detector's angle errors persist over many frames, averaging does not
        remove them, and the cone must not claim it does.
    accel_noise : float
        Process noise of the tip: square root of the white-acceleration spectral
        density (px / s^1.5) while the needle moves as the filter expects. It
        is raised automatically (up to ``max_noise_gain`` times the variance)
        while the innovations say the needle manoeuvres, so a still needle is
        steady and a moving one is not left behind.
    dir_rate_sd_s : float
        Process noise: how fast the direction may turn (unit-vector change per sqrt(s)).
    gate_chi2 : float
        Innovation gate on the squared Mahalanobis distance.
    reinit_frames : int
        A detection outside the gate that persists (consistent with itself) for
        this many frames in a row replaces the track: a new needle, or the same
        one redirected.
    disagree_window, show_disagreeing_after : int
        Until then a detection outside the gate of a confirmed track is held
        back (the track coasts) while it is the only one among the last
        ``disagree_window`` detections: one stray frame in a continuous
        sequence. (A track not yet confirmed holds nothing back: the detection
        starts a new track at once.) Once ``show_disagreeing_after``
        of them disagreed with the track, the frames are not behaving as a
        sequence (independent frames of one phantom, each with the needle posed
        anew), and each such detection is shown as it is (not confirmed), with
        the track held behind it: the detector's view of this frame beats a
        track's memory of others.
    manoeuvre_across_px, manoeuvre_angle_deg, manoeuvre_jump_px : float
        A detection whose shaft lies on the track's own line (within these of
        it; its tip up to 60 px along it) but whose tip is outside the gate or
        more than ``manoeuvre_jump_px`` from the prediction is the same needle
        advancing or withdrawing faster than the filter expected (a sudden
        pull-back): the filter restarts on it and the track goes on, rather
        than drawing the tip where the old velocity says.
    confirm_frames : int
        A track coasts through missed detections only once this many
        detections have confirmed it (``NeedleTrack.confirmed``); a needle
        seen once (maybe a spurious detection) is shown for that frame only,
        and dropping it raises no alert.
    use_flow : bool
        Add the picture's motion around the shaft (Lucas-Kanade flow) to each
        prediction.
    flow_tip_sd_px : float
        Uncertainty added per frame by the flow (px).
    coast_min_echo : float
        A coasting needle is lost as soon as the picture's echo along the held
        shaft (averaged along it: its brightest line within 8 px over the lines
        12-16 px away) falls below this fraction of the echo while it was
        detected: a needle rolled out of the plane or withdrawn takes its echo
        with it, while a detector's dropout leaves it. 0 turns the check off;
        an echo under 4 grey levels while detected is not judged. On the 50
        tuning scenes (every frame, with tracking) 0.5 took the false needles
        of the out-of-plane scenes from 2.1 % to 0.5 % and recall from 93.1 %
        to 93.0 %.
    coast_min_length_mm : float
        A needle whose last accepted detection was shorter than this (a
        sliver at the edge of the plane, as a needle enters or rolls out of
        it) is not coasted: once the sliver is gone the needle most likely
        is. Off when the frame has no pixel spacing. On the 50 tuning scenes
        (tracked, every 2nd frame scored) 1.5 mm took the out-of-plane
        scenes' false needles from 6.3 % to 0.5 % and recall from 95.6 % to
        95.5 % (model card).
    """

    def __init__(self, coast_s: float = 0.5, *, tip_along_sd_px: float = 4.0, tip_across_sd_px: float = 1.0,
                 dir_sd: float = 0.02, dir_endpoint_sd_px: float = 2.5,
                 accel_noise: float = 20.0, max_noise_gain: float = 2000.0, dir_rate_sd_s: float = 0.05,
                 gate_chi2: float = GATE_CHI2_4DOF, reinit_frames: int = 2, confirm_frames: int = 3,
                 disagree_window: int = 10, show_disagreeing_after: int = 2,
                 manoeuvre_across_px: float = 6.0, manoeuvre_angle_deg: float = 8.0, manoeuvre_jump_px: float = 12.0,
                 use_flow: bool = True, flow_tip_sd_px: float = 0.3, coast_min_echo: float = 0.5,
                 coast_min_length_mm: float = 1.5) -> None:
        self.coast_s = float(coast_s)
        self.tip_along_sd_px = tip_along_sd_px
        self.tip_across_sd_px = tip_across_sd_px
        self.dir_sd = dir_sd
        self.dir_endpoint_sd_px = dir_endpoint_sd_px
        self.accel_noise = accel_noise
        self.max_noise_gain = max_noise_gain
        self.dir_rate_sd_s = dir_rate_sd_s
        self.gate_chi2 = gate_chi2
        self.reinit_frames = max(1, int(reinit_frames))
        self.disagree_window = max(1, int(disagree_window))
        self.show_disagreeing_after = max(1, int(show_disagreeing_after))
        self.manoeuvre_across_px, self.manoeuvre_angle_deg = manoeuvre_across_px, manoeuvre_angle_deg
        self.manoeuvre_jump_px = manoeuvre_jump_px
        self.confirm_frames = max(1, int(confirm_frames))
        self.use_flow = use_flow
        self.coast_min_echo = coast_min_echo
        self.coast_min_length_mm = coast_min_length_mm
        self._flow_var = flow_tip_sd_px**2
        self.reset()

    # -- state ---------------------------------------------------------------
    def reset(self) -> None:
        """Forget the needle (e.g. after a seek in a replay)."""
        self._kf: cv2.KalmanFilter | None = None
        self._t_s: float | None = None          # time of the last update
        self._t_detect_s: float | None = None   # time of the last accepted detection
        self._length_px = 0.0                   # visible shaft length (tip to tail)
        self._confidence = 0.0
        self._frames_since = 0
        self._pending: list[NeedleDetection] = []  # consecutive gated-out detections
        self._pending_t: list[float] = []           # and their times
        self._prev_image: np.ndarray | None = None
        self._nis = 2.0                         # running mean of the tip's normalised innovation
        self._hits = 0                          # detections accepted by the current track
        self._echo_ref: float | None = None     # the shaft's echo over its surroundings while detected
        self._last_short = False                # the last accepted detection was a sliver (no coast)
        self._disagreed: collections.deque[bool] = collections.deque(maxlen=self.disagree_window)
        """For each of the last detections: whether the track could not explain it (gated out)."""

    @property
    def active(self) -> bool:
        return self._kf is not None

    def _new_filter(self, det: NeedleDetection, velocity_px_s: np.ndarray | None = None) -> None:
        kf = cv2.KalmanFilter(6, 4, 0, cv2.CV_64F)
        kf.measurementMatrix = np.array([[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0],
                                         [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]], _F64)
        u = det.direction
        v = (0.0, 0.0) if velocity_px_s is None else (float(velocity_px_s[0]), float(velocity_px_s[1]))
        kf.statePost = np.array([[det.tip_px[0]], [det.tip_px[1]], [v[0]], [v[1]], [u[0]], [u[1]]], _F64)
        # Velocity unknown at first (or from two detections only): a wide prior lets the next frames set it.
        self._dir_var_meas = self._dir_var(det)
        kf.errorCovPost = np.diag([self.tip_along_sd_px**2] * 2 + [60.0**2] * 2 + [self._dir_var_meas] * 2).astype(_F64)
        self._kf = kf
        self._length_px = float(np.hypot(*np.subtract(det.tip_px, det.tail_px)))
        self._confidence = float(det.confidence)
        self._pending, self._pending_t = [], []
        self._nis = 2.0
        self._hits = 1
        self._echo_ref = None

    def _predict(self, dt: float) -> None:
        kf = self._kf
        F = np.eye(6, dtype=_F64)
        F[0, 2] = F[1, 3] = dt
        kf.transitionMatrix = F
        # Manoeuvre adaptation: the tip's innovations running above their
        # expected size (2 for 2 dof) mean the model is too stiff right now.
        qa = self.accel_noise**2 * min(max((self._nis / 2.0) ** 2, 1.0), self.max_noise_gain)
        q = np.zeros((6, 6), _F64)
        blk = qa * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
        q[np.ix_([0, 2], [0, 2])] = blk
        q[np.ix_([1, 3], [1, 3])] = blk
        q[4, 4] = q[5, 5] = self.dir_rate_sd_s**2 * dt
        kf.processNoiseCov = q
        kf.predict()

    def _mahalanobis2(self, z: np.ndarray, r: np.ndarray) -> float:
        kf = self._kf
        H = kf.measurementMatrix
        innov = z - H @ kf.statePre
        S = H @ kf.errorCovPre @ H.T + r
        return float((innov.T @ np.linalg.solve(S, innov))[0, 0])

    def _correct(self, z: np.ndarray, r: np.ndarray) -> None:
        kf = self._kf
        innov = z[0:2] - kf.statePre[0:2]
        s_tip = kf.errorCovPre[0:2, 0:2] + r[0:2, 0:2]
        self._nis += 0.3 * (float((innov.T @ np.linalg.solve(s_tip, innov))[0, 0]) - self._nis)
        kf.measurementNoiseCov = r
        kf.correct(z)
        # Keep the direction a unit vector (the filter treats its components as free).
        s = kf.statePost
        n = math.hypot(s[4, 0], s[5, 0])
        if n > 1e-9:
            s[4, 0] /= n
            s[5, 0] /= n
            kf.statePost = s

    def _accept_prediction(self) -> None:
        kf = self._kf
        kf.statePost = kf.statePre.copy()
        kf.errorCovPost = kf.errorCovPre.copy()

    def _detection_noise(self, det: NeedleDetection) -> np.ndarray:
        """Measurement covariance: the tip's noise ellipse aligned with the shaft."""
        u = det.direction
        n = np.array([-u[1], u[0]])
        r = np.zeros((4, 4), _F64)
        r[0:2, 0:2] = self.tip_along_sd_px**2 * np.outer(u, u) + self.tip_across_sd_px**2 * np.outer(n, n)
        r[2, 2] = r[3, 3] = self._dir_var(det)
        return r

    def _dir_var(self, det: NeedleDetection) -> float:
        """Variance of the measured unit direction: endpoint errors across the shaft over its length."""
        length = max(float(np.hypot(*np.subtract(det.tip_px, det.tail_px))), 1.0)
        return max(self.dir_sd**2, 2.0 * (self.dir_endpoint_sd_px / length) ** 2)

    def _on_own_line(self, det: NeedleDetection) -> bool:
        """``det`` lies on the track's last shaft line, its tip moved along it only."""
        s = self._kf.statePost[:, 0]
        u = s[4:6] / max(math.hypot(s[4], s[5]), 1e-9)
        last = NeedleDetection((float(s[0]), float(s[1])), (float(s[0] - u[0]), float(s[1] - u[1])), 1.0)
        return _consistent(last, det, across_px=self.manoeuvre_across_px, angle_deg=self.manoeuvre_angle_deg)

    @staticmethod
    def _measurement(det: NeedleDetection) -> np.ndarray:
        u = det.direction
        return np.array([[det.tip_px[0]], [det.tip_px[1]], [u[0]], [u[1]]], _F64)

    # -- optical flow ----------------------------------------------------------
    _FLOW_FRACTIONS = np.linspace(0.0, 0.3, 6)  # along the shaft's front third: where the tip is
    _LK = dict(winSize=(21, 21), maxLevel=2,
               criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))

    def _flow_motion(self, image: np.ndarray, state: np.ndarray) -> np.ndarray | None:
        """How the shaft's surroundings moved since the previous frame (Lucas-Kanade).

        Returns the shift in px, or None when fewer than 3 points survive the
        forward-backward check or they disagree (needle gone out of plane,
        picture changed too much).
        """
        prev = self._prev_image
        if prev is None or prev.shape != image.shape:
            return None
        tip, u = state[0:2, 0], state[4:6, 0]
        p0 = tip - (self._FLOW_FRACTIONS * max(self._length_px, 10.0))[:, None] * u
        h, w = image.shape
        p0 = p0[(p0[:, 0] >= 0) & (p0[:, 0] < w) & (p0[:, 1] >= 0) & (p0[:, 1] < h)]
        if len(p0) < 3:
            return None
        # Work on the patch around the shaft only: pyramids of the whole frame cost more.
        margin = _MARGIN
        x0, y0 = np.maximum(np.floor(p0.min(axis=0)).astype(int) - margin, 0)
        x1, y1 = np.minimum(np.ceil(p0.max(axis=0)).astype(int) + margin, (w, h))
        prev, image = prev[y0:y1, x0:x1], image[y0:y1, x0:x1]
        p0 = (p0 - (x0, y0)).astype(np.float32).reshape(-1, 1, 2)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, image, p0, None, **self._LK)
        if p1 is None:
            return None
        pb, st2, _ = cv2.calcOpticalFlowPyrLK(image, prev, p1, None, **self._LK)
        fb = np.abs(pb - p0).reshape(-1, 2).max(axis=1)
        good = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < 1.0)
        n = int(good.sum())
        if n < 3:
            return None
        moved = p1.reshape(-1, 2)[good]
        steps = moved - p0.reshape(-1, 2)[good]
        shift = np.sort(steps, axis=0)[n // 2].astype(float)   # per-axis median of a handful
        if np.sort(np.abs(steps - shift).max(axis=1))[n // 2] > 2.0:
            return None  # points disagree: not one rigid neighbourhood
        return shift

    def _add_image_motion(self, shift: np.ndarray) -> None:
        """Add the picture's own motion around the shaft to the prediction.

        The filter's velocity is the needle's motion through the tissue;
        tremor of the hand, probe drift and tissue pushed aside move the whole
        picture, and Lucas-Kanade flow on the shaft's neighbourhood measures
        that directly (a uniform line has no feature along itself, so a needle
        advancing through still tissue shows no flow). Adding it as a known
        motion input keeps the drawn needle on the needle while the picture
        moves, without giving up the smoothing of detector noise.
        """
        kf = self._kf
        pre = kf.statePre.copy()
        pre[0:2, 0] += shift
        cov = kf.errorCovPre.copy()
        cov[0, 0] += self._flow_var
        cov[1, 1] += self._flow_var
        kf.statePre = pre
        kf.errorCovPre = cov

    # -- public ---------------------------------------------------------------
    def update(self, frame: Frame, detection: Detection | None) -> NeedleTrack:
        """Fold one frame's detection into the track and return the needle to show."""
        t = float(frame.timestamp_s)
        det = detection.needle if detection is not None else None
        if det is not None and not np.isfinite([*det.tip_px, *det.tail_px]).all():
            det = None  # a broken detection is no detection (NaN would poison the filter for good)
        if self._t_s is not None and (t < self._t_s or t - self._t_s > self.coast_s
                                      or (self._prev_image is not None
                                          and self._prev_image.shape != frame.image.shape)):
            # Time went backwards (seek, loop), jumped past the coast (seek, stalled
            # source), or the source changed: nothing from before can be trusted.
            self.reset()
        try:
            return self._update(frame, t, det)
        finally:
            self._prev_image = frame.image
            self._t_s = t

    def _update(self, frame: Frame, t: float, det: NeedleDetection | None) -> NeedleTrack:
        track = self._follow(frame, t, det)
        if track.state == "tracking" and self.coast_min_echo > 0 and self._kf is not None and self._frames_since == 0:
            echo = self._shaft_echo(frame.image)
            self._echo_ref = echo if self._echo_ref is None else self._echo_ref + 0.3 * (echo - self._echo_ref)
        return track

    def _follow(self, frame: Frame, t: float, det: NeedleDetection | None) -> NeedleTrack:
        if self._kf is None:
            if det is None:
                if self._t_detect_s is not None:
                    self._frames_since += 1
                return NeedleTrack("lost", None, frames_since_detection=self._frames_since, confirmed=False)
            self._disagreed.append(False)
            return self._start(det, frame, t)

        before = self._kf.statePost.copy()
        self._predict(max(t - self._t_s, 1e-3))
        motion = self._flow_motion(frame.image, before) if self.use_flow else None
        if motion is not None:
            self._add_image_motion(motion)
        if det is not None:
            z = self._measurement(det)
            r = self._detection_noise(det)
            inside_gate = self._mahalanobis2(z, r) <= self.gate_chi2
            jump = self._on_own_line(det) and (not inside_gate or math.hypot(
                *np.subtract(det.tip_px, self._kf.statePre[0:2, 0])) > self.manoeuvre_jump_px)
            if jump or inside_gate:
                if jump:
                    # The needle moved along its own shaft faster than the filter expected (an
                    # advance after a pause, a withdrawal): the same needle, so restart the filter
                    # on it and keep the track. Coasting on the old velocity here drew the tip
                    # millimetres deeper than it was while the detector saw it withdrawing.
                    # Its speed is left for the next frames to measure: one detection's error
                    # turned into a velocity would throw the track off the needle.
                    hits = self._hits
                    u_pre, p_pre = self._kf.statePre[4:6, 0].copy(), self._kf.errorCovPre[4:6, 4:6].copy()
                    self._new_filter(det)
                    self._hits = hits
                    # The shaft did not turn (the detection lies on the track's line): keep the
                    # filtered direction, folded with this detection's, not the one detection's.
                    kf = self._kf
                    v_meas, v_pre = r[2, 2], max(float(np.trace(p_pre)) / 2, 1e-12)
                    u = (u_pre / v_pre + kf.statePost[4:6, 0] / v_meas) / (1 / v_pre + 1 / v_meas)
                    post = kf.statePost.copy()
                    post[4:6, 0] = u / max(math.hypot(*u), 1e-9)
                    kf.statePost = post
                    cov = kf.errorCovPost.copy()
                    cov[4:6, 4:6] = np.eye(2) / (1 / v_pre + 1 / v_meas)
                    kf.errorCovPost = cov
                else:
                    self._correct(z, r)
                self._length_px += 0.3 * (float(np.hypot(*np.subtract(det.tip_px, det.tail_px))) - self._length_px)
                self._last_short = self._is_short(det, frame)
                self._confidence = float(det.confidence)
                self._dir_var_meas = float(r[2, 2])
                self._t_detect_s = t
                self._frames_since = 0
                self._pending, self._pending_t = [], []
                self._hits += 1
                self._disagreed.append(False)
                return self._output("tracking")
            self._disagreed.append(True)
            if self._pending and not _consistent(self._pending[-1], det):
                self._pending, self._pending_t = [], []
            self._pending.append(det)
            self._pending_t.append(t)
            if len(self._pending) >= self.reinit_frames:
                # A persistent new needle (or the same one redirected) replaces the track, moving
                # as its last two detections did.
                v = None
                if len(self._pending) >= 2 and self._pending_t[-1] > self._pending_t[-2]:
                    v = np.subtract(self._pending[-1].tip_px, self._pending[-2].tip_px) / (
                        self._pending_t[-1] - self._pending_t[-2])
                self._new_filter(det, v)
                self._last_short = self._is_short(det, frame)
                self._hits = self.reinit_frames  # already seen that many times
                self._t_detect_s = t
                self._frames_since = 0
                return self._output("tracking")

        # No detection, or one the track cannot explain (gated out, not yet persistent). The
        # latter is shown as it is when it is not the only one lately (see disagree_window): the
        # frames are then not a continuous sequence, and the detector's view of this frame beats
        # a track's memory of others (a folder of independent frames of one phantom, each with
        # its own needle, showed the last frame's needle or none). The track is held behind it.
        self._frames_since += 1
        shown = det if det is not None and sum(self._disagreed) >= self.show_disagreeing_after else None
        if t - self._t_detect_s > self.coast_s or self._hits < self.confirm_frames or self._last_short:
            # Nothing worth holding (not confirmed, coasted out, or a sliver): a detection here
            # starts a new track at once, as one after no track at all does.
            self._kf = None
            self._pending, self._pending_t = [], []
            if det is not None:
                return self._start(det, frame, t)
            return NeedleTrack("lost", None, frames_since_detection=self._frames_since, confirmed=False)
        # Coasting holds the last position, moved by the picture's flow, and does not
        # extrapolate the velocity: a needle leaving the plane, stopping or pulled back is not
        # where its old speed says, and a tip drawn deeper than the real one is the worst thing
        # this can show.
        self._accept_prediction()
        held = self._kf.statePost.copy()
        held[0:2, 0] = before[0:2, 0] + (motion if motion is not None else 0.0)
        held[2:4, 0] = 0.0
        self._kf.statePost = held
        tip = self._kf.statePost[0:2, 0]
        if not (0 <= tip[0] < frame.width_px and 0 <= tip[1] < frame.height_px):
            self._kf = None  # coasted out of the picture: do not draw it off-frame
        elif (self.coast_min_echo > 0 and self._echo_ref is not None and self._echo_ref >= _MIN_ECHO
                and self._shaft_echo(frame.image) < self.coast_min_echo * self._echo_ref):
            # The picture no longer shows the shaft where it is held (rolled out of the plane,
            # withdrawn): a detector's dropout leaves the echo, a needle gone does not. (A shaft
            # that never stood out from its sides, e.g. wider than the side lines, is not judged.)
            self._kf = None
        if shown is not None:
            return self._output_alone(shown)
        if self._kf is None:
            return NeedleTrack("lost", None, frames_since_detection=self._frames_since, confirmed=False)
        return self._output("coasting", fade=1.0 - (t - self._t_detect_s) / self.coast_s)

    def _start(self, det: NeedleDetection, frame: Frame, t: float) -> NeedleTrack:
        """A new track from one detection, shown at once (not confirmed until ``confirm_frames``)."""
        self._new_filter(det)
        self._last_short = self._is_short(det, frame)
        self._t_detect_s = t
        self._frames_since = 0
        return self._output("tracking")

    def _output_alone(self, det: NeedleDetection) -> NeedleTrack:
        """A detection shown as it is, outside any track (not confirmed: it raises no alert)."""
        angle_sd_deg = math.degrees(math.sqrt(self._dir_var(det)))
        return NeedleTrack("tracking", det, (0.0, 0.0), angle_sd_deg, 0, confirmed=False,
                           tip_across_sd_px=self.tip_across_sd_px)

    def _is_short(self, det: NeedleDetection, frame: Frame) -> bool:
        """Whether ``det``'s shaft is shorter than ``coast_min_length_mm`` (never without pixel spacing)."""
        shaft_mm = length_mm(np.subtract(det.tip_px, det.tail_px), frame.spacing_mm)
        return shaft_mm is not None and shaft_mm < self.coast_min_length_mm

    def _shaft_echo(self, image: np.ndarray) -> float:
        """How much the held shaft stands out: the brightest line within 8 px of it over the lines 12-16 px away.

        The picture is averaged along the front 200 px of the shaft first, so
        speckle averages out and the shaft's walls (parallel to it) remain,
        wherever the axis sits between them.
        """
        s = self._kf.statePost[:, 0]
        u = s[4:6] / max(math.hypot(s[4], s[5]), 1e-9)
        along = np.linspace(0.0, min(max(self._length_px, 4.0), 200.0), 24)
        # from the tip back along the shaft (the across offsets are symmetric, so the normal's sign is moot)
        grid = sample_along(image, s[0:2], -u, along, _ACROSS_PX, border=cv2.BORDER_REPLICATE)
        prof = grid.astype(np.float32).mean(0)
        return float(prof[_ON_SHAFT].max() - np.median(prof[~_ON_SHAFT]))

    def _output(self, state: str, fade: float = 1.0) -> NeedleTrack:
        kf = self._kf
        s = kf.statePost[:, 0]
        u = s[4:6] / max(math.hypot(s[4], s[5]), 1e-9)
        tip = (float(s[0]), float(s[1]))
        tail = (float(s[0] - self._length_px * u[0]), float(s[1] - self._length_px * u[1]))
        # Angle SD: the direction's covariance across the shaft, over its length.
        perp = np.array([-u[1], u[0]])
        # Floored at one detection's own variance: a detector's angle error persists over many
        # frames (a bias of the visible shaft, not independent noise), so averaging frames does
        # not shrink it and the cone must not claim it does.
        var_perp = max(float(perp @ kf.errorCovPost[4:6, 4:6] @ perp), self._dir_var_meas)
        angle_sd_deg = math.degrees(math.sqrt(max(var_perp, 0.0)))
        # The tip across the shaft, floored at one detection's for the same reason.
        tip_across_sd_px = math.sqrt(max(float(perp @ kf.errorCovPost[0:2, 0:2] @ perp), self.tip_across_sd_px**2))
        needle = NeedleDetection(tip, tail, self._confidence * max(0.0, min(1.0, fade)))
        return NeedleTrack(state, needle, (float(s[2]), float(s[3])), angle_sd_deg, self._frames_since,
                           confirmed=self._hits >= self.confirm_frames, tip_across_sd_px=tip_across_sd_px)


def _consistent(a: NeedleDetection, b: NeedleDetection, across_px: float = 8.0, along_px: float = 60.0,
                angle_deg: float = 10.0) -> bool:
    """Two detections plausibly of the same needle in consecutive frames.

    A needle moves along its own axis (advance, withdrawal) much faster than
    across it: the tips may be ``along_px`` apart along ``a``'s shaft but only
    ``across_px`` beside it, with the shafts within ``angle_deg``.
    """
    if float(np.dot(a.direction, b.direction)) < math.cos(math.radians(angle_deg)):
        return False
    u = np.asarray(a.direction, dtype=float)
    d = np.subtract(b.tip_px, a.tip_px)
    return abs(float(d @ np.array([-u[1], u[0]]))) <= across_px and abs(float(d @ u)) <= along_px


class TargetSmoother:
    """Exponential smoothing of the target surfaces on a common 1-px x-grid.

    Each surface is resampled to integer columns; a column follows new
    observations with time constant ``tau_s``. Probe motion shows as the whole
    surface moving: a median shift above ``follow_px`` is applied at once
    (no lag), above ``reset_px`` (or too little overlap, or the surface kind
    changing) the state restarts from the observation. Columns not seen for
    ``hold_s`` are dropped, and the target disappears ``hold_s`` after the
    detector last saw one.

    The kind (cartilage or bone) is the majority of the detector's kinds over
    the last ``kind_window_s`` (a tie keeps the kind held): a frame's
    cartilage band that comes and goes must not make the target surface, and
    the distance to it, jump by the cartilage's thickness from frame to frame.
    While bone is held, a frame that reports cartilage gives its bone line;
    while cartilage is held, a frame without a band leaves the top as it was.
    """

    def __init__(self, tau_s: float = 0.15, *, follow_px: float = 2.0, reset_px: float = 10.0,
                 hold_s: float = 0.25, max_gap_px: float = 8.0, kind_window_s: float = 0.5) -> None:
        self.tau_s = tau_s
        self.follow_px = follow_px
        self.reset_px = reset_px
        self.hold_s = hold_s
        self.max_gap_px = max_gap_px
        self.kind_window_s = kind_window_s
        self.reset()

    def reset(self) -> None:
        self._grid: np.ndarray | None = None
        self._surf: np.ndarray | None = None
        self._bone: np.ndarray | None = None
        self._surf_seen: np.ndarray | None = None
        self._bone_seen: np.ndarray | None = None
        self._kind: str | None = None
        self._kinds: list[tuple[float, str]] = []  # (time, kind) of the detector's recent targets
        self._thickness: float | None = None
        self._confidence = 1.0
        self._t_s: float | None = None
        self._t_seen_s: float | None = None

    def update(self, frame: Frame, target: TargetDetection | None) -> TargetDetection | None:
        """Fold one frame's target into the smoothed one; None when none is held."""
        t = float(frame.timestamp_s)
        w = frame.width_px
        if self._t_s is not None and t < self._t_s or (self._grid is not None and len(self._grid) != w):
            self.reset()
        dt = 0.0 if self._t_s is None else t - self._t_s
        self._t_s = t
        if self._grid is None:
            self._grid = np.arange(w, dtype=float)
            self._surf = np.full(w, np.nan)
            self._bone = np.full(w, np.nan)
            self._surf_seen = np.full(w, -np.inf)
            self._bone_seen = np.full(w, -np.inf)
        if target is not None:
            alpha = 1.0 - math.exp(-dt / self.tau_s) if dt > 0 else 1.0
            kind = self._vote(t, target.kind)
            restart = self._kind is not None and kind != self._kind
            self._kind = kind
            self._confidence = float(target.confidence)
            if kind == target.kind:
                surface = target.surface_px
            else:  # bone held and this frame saw a band: its bone line; cartilage held: no new top
                surface = target.bone_px if kind == "bone" else None
            if surface is not None:
                self._surf = self._blend(self._surf, self._surf_seen, surface, alpha, t, restart)
            self._bone = self._blend(self._bone, self._bone_seen, target.bone_px, alpha, t, False)
            if kind != "cartilage":
                self._thickness = None
            elif target.cartilage_thickness_mm is not None:
                if self._thickness is None or restart:
                    self._thickness = target.cartilage_thickness_mm
                else:
                    self._thickness += alpha * (target.cartilage_thickness_mm - self._thickness)
            self._t_seen_s = t
        if self._t_seen_s is None or t - self._t_seen_s > self.hold_s:
            return None
        stale = t - self.hold_s
        surf = _stack(self._grid, np.where(self._surf_seen >= stale, self._surf, np.nan))
        if len(surf) < 2:
            return None
        bone = _stack(self._grid, np.where(self._bone_seen >= stale, self._bone, np.nan))
        return TargetDetection(self._kind, surf, bone, self._thickness, self._confidence)

    def _vote(self, t: float, kind: str) -> str:
        """The kind most of the last ``kind_window_s`` of targets had (a tie keeps the held one)."""
        self._kinds = [(ti, k) for ti, k in self._kinds if ti > t - self.kind_window_s]
        self._kinds.append((t, kind))
        n_cart = sum(k == "cartilage" for _, k in self._kinds)
        n_other = len(self._kinds) - n_cart
        if n_cart == n_other:
            return self._kind or kind
        return "cartilage" if n_cart > n_other else "bone"

    def _blend(self, state: np.ndarray, seen: np.ndarray, obs_px, alpha: float, t: float,
               restart: bool) -> np.ndarray:
        pts = np.asarray(obs_px, dtype=float).reshape(-1, 2)
        pts = pts[np.isfinite(pts).all(axis=1)]
        obs = resample_on_grid(pts, self._grid, self.max_gap_px)
        have_obs = np.isfinite(obs)
        if not have_obs.any():
            return state
        live = np.isfinite(state) & (seen >= t - self.hold_s)
        both = have_obs & live
        state = np.where(live, state, np.nan)
        if restart or both.sum() < 0.3 * have_obs.sum():
            state = obs.copy()
        else:
            diff = obs[both] - state[both]
            shift = float(np.partition(diff, len(diff) // 2)[len(diff) // 2])  # median, without np.median's overhead
            if abs(shift) > self.reset_px:
                state = obs.copy()
            else:
                if abs(shift) > self.follow_px:
                    state = state + shift  # probe moved: follow at once, smooth the rest
                state = np.where(both, state + alpha * (obs - state), np.where(have_obs, obs, state))
        seen[have_obs] = t
        return state


def _stack(grid: np.ndarray, y: np.ndarray) -> np.ndarray:
    ok = np.isfinite(y)
    return np.stack([grid[ok], y[ok]], axis=1)


class TrackStage:
    """Pipeline stage: sets ``result.track`` and replaces the target with the smoothed one.

    A frame that shows another scene than the last (:mod:`guidance.scene`)
    starts both afresh: a folder of unrelated frames, a cut in a video, the probe
    put down elsewhere. Carried over, the last scene's needle and surfaces would
    be drawn on, or smoothed into, a picture they do not belong to.
    """

    def __init__(self, name: str = "track", *, coast_s: float = 0.5, tracker: NeedleTracker | None = None,
                 smoother: TargetSmoother | None = None, smooth_target: bool = True,
                 scene_change_similarity: float = SCENE_CHANGE_SIMILARITY) -> None:
        self.name = name
        self.tracker = tracker if tracker is not None else NeedleTracker(coast_s=coast_s)
        self.smoother = smoother if smoother is not None else (TargetSmoother() if smooth_target else None)
        self.scene = SceneWatch(scene_change_similarity)

    @property
    def scene_changes(self) -> int:
        """Frames that started afresh on a new scene (for tests and benchmarks)."""
        return self.scene.changes

    def reset(self) -> None:
        self._start_afresh()
        self.scene.reset()

    def _start_afresh(self) -> None:
        self.tracker.reset()
        if self.smoother is not None:
            self.smoother.reset()

    def __call__(self, result: FrameResult) -> FrameResult:
        if self.scene.changed(result.frame.image, result.region):
            self._start_afresh()
        det = result.detection if result.detection is not None else Detection()
        track = self.tracker.update(result.frame, det)
        if self.smoother is not None:
            det = replace(det, target=self.smoother.update(result.frame, det.target))
        return replace(result, track=track, detection=det)


__all__ = ["NeedleTracker", "TargetSmoother", "TrackStage", "GATE_CHI2_4DOF"]
