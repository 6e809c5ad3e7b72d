"""Ultrasound-guided knee injection navigation: the Qt-free core.

Not a cleared medical device. For research, training and engineering use.
"""

__version__ = "0.1.0"
