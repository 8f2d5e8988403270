"""The ``imagenet-prep`` command: argument parsing only; the work is in the library.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds
its parser and sets ``func`` to a callable taking the parsed namespace and returning
an exit status. Exit codes: 0 ok, 1 data errors, 2 usage errors.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import DataError, ImagenetPrepError, UsageError

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2


def make_parser() -> argparse.ArgumentParser:
    from . import build, fixture, report, verify

    parser = argparse.ArgumentParser(
        prog="imagenet-prep",
        description="Turn the raw ILSVRC2012 download into training-ready data.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (fixture, build, verify, report):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s" if not args.verbose else "%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,  # main() may run more than once in a process (tests, tools): today's stderr
    )
    if not args.verbose:
        # The object stores' clients say at INFO where they found credentials and endpoints.
        for noisy in ("botocore", "aiobotocore", "s3fs", "gcsfs", "fsspec", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    package_log = logging.getLogger("imagenet_prep")
    level = package_log.level  # --quiet raises it for the command, and only for the command
    try:
        status: int = args.func(args)
    except UsageError as exc:
        _error(args.command, exc)
        return EXIT_USAGE
    except (DataError, ImagenetPrepError) as exc:
        _error(args.command, exc)
        return EXIT_DATA
    except KeyboardInterrupt:
        print(f"imagenet-prep {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        package_log.setLevel(level)
    return status


def _error(command: str, exc: Exception) -> None:
    """Print the one error line; a file name that is not UTF-8 shows its odd bytes escaped."""
    text = f"imagenet-prep {command}: error: {exc}"
    print(text.encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
