"""Training on recorded sessions: scores, practice mode, reports, progress.

Qt-free: the practice panel lives in ``ui/practice.py``. Works on sequences of
contract records (``../shared/CONTRACT.md``) so any recording, ``guidance
detect`` output or simulator truth can be scored.
"""

from .metrics import MetricParams, SessionAnalysis, SessionMetrics, analyse, overall_score, session_metrics

__all__ = ["MetricParams", "SessionAnalysis", "SessionMetrics", "analyse", "overall_score", "session_metrics"]
