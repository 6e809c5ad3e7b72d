"""Knee injection ultrasound simulator with ground truth.

>>> from guidance.sim import SimConfig, Simulator
>>> sim = Simulator(SimConfig(width_px=320, height_px=256, fps=15, seed=1, scenario="insertion"))
>>> frame = sim.render(0)        # SimFrame: image, truth (contract line), masks, tip_px

See docs/simulator.md for the model and its limits.
"""

from .scenarios import SCENARIOS, Scenario, get_scenario
from .simulator import SIM_VERSION, SimConfig, SimFrame, Simulator

__all__ = ["SCENARIOS", "SIM_VERSION", "Scenario", "SimConfig", "SimFrame", "Simulator", "get_scenario"]
