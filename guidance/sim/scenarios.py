"""Named sequences the simulator plays: what the needle does and how it looks."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    needle: bool = True
    angle_deg: tuple[float, float] = (20.0, 40.0)
    """Range of the shaft angle from horizontal (the skin), degrees."""
    gauges: tuple[int, ...] = (18, 20, 21, 22)
    out_of_plane: bool = False
    inject: bool = True
    redirect: bool = True
    brightness: tuple[float, float] = (0.8, 1.2)
    duration_s: float = 8.0


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("insertion", "clean in-plane insertion to the cartilage surface, one redirect, then an injection"),
    Scenario("steep", "steep (45-60 degree) thin needle, faint and hard to see",
             angle_deg=(45.0, 60.0), gauges=(22, 23, 25), brightness=(0.45, 0.8)),
    Scenario("out_of_plane", "the needle rolls out of the imaging plane: tip lost, then found again",
             out_of_plane=True, inject=False),
    Scenario("no_needle", "anatomy only: probe drift and gain changes, no needle", needle=False),
)}


def get_scenario(name: str | None) -> Scenario:
    """The scenario called ``name`` ("insertion" when None)."""
    key = (name or "insertion").strip().lower().replace("-", "_")
    if key not in SCENARIOS:
        raise InputError(f"sim scenario {name!r}: unknown (choose one of: {', '.join(SCENARIOS)})")
    return SCENARIOS[key]
