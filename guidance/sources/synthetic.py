"""The simulator as a frame source: ``sim``, ``sim:SEED`` or ``sim:SCENARIO:SEED``.

Live (``realtime=True``, the default) it paces frames at ``fps`` and runs
forever, replaying the scenario with a new seed each time round. Offline
(``realtime=False``) it yields the scenario's frames once, as fast as asked,
and ends. The last frame's ground truth is kept in ``last_truth`` (a contract
line) for demos and tests.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import InputError
from ..sim import SimConfig, Simulator, get_scenario
from ..types import Frame
from .base import SourceBase


def parse_sim_spec(spec: str) -> tuple[str | None, int | None]:
    """(scenario, seed) from "sim", "sim:SEED", "sim:SCENARIO" or "sim:SCENARIO:SEED"."""
    parts = str(spec).strip().split(":")
    if parts[0].lower() != "sim" or len(parts) > 3:
        raise InputError(f"{spec}: expected sim, sim:SEED or sim:SCENARIO:SEED")
    scenario = seed = None
    for p in parts[1:]:
        if p.strip().lstrip("-").isdigit():
            seed = int(p)
        elif p.strip():
            scenario = p.strip()
    if len(parts) == 3 and (seed is None or scenario is None):
        raise InputError(f"{spec}: expected sim:SCENARIO:SEED (e.g. sim:insertion:3)")
    if scenario is not None:
        get_scenario(scenario)  # clear error for an unknown name
    return scenario, seed


class SyntheticSource(SourceBase):
    """Frames from :class:`guidance.sim.Simulator`."""

    def __init__(self, spec: str = "sim", *, realtime: bool = True, fps: float = 30, size_px=(512, 512),
                 seed: int | None = None, scenario: str | None = None, n_frames: int | None = None,
                 depth_mm: float = 30.0, **kw):
        super().__init__()
        spec_scenario, spec_seed = parse_sim_spec(spec)
        self.scenario = scenario or spec_scenario or "insertion"
        get_scenario(self.scenario)
        self.seed = int(seed if seed is not None else spec_seed if spec_seed is not None else 0)
        try:
            self.width_px, self.height_px = (int(v) for v in size_px)
            self.fps = float(fps)
        except (TypeError, ValueError):
            raise InputError(f"{spec}: size_px must be (width, height) and fps a number") from None
        if self.fps <= 0 or self.width_px < 32 or self.height_px < 32:
            raise InputError(f"{spec}: fps must be positive and size at least 32x32 px")
        self.realtime = bool(realtime)
        self.is_live = self.realtime
        self.n_frames = n_frames
        self.depth_mm = float(depth_mm)
        self.name = f"sim:{self.scenario}:{self.seed}"
        self.spacing_mm = (self.depth_mm / self.height_px,) * 2
        self.last_truth: dict | None = None
        self._sim: Simulator | None = None
        self._loop = 0
        self._i = 0
        self._count = 0
        self._t0 = 0.0
        self._next: Future | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def nominal_fps(self) -> float | None:
        return self.fps

    @property
    def frame_size_px(self) -> tuple[int, int] | None:
        return (self.width_px, self.height_px)

    def _new_sim(self, loop: int | None = None) -> Simulator:
        loop = self._loop if loop is None else loop
        return Simulator(SimConfig(width_px=self.width_px, height_px=self.height_px, fps=self.fps,
                                   seed=self.seed + 1000 * loop, scenario=self.scenario,
                                   depth_mm=self.depth_mm, n_frames=self.n_frames))

    def __len__(self) -> int:
        return len(self._sim) if self._sim is not None else len(self._new_sim())

    def open(self) -> None:
        self._loop = 0
        self._i = 0
        self._count = 0
        self._sim = self._new_sim()
        self._t0 = time.monotonic()

    def close(self) -> None:
        self._sim = None
        self._next = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def read(self) -> Frame | None:
        if self._sim is None:
            self.open()
        if self.realtime and self._next is None and self._i >= len(self._sim) // 2:
            # Build the next loop's scene in the background: no stall when it starts.
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-next")
            self._next = self._pool.submit(self._new_sim, self._loop + 1)
        if self._i >= len(self._sim):
            if not self.realtime:
                return None
            self._loop += 1
            self._i = 0
            self._sim = self._next.result() if self._next is not None else self._new_sim()
            self._next = None
        if self.realtime:  # pace to the nominal frame rate, without drifting
            due = self._t0 + self._count / self.fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:  # fell far behind (paused consumer): do not burst
                self._t0 = time.monotonic() - self._count / self.fps
        sf = self._sim.render(self._i)
        self.last_truth = sf.truth
        t_s = self._count / self.fps
        frame = self.make_frame(sf.image, t_s, self._count, sf.spacing_mm)
        self._i += 1
        self._count += 1
        return frame
