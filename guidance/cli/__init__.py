"""The ``guidance`` command.

Each module in this package that defines ``register(subparsers)`` adds one or
more subcommands; each subcommand sets ``func`` (taking the parsed args and
returning an exit status). Other packages (the desktop app in ``ui``) add
theirs through the ``guidance.commands`` entry-point group, so the core never
imports them.

User mistakes raise :class:`~guidance.errors.GuidanceError`: we print its one
line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
from importlib.metadata import entry_points

from .. import __version__
from ..errors import GuidanceError

DISCLAIMER = "Not a cleared medical device: for research, training and engineering use only."


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2 (argparse's default status too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="guidance", description=f"Ultrasound-guided knee injection navigation. {DISCLAIMER}")
    parser.add_argument("--version", action="version", version=f"guidance {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    for ep in entry_points(group="guidance.commands"):
        try:
            ep.load()(sub)
        except ImportError as exc:  # e.g. the desktop app without Qt installed
            p = sub.add_parser(ep.name, help=f"(unavailable: {exc})")
            p.set_defaults(func=lambda args, _e=exc: _unavailable(args, _e))
    return parser


def _unavailable(args, exc) -> int:
    print(f"guidance {args.command}: not available here: {exc}", file=sys.stderr)
    return 2


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--spacing -1,2`` as ``--spacing=-1,2``.

    argparse reads a value starting with '-' as the next option and says only
    "expected one argument"; attached, the option's own check says what is
    wrong with the value. None of our commands takes a negative positional.
    """
    out: list[str] = []
    for tok in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"-\.?\d", tok):
            out[-1] = f"{out[-1]}={tok}"
        else:
            out.append(tok)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_negative_values(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GuidanceError as exc:
        print(f"guidance {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `guidance detect x.mp4 | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
