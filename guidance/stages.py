"""Processing stages: the plug-in steps between a frame and its guidance.

A stage is any object with a ``name`` and a ``__call__(result) -> result``
that returns a new :class:`~guidance.types.FrameResult` (results are frozen:
use ``dataclasses.replace``). The pipeline times each stage under its name.
Stages may keep state across frames (the tracker does) but no global state.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .types import FrameResult


@runtime_checkable
class Stage(Protocol):
    name: str

    def __call__(self, result: FrameResult) -> FrameResult: ...
