"""Whether a frame shows the same scene as the last one, or another.

Stages that carry something from frame to frame (the imaging region, the
tracked needle, the smoothed surfaces) start afresh on a frame of another
scene: a folder of unrelated frames, a cut in a video, another scanner's
screen. Carried over, the last scene's region or needle would be applied
where it does not belong.
"""

from __future__ import annotations

import cv2
import numpy as np

from .types import ImagingRegion

SCENE_CHANGE_SIMILARITY = 0.8
"""Below this :func:`scene_similarity` a frame shows another scene, and nothing carried from before it holds.

Measured (32x32 thumbnails): consecutive frames of one scene scored at least
0.98 on our simulated sequences (14,101 pairs) and on the two freehand PLUS
sweeps, and 0.94 on ``replay_data/``. Frames of unrelated scenes: consecutive
PyMUST frames at most 0.36; our simulator's scenes of the same size a median of
0.0, 99th percentile 0.51 and at most 0.68 (3,824 pairs: they share a layout).
Restarting on a fast sweep costs a frame or two of tracking; carrying a scene
over draws it where it is not.
"""


def scene_thumbnail(image: np.ndarray, region: ImagingRegion | None = None,
                    size_px: int = 32) -> np.ndarray | None:
    """A unit-norm ``size_px`` square summary of a grey picture (inside ``region``) for :func:`scene_similarity`;
    None for a picture with nothing in it (uniform rows), which cannot tell one scene from another.

    Area-averaged, so speckle averages out and the anatomy remains; each row's
    mean is removed, since every ultrasound picture darkens with depth alike and
    that alone would make unrelated scenes look related.
    """
    if region is not None:
        r = region.clip_to(*image.shape[:2])
        if r.width_px >= 8 and r.height_px >= 8:
            image = image[r.slices]
    step = max(1, min(image.shape[:2]) // (8 * size_px))  # a 1080p frame: every 4th pixel, 5.8 -> 0.2 ms
    t = cv2.resize(image[::step, ::step], (size_px, size_px), interpolation=cv2.INTER_AREA).astype(np.float32)
    t -= t.mean(axis=1, keepdims=True)
    norm = float(np.linalg.norm(t))
    return t / norm if norm > 0.5 else None  # under half a grey level of structure in all: blank


def scene_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation (-1 to 1) of two :func:`scene_thumbnail` results of the same size."""
    return float(np.dot(a.ravel(), b.ravel()))


class SceneWatch:
    """Says whether each frame shows another scene than the last one that showed anything.

    A blank frame says nothing: the next picture is compared with the last one
    before it. ``changes`` counts the frames that showed another scene.
    """

    def __init__(self, similarity: float = SCENE_CHANGE_SIMILARITY) -> None:
        self.similarity = similarity
        self.changes = 0
        self._thumb: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the last picture: the next frame is compared with nothing."""
        self._thumb = None

    def changed(self, image: np.ndarray, region: ImagingRegion | None = None) -> bool:
        thumb = scene_thumbnail(image, region)
        if thumb is None:
            return False
        new = self._thumb is not None and scene_similarity(self._thumb, thumb) < self.similarity
        self._thumb = thumb
        self.changes += new
        return new


__all__ = ["SCENE_CHANGE_SIMILARITY", "SceneWatch", "scene_similarity", "scene_thumbnail"]
