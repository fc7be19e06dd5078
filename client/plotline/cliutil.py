"""What every client verb of `plotline` shares: the --url option, one-line errors, output.

commands.py (accounts and keys) and content.py (publish, ls, rm, gc, upload) register their
verbs through `Verbs`; cli.py makes one and hands it to both.
"""

from __future__ import annotations

import argparse
import configparser
import functools
import sys
import time
from collections.abc import Callable

from . import config
from .session import PlotlineError

URL_HELP = ("the server's URL, including any --url-prefix (default: [server] url in "
            "$PLOTLINE_HOME/config, else " + config.DEFAULT_URL + "; PLOTLINE_HOME defaults "
            "to ~/.plotline)")


class UsageError(Exception):
    """A problem with how the command was called (printed like a server error)."""


def say(message: str) -> None:
    """A note for the person at the terminal (stderr: stdout is the verb's result)."""
    print(message, file=sys.stderr)


def when(created: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else "-"


def url_flag(args: argparse.Namespace) -> str:
    return f" --url {args.url}" if args.url else ""


def _explain(exc: PlotlineError, args: argparse.Namespace) -> str:
    """The server's detail, plus what to do when it is about logging in."""
    if exc.status == 401 and exc.code == "token_expired":
        return f"{exc.detail} with `plotline login{url_flag(args)}`"
    if exc.status == 401 and exc.code != "invalid_credentials":
        return f"{exc.detail}; log in with `plotline login{url_flag(args)}`"
    return exc.detail


def guarded(fn: Callable[[argparse.Namespace], int | None]) -> Callable[..., int]:
    """Turn every expected failure into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args) or 0
        except PlotlineError as exc:
            message = _explain(exc, args)
        except UsageError as exc:
            message = str(exc)
        except (OSError, configparser.Error) as exc:
            message = f"configuration in {config.home()}: {exc}"
        except (KeyboardInterrupt, EOFError):
            print(file=sys.stderr)
            return 130
        print("plotline: " + " ".join(message.split()), file=sys.stderr)
        return 1

    return run


class Verbs:
    """Registers client verbs on the `plotline` command's subparsers, each guarded; `url`
    is the parent parser of --url, which every verb takes."""

    def __init__(self, sub: argparse._SubParsersAction) -> None:
        self.sub = sub
        self.url = argparse.ArgumentParser(add_help=False)
        self.url.add_argument("--url", metavar="URL", help=URL_HELP)

    def __call__(self, name: str, fn: Callable, summary: str, description: str,
                 parents: list, on: argparse._SubParsersAction | None = None
                 ) -> argparse.ArgumentParser:
        p = (on or self.sub).add_parser(name, help=summary, description=description,
                                        parents=parents)
        p.set_defaults(func=guarded(fn))
        return p
