"""The ONNX needle-and-target segmentation model (the only importer of onnxruntime).

The network takes one grey frame resized to its input size (``1x1xHxW``
float32, grey / 255) and returns per-pixel probabilities (sigmoid inside the
graph) in the channel order :data:`CHANNELS`: the needle shaft, the bone
surface line, the cartilage band and a tip heat-map. Post-processing
(:mod:`guidance.detect.postprocess`) turns them into a needle line, a tip and
the target surfaces in frame pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelError
from ..geometry import length_mm, sample_along
from ..types import Detection, ImagingRegion, NeedleDetection, Spacing, TargetDetection
from . import postprocess as pp
from .assemble import (crop_to_region, detection_to_frame, follow_shaft_to_tip, make_needle, make_target,
                       shrink_to)

CHANNELS = ("needle", "bone", "cartilage", "tip")
INPUT_NAME = "image"
OUTPUT_NAME = "probs"


class ModelDetector:
    """Detector backed by an ONNX segmentation model.

    With ``second_opinion`` (a second model file of the same input size), a
    needle whose mean probability lies in ``consensus_band`` (or any piece
    shorter than ``consensus_below_length`` of the width scoring at least the
    band's lower end) is judged on the
    needle maps averaged over four views (:meth:`needle_consensus`) against
    ``consensus_min_confidence`` instead of on this model's own maps; a shaft
    of at least ``long_needle_mm`` that the four views agree on needs only
    ``long_needle_min_confidence``. A needle the consensus rejects may still be
    taken on a second look at twice the scale (:meth:`second_look`), or when
    its shaft, followed on the image, runs on at least ``followed_shaft_mm``.

    Raises :class:`~guidance.errors.ModelError` when a file is missing,
    corrupt, or its inputs/outputs are not ``image`` (1x1xHxW) and ``probs``
    (1x4xH'xW').
    """

    def __init__(self, path: str | Path, *, threads: int | None = None,
                 needle_threshold: float = 0.5, surface_threshold: float = 0.4,
                 min_needle_length: float = 0.05, min_needle_confidence: float = 0.89,
                 consensus_below_length: float = 0.065,
                 refine_line: bool | str = "direction", refine_tip: bool = True, use_tip_heat: bool = False,
                 short_needle_mm: float = 3.5,
                 short_needle_min_confidence: float = 0.91, needle_join_gap: float = 0.08,
                 follow_shaft: bool = True, second_opinion: str | Path | None = None,
                 consensus_band: tuple[float, float] = (0.7, 0.95),
                 consensus_min_confidence: float = 0.845, long_needle_mm: float = 10.0,
                 long_needle_min_confidence: float = 0.78, second_look_min_support: float = 0.8,
                 second_look_min_confidence: float = 0.78, second_look_edge: float = 0.03,
                 second_look_max_slope_deg: float = 40.0, followed_shaft_mm: float = 15.0,
                 followed_shaft_min_confidence: float = 0.7, max_work_px: int | None = 640) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # Threads spin inside a run (faster hand-offs) but stop when it returns: a pool spinning on
        # after its run takes the two cores from the other session's run and from the UI thread.
        # Measured: with both pools spinning on, the consensus' four views took 46 ms instead of
        # 21; with only the second's stopped, real PLUS frames took 24-28 ms each, now 20-22.
        opts.add_session_config_entry("session.force_spinning_stop", "1")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path}: not a loadable ONNX model ({first})") from None
        self.input_hw = self._check_io()
        self.name = f"model:{self.path.stem}"
        self.needle_threshold = needle_threshold
        self.surface_threshold = surface_threshold
        # The shortest piece of mask taken as a needle (fraction of the width): 5 % shows an entering
        # shaft from about 1.5 mm at 30 mm wide. Pieces under consensus_below_length (6.5 %, the
        # old minimum) are always judged by the four views (below): a 1.3 mm speck of a foreign
        # frame scored 0.95 on this model alone, and the views did not see it. Chosen on the
        # tuning scenes: recall 93.9 -> 94.5 %, false positives 0.15 % unchanged (model card).
        self.min_needle_length, self.min_needle_confidence = min_needle_length, min_needle_confidence
        # Hybrid by default: the image at full resolution gives the shaft's direction and the tip
        # (where the echo falls off along the line); the segmentation gives the position across
        # the line, since the brightest echo is the upper wall, half a diameter off the centreline.
        # refine_line=True moves the line onto the echo; False keeps the segmentation's line.
        self.refine_line, self.refine_tip = refine_line, refine_tip
        # The tip heat-map of the committed model is not reliable enough to pick the tip end
        # (measured): the deeper end of the shaft is, for needles entering from the skin.
        self.use_tip_heat = use_tip_heat
        # A short piece of "needle" must be more certain: the false needles on tuning seeds were
        # 1.5-4 mm pieces of a fascia or septum scoring 0.89-0.92, while entering shafts that short
        # mostly score above 0.92. Chosen on seeds 6101-6132 and 6200-6249. Since the consensus (whose
        # short-piece minimum is consensus_min_confidence plus the same 0.02 margin) 0.91: on every
        # frame of the 50 tuning scenes recall 94.3 -> 94.6 %, false positives 0.13 % unchanged (model card).
        self.short_needle_mm, self.short_needle_min_confidence = short_needle_mm, short_needle_min_confidence
        # A long shaft's mask can break into collinear pieces (seen on frames from another image
        # formation, bench/eval_foreign.py): pieces on one line with gaps up to this fraction of
        # the width are one needle, or the tip is drawn millimetres short of the real one. The
        # short-needle rule below judges the longest piece alone: joined pieces of a faint streak
        # made a false needle on a real frame (PLUS bone frame 18).
        self.needle_join_gap = needle_join_gap
        # Frames from another image formation showed the segmentation ending millimetres before the
        # shaft's echo does: carry the tip on along the shaft's own cross-section (model card).
        self.follow_shaft = follow_shaft
        # An uncertain needle is judged by consensus (model card): the needle maps of this model and
        # a second, differently trained one, each on the frame and on its mirror image, averaged. A
        # tissue streak that one view scores as needle-like is seldom seen at the same place by all
        # four; a needle is. On the real frames the streaks' consensus stayed below 0.84, while
        # single views scored them up to 0.93. Only candidates inside the band pay for the three
        # extra runs: clear needles and clear tissue keep this model's own rule.
        self.second = None
        if second_opinion is not None:
            self.second = ModelDetector(second_opinion, threads=threads)
            if self.second.input_hw != self.input_hw:
                raise ModelError(f"{self.second.path}: input {self.second.input_hw} differs from "
                                 f"{self.path.name}'s {self.input_hw}; a second opinion must see the same input")
            self.name += f"+{self.second.path.stem}"
        self.consensus_band, self.consensus_min_confidence = consensus_band, consensus_min_confidence
        self.consensus_below_length = consensus_below_length
        # A long straight shaft the four views agree on is a needle even when their average is
        # lower: the averaged map of a long speckled shaft is patchy, and its mean probability
        # falls while the line stays. On the tuning scenes, the foreign frames and the real frames
        # no false line the consensus kept was longer than 5.8 mm (a few needle-like fascias of
        # bench/eval_foreign.py, up to 9 mm, scored above 0.84 anyway). Chosen there (model card).
        self.long_needle_mm, self.long_needle_min_confidence = long_needle_mm, long_needle_min_confidence
        # An uncertain needle the consensus would reject (but scores at least second_look_min_confidence)
        # is looked at again at twice the scale (:meth:`second_look`). The tissue streaks that score like
        # needles lose their line there; about a fifth of those needles keep it. Only for a shaft
        # entering from a side edge, as an in-plane needle does: floating needle-like lines
        # (bench/eval_foreign.py's fascias) keep their line too. Only up to second_look_max_slope_deg:
        # a steep shaft found this way was often just its entry, the tip drawn 5-10 mm short. Chosen
        # on the tuning scenes (model card, "A second look at twice the scale").
        self.second_look_min_support = second_look_min_support
        self.second_look_min_confidence = second_look_min_confidence
        self.second_look_edge = second_look_edge
        self.second_look_max_slope_deg = second_look_max_slope_deg
        # A candidate the consensus rejects is still a needle when the shaft followed on the image
        # (follow_shaft_to_tip) is at least followed_shaft_mm long: the networks can mark only pieces
        # of a long shaft drawn unlike ours (dashes, scatterers), while a reader sees it whole. No tissue
        # line of the tuning scenes, the real frames or the foreign frames was followed that far
        # (longest 13.3 mm). 0 turns it off. Chosen on the tuning scenes (model card, "A long shaft
        # on the image").
        self.followed_shaft_mm = followed_shaft_mm
        self.followed_shaft_min_confidence = followed_shaft_min_confidence
        # The refinement on the image works in pixels (profiles across the shaft, their flanks 12-16 px
        # away, the tip's fall-off): it was built and measured on 400-640 px images, 0.05-0.1 mm a
        # pixel. A larger imaging region (a high-resolution capture of the scanner's interpolated
        # image) is detected on a copy shrunk to this size and its result mapped back: on the
        # evaluation sequences scaled up 2x, tip p95 2.10 -> 1.61 mm and angle median 0.80 -> 0.57 deg
        # (model card, "Large frames"). None: never shrink.
        self.max_work_px = max_work_px
        self.paths = (self.path,) + ((self.second.path,) if self.second is not None else ())
        self.maps(np.zeros((64, 64), np.uint8))  # warm-up: first run allocates and plans

    def _check_io(self) -> tuple[int, int]:
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if len(ins) != 1 or ins[0].name != INPUT_NAME:
            raise ModelError(f"{self.path}: expected one input named {INPUT_NAME!r}, "
                             f"got {[i.name for i in ins]}")
        shape = ins[0].shape
        if len(shape) != 4 or shape[1] != 1 or not all(isinstance(v, int) and v > 0 for v in shape[2:]):
            raise ModelError(f"{self.path}: input {INPUT_NAME!r} must be 1x1xHxW with fixed H, W; got {shape}")
        if len(outs) != 1 or outs[0].name != OUTPUT_NAME:
            raise ModelError(f"{self.path}: expected one output named {OUTPUT_NAME!r}, "
                             f"got {[o.name for o in outs]}")
        oshape = outs[0].shape
        if len(oshape) != 4 or oshape[1] != len(CHANNELS):
            raise ModelError(f"{self.path}: output {OUTPUT_NAME!r} must have {len(CHANNELS)} channels "
                             f"({', '.join(CHANNELS)}); got shape {oshape}")
        return int(shape[2]), int(shape[3])

    def maps(self, image_u8: np.ndarray) -> np.ndarray:
        """Probability maps (4, H', W') float32 for a grey image of any size."""
        return self._run(self._input(image_u8))

    def _input(self, image_u8: np.ndarray) -> np.ndarray:
        h, w = self.input_hw
        x = cv2.resize(image_u8, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) * (1.0 / 255.0)
        return x[None, None]

    def _run(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        if out.ndim != 4 or out.shape[1] != len(CHANNELS):
            raise ModelError(f"{self.path}: output of shape {out.shape}, expected 1x{len(CHANNELS)}xHxW")
        return out[0]

    def needle_consensus(self, crop: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Needle map (H', W') float32 averaged over four views of ``crop``.

        This model (whose maps ``probs`` are given) and the second opinion, each
        on the image and on its mirror image (flipped back).
        """
        # both networks see the same input size (checked at load): resize each view once
        x, x_mirror = self._input(crop), self._input(np.ascontiguousarray(crop[:, ::-1]))
        views = (probs[0], self._run(x_mirror)[0, :, ::-1], self.second._run(x)[0],
                 self.second._run(x_mirror)[0, :, ::-1])
        return np.ascontiguousarray(sum(views[1:], views[0]) * np.float32(0.25))

    def second_look(self, crop: np.ndarray, cand: pp.NeedleCandidate, scale: pp.Scale) -> float:
        """How much of the candidate's line this model still sees at twice the scale (0-1).

        The model runs on the half-size window of ``crop`` centred on the
        candidate (``cand`` in working pixels, ``scale`` their size in crop
        pixels), clamped inside it. The support is the needle probability along the
        candidate's segment in that window's map: the largest within 4 map
        pixels across the line, averaged along it. 0 when under 4 pixels of
        the segment fall in the window.
        """
        h, w = crop.shape[:2]
        cw, ch = max(w // 2, 1), max(h // 2, 1)
        sx, sy = scale.sx, scale.sy
        mid = cand.point + cand.direction * (0.5 * (cand.t_tail + cand.t_tip))
        x0 = int(np.clip(round(mid[0] * sx - cw / 2), 0, w - cw))
        y0 = int(np.clip(round(mid[1] * sy - ch / 2), 0, h - ch))
        zoom = self._run(self._input(np.ascontiguousarray(crop[y0:y0 + ch, x0:x0 + cw])))[0]
        zh, zw = zoom.shape
        # the segment's ends in the window's map pixels
        ends = np.array([cand.point + cand.direction * t for t in (cand.t_tail, cand.t_tip)])
        ends = (ends * (sx, sy) - (x0, y0)) * (zw / cw, zh / ch)
        length = float(np.hypot(*(ends[1] - ends[0])))
        if length < 1.0:
            return 0.0
        u = (ends[1] - ends[0]) / length
        t = np.arange(0.0, length, 1.0)
        on = ends[0] + t[:, None] * u
        inside = np.all((on >= 0) & (on <= (zw - 1, zh - 1)), axis=1)
        if inside.sum() < 4:
            return 0.0
        across = sample_along(zoom, ends[0], u, t[inside], np.arange(-4.0, 4.5, 1.0))
        return float(across.max(axis=1).mean())

    @staticmethod
    def _slope_deg(cand: pp.NeedleCandidate, scale: pp.Scale) -> float:
        """The candidate's angle from the horizontal in image pixels (the maps' resize is anisotropic)."""
        dx, dy = np.abs(scale.vectors(cand.direction))
        return float(np.degrees(np.arctan2(dy, dx)))

    @staticmethod
    def _reaches_side(cand: pp.NeedleCandidate, width: int, edge: float) -> bool:
        """Whether the candidate's far end lies within ``edge`` of the width of the left or right edge."""
        x = float(cand.point[0] + cand.t_tail * cand.direction[0])
        return min(x, width - 1 - x) <= edge * width

    def _asks_second_opinion(self, cand: pp.NeedleCandidate | None, map_width: int) -> bool:
        return cand is not None and self.second is not None and self.consensus_band[0] <= cand.confidence and (
            cand.confidence < self.consensus_band[1] or cand.piece_length < self.consensus_below_length * map_width)

    def asks_second_opinion(self, probs: np.ndarray) -> bool:
        """Whether :meth:`from_maps` would judge the needle in these maps by consensus (for benchmarks)."""
        mw = probs.shape[2]
        return self._asks_second_opinion(pp.needle_from_prob(
            probs[0], threshold=self.needle_threshold, min_length_px=self.min_needle_length * mw), mw)

    def detect(self, image_u8: np.ndarray, spacing_mm: Spacing | None = None,
               region: ImagingRegion | None = None) -> Detection:
        crop, ox, oy = crop_to_region(image_u8, region)
        small, fx, fy = shrink_to(crop, self.max_work_px) if self.max_work_px else (crop, 1.0, 1.0)
        if small is crop:
            return self.from_maps(crop, self.maps(crop), (ox, oy), spacing_mm)
        spacing = None if spacing_mm is None else (spacing_mm[0] / fx, spacing_mm[1] / fy)
        return detection_to_frame(self.from_maps(small, self.maps(small), (0, 0), spacing), fx, fy, ox, oy)

    def from_maps(self, crop: np.ndarray, probs: np.ndarray, offset_px=(0, 0),
                  spacing_mm: Spacing | None = None) -> Detection:
        """Post-processing of the probability maps of ``crop`` (its top-left at ``offset_px`` in the frame)."""
        mh, mw = probs.shape[1:]
        scale = pp.Scale(crop.shape[1] / mw, crop.shape[0] / mh, offset_px[0], offset_px[1])
        tip_heat = probs[3] if self.use_tip_heat else None
        needle_kw = dict(threshold=self.needle_threshold, min_length_px=self.min_needle_length * mw,
                         join_gap_px=self.needle_join_gap * mw)
        cand = pp.needle_from_prob(probs[0], tip_heat=tip_heat, **needle_kw)
        min_conf, short_min_conf = self.min_needle_confidence, self.short_needle_min_confidence
        long_min_conf = min_conf
        asked = self._asks_second_opinion(cand, mw)
        if asked:
            cand = pp.needle_from_prob(self.needle_consensus(crop, probs), tip_heat=tip_heat, **needle_kw)
            # the average of four views is less extreme than one view: its own thresholds
            min_conf = self.consensus_min_confidence
            short_min_conf = min_conf + (self.short_needle_min_confidence - self.min_needle_confidence)
            long_min_conf = min(min_conf, self.long_needle_min_confidence)
            if (self.second_look_min_support > 0 and cand is not None
                    and self.second_look_min_confidence <= cand.confidence < max(min_conf, short_min_conf)
                    and (not self.second_look_edge or self._reaches_side(cand, mw, self.second_look_edge))
                    and self._slope_deg(cand, scale) <= self.second_look_max_slope_deg
                    and self.second_look(crop, cand, scale) >= self.second_look_min_support):
                min_conf = short_min_conf = long_min_conf = self.second_look_min_confidence
        # a candidate the consensus rejected may still be a long shaft on the image (followed_shaft_mm)
        rejected = cand if (asked and cand is not None and self.followed_shaft_mm > 0 and self.follow_shaft
                            and cand.confidence >= self.followed_shaft_min_confidence) else None
        if cand is not None and cand.confidence < long_min_conf:
            cand = None
        crop_f = crop.astype(np.float32) if cand is not None or rejected is not None else None
        needle = make_needle(cand, scale, crop_f, refine_line=self.refine_line,
                             refine_tip=self.refine_tip) if cand is not None else None
        if needle is not None:
            # judged on the longest piece alone (see needle_join_gap)
            dx, dy = np.subtract(needle.tip_px, needle.tail_px) * cand.piece_fraction
            piece_mm = self._length_mm(dx, dy, spacing_mm, crop.shape[1])
            need = (short_min_conf if piece_mm < self.short_needle_mm
                    else long_min_conf if piece_mm >= self.long_needle_mm else min_conf)
            if needle.confidence < need:
                needle = None
        target = self._target(probs, cand if needle is not None else None, scale, spacing_mm, crop)
        if needle is not None and self.follow_shaft:
            needle = follow_shaft_to_tip(needle, scale, crop_f, bone_px=target.bone_px if target else None)
        elif rejected is not None:
            needle = self._followed_long_shaft(rejected, scale, crop_f, target, spacing_mm)
            if needle is not None:
                target = self._target(probs, rejected, scale, spacing_mm, crop)
        return Detection(needle=needle, target=target, detector=self.name)

    @staticmethod
    def _length_mm(dx: float, dy: float, spacing_mm: Spacing | None, width_px: int) -> float:
        mm = length_mm((dx, dy), spacing_mm)
        # spacing unknown: take the image as 35 mm wide, a linear probe's usual field
        return mm if mm is not None else float(np.hypot(dx, dy)) * 35.0 / width_px

    def _followed_long_shaft(self, cand: pp.NeedleCandidate, scale: pp.Scale, crop_f: np.ndarray,
                             target: TargetDetection | None, spacing_mm: Spacing | None) -> NeedleDetection | None:
        """The candidate as a needle when the shaft followed on the image is at least ``followed_shaft_mm``."""
        needle = make_needle(cand, scale, crop_f, refine_line=self.refine_line, refine_tip=self.refine_tip)
        if needle is None:
            return None
        # the search for a short piece's direction only moves the tip of a needle already taken: here it
        # would make a rejected tissue line longer (on a real PLUS frame, one of 2.4 mm to 14.3 of the 15 mm)
        needle = follow_shaft_to_tip(needle, scale, crop_f, bone_px=target.bone_px if target else None,
                                     search_below_px=0.0)
        dx, dy = np.subtract(needle.tip_px, needle.tail_px)
        return needle if self._length_mm(dx, dy, spacing_mm, crop_f.shape[1]) >= self.followed_shaft_mm else None

    def _target(self, probs: np.ndarray, needle_cand: pp.NeedleCandidate | None, scale: pp.Scale,
                spacing_mm: Spacing | None, crop: np.ndarray) -> TargetDetection | None:
        """Bone surface and cartilage from the maps (the needle's own pixels kept out of the bone map)."""
        mh, mw = probs.shape[1:]
        bone_prob = pp.without_needle(probs[1], needle_cand) if needle_cand is not None else probs[1]
        xs, ys = pp.surface_from_prob(bone_prob, threshold=self.surface_threshold, min_run=max(3, mw // 40))
        # Real frames showed single columns caught on a deeper echo and a ragged band top: keep the
        # surface continuous and the band a band (the classical detector cleans its surface the same way).
        xs, ys = pp.smooth_polyline_y(xs, ys, ksize=max(9, (mw // 12) | 1), max_jump_px=max(3.0, mh / 60))
        top = pp.band_top_above(probs[2], xs, ys) if len(xs) else None
        if top is not None:
            top = pp.clean_band_top(xs, ys, top, ksize=max(9, (mw // 12) | 1), min_run=max(3, mw // 40))
        return make_target(xs, ys, top, scale, spacing_mm, image=crop)
