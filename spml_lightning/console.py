"""What a user of the ``spml`` command sees in the terminal: exit statuses, error lines, no noise.

``run_command`` runs a command-line program (``spml``, ``spml report``) and turns
its outcome into an exit status:

* 0 on success, 130 on Ctrl-C (the shell convention: 128 + SIGINT);
* 2 for a usage error -- an unknown flag, a value of the wrong type, a config
  file that does not exist, a constructor that rejects a value -- i.e. anything
  that fails before the run itself starts;
* 1 when the run fails.

An error ends with one line, ``spml fit: error: <message>``, as the last thing
printed. The message is the project's own: jsonargparse wraps a constructor's
``ValueError`` in "Does not validate against any of the Union subtypes" plus a
dump of the parsed namespace, so the chain of causes is followed back to the
exception the constructor raised. Errors raised by spml_lightning's own checks
say what to do, and usage errors are fully described by their message: both
print no traceback; any other exception of a run (a bug, an out-of-memory
error) prints its traceback first. ``SPML_TRACEBACK=1`` always
prints it. An exception raised in a DataLoader worker (an image that cannot be
read) reaches the main process as torch's copy, whose message is the worker's
whole traceback: it is judged and reported by the worker's exception.

While the command runs, messages that tell the user nothing about their run are
filtered, each by its text (the filters are undone when the command returns):
Lightning's advertisements for its cloud products, the deprecation of
``LeafSpec`` that Lightning triggers inside torch, and, outside ``fit``, the
warning that the checkpoint folder changed (a ``test`` or ``predict`` run writes
logs to a new version folder by design).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["RunProgress", "UsageError", "error_message", "quiet_third_party_noise", "run_command"]

#: Lightning's "Tip: ... install litlogger / litmodels" lines (logged at INFO).
_ADVERT_MARKERS: tuple[str, ...] = ("litlogger", "litmodels")

#: Warning messages (regular expressions, matched at the start) filtered in every subcommand.
_NOISE_WARNINGS: tuple[str, ...] = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)

#: Warning messages filtered outside ``fit``: a ``test`` with ``--ckpt_path best`` restores the
#: checkpoint callback's state into the new run's folder, which Lightning reports as a change.
_NOISE_WARNINGS_OUTSIDE_FIT: tuple[str, ...] = (r"The dirpath has changed from",)


class UsageError(ValueError):
    """A command line or config that cannot be run as given (exit status 2)."""


class RunProgress:
    """Whether a command got past its arguments.

    Errors before that are usage errors, errors after it are run errors.
    """

    def __init__(self) -> None:
        self.started = False


class _AdvertFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(marker in message for marker in _ADVERT_MARKERS)


@contextlib.contextmanager
def quiet_third_party_noise(subcommand: str | None) -> Iterator[None]:
    """Filter the third-party messages that say nothing about the user's run.

    See the module docstring for which ones.
    """
    advert_filter = _AdvertFilter()
    loggers = [
        logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")
    ]
    with warnings.catch_warnings():
        for pattern in _NOISE_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        if subcommand != "fit":
            for pattern in _NOISE_WARNINGS_OUTSIDE_FIT:
                warnings.filterwarnings("ignore", message=pattern)
        for logger in loggers:
            logger.addFilter(advert_filter)
            # Lightning logs through child loggers; a logger filter applies to records
            # created at that logger only, so filter at the handlers too.
            for handler in logger.handlers:
                handler.addFilter(advert_filter)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(advert_filter)
                for handler in logger.handlers:
                    handler.removeFilter(advert_filter)


#: torch's copy of an exception raised in a DataLoader worker (``ExceptionWrapper.reraise``): the
#: message is "Caught <type> in DataLoader worker process <n>." and the worker's formatted
#: traceback.
_WORKER_ERROR = re.compile(
    r"Caught \w+ in DataLoader worker process \d+\.\nOriginal (Traceback .*)", re.S
)

#: A frame of a formatted traceback: its ``File`` line and the indented source (and caret) lines.
_FRAME = re.compile(r'^  File "([^"]+)", line \d+.*\n(?:    .*\n)*', re.M)


def _worker_report(error: BaseException) -> tuple[str, str] | None:
    """The file of the innermost frame and the message of a DataLoader worker's exception.

    None unless ``error`` is torch's copy of such an exception.
    """
    match = _WORKER_ERROR.match(str(error))
    frames = list(_FRAME.finditer(match.group(1))) if match else []
    if not frames:
        return None
    # After the innermost frame comes "<type>: <message>".
    message = match.group(1)[frames[-1].end() :].strip()
    return frames[-1].group(1), re.sub(r"^[\w.]+: ", "", message, count=1)


def _raised_inside(error: BaseException, package: str) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in ``package``.

    For a DataLoader worker's exception, the frame is the worker's.
    """
    worker = _worker_report(error)
    frames = traceback.extract_tb(error.__traceback__)
    filename = worker[0] if worker else frames[-1].filename if frames else ""
    return f"{os.sep}{package}{os.sep}" in filename


def root_error(error: BaseException) -> BaseException:
    """The exception behind jsonargparse's wrappers.

    That is the first one in the chain of explicit causes that was raised
    outside jsonargparse (a constructor's check), else ``error`` itself
    (jsonargparse's own message, e.g. a value of the wrong type).
    """
    cause: BaseException | None = error
    while cause is not None:
        if not _raised_inside(cause, "jsonargparse"):
            return cause
        cause = cause.__cause__
    return error


def _constructor_error(text: str) -> str | None:
    """The one error a class's own constructor raised, from a union's list of errors.

    Older jsonargparse releases (4.41) report a bad init argument of a ``class_path``
    only as text: ``Does not validate against any of the Union subtypes ... Errors:
    - Expected a <class 'NoneType'> - batch_size must be at least 1, got 0. ...``.
    The alternatives the union also tried (``None``, a class name) are left out; what
    remains, when it is one line of the class's own, is the message (None otherwise).
    """
    listed = re.search(r"^Errors:\n((?:[ \t]+- .*\n?)+)", text, re.M)
    if listed is None:
        return None
    errors = [line.strip()[2:] for line in listed.group(1).splitlines()]
    own = [e for e in errors if not e.startswith("Expected a <class '")]
    if len(own) != 1 or own[0].startswith(("Expected a", "Problem with given class_path")):
        return None
    return own[0]


def _parser_message(text: str) -> str:
    """Jsonargparse's multi-line report of a bad value as one line naming the flag.

    ``Parser key "data": Does not validate against any of the Union subtypes ...
    Parser key "val_labels": Expected a Literal[...]. Got value: some`` becomes
    ``--data.init_args.val_labels: Expected a Literal[...]. Got value: some``. The
    alternatives a union also tried (``None``, a class name) are left out.
    """
    own = _constructor_error(text)
    if own is not None:
        return own
    keys = re.findall(r'Parser key "([^"]+)"', text)
    expected = [
        line.strip(" -")
        for line in text.splitlines()
        if line.strip(" -").startswith("Expected a")
        and not re.search(r"<class '(NoneType|str)'>", line)
    ]
    if not keys or len(expected) != 1:
        return text
    joiner = ".init_args." if "class_path" in text else "."
    given = re.search(r"Given value: (.*)", text)
    if "Got value" not in expected[0] and given:
        expected[0] += f". Got value: {given.group(1).strip()}"
    # jsonargparse refuses nan and inf as a float, saying a float was expected.
    non_finite = _NON_FINITE.search(expected[0])
    if non_finite:
        expected[0] = f"expected a finite number, got {non_finite.group(1)}"
    return f"--{joiner.join(keys)}: {expected[0]}"


_NON_FINITE = re.compile(
    r"Expected a <class 'float'>\. Got value: ([+-]?(?:nan|inf(?:inity)?))$", re.IGNORECASE
)


def error_message(error: BaseException) -> str:
    """The message a user is shown for ``error``: its text, or its type when it has none."""
    text = str(error).strip()
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])  # str(KeyError) quotes its message
    if _raised_inside(error, "jsonargparse"):
        text = _parser_message(text)
    worker = _worker_report(error)
    if worker is not None:
        text = worker[1]
    return text or type(error).__name__


def _subcommand_of(args: Sequence[str] | None, subcommands: Sequence[str]) -> str | None:
    argv = sys.argv[1:] if args is None else list(args)
    return next((a for a in argv if a in subcommands), None)


def run_command(
    program: str,
    start: Callable[[Sequence[str] | None, RunProgress], Any],
    args: Sequence[str] | None = None,
    subcommands: Sequence[str] = (),
) -> int:
    """Run a command-line program and return its exit status (see the module doc).

    Args:
        program: the command's name, e.g. ``spml``; error lines start with it.
        start: runs the program on ``args``; it sets the ``RunProgress`` it is given
            to started when the run proper starts (errors before are usage errors).
        args: the command line without the program name; None reads ``sys.argv``.
        subcommands: the program's subcommands (``fit``, ...), named in its error lines.
    """
    subcommand = _subcommand_of(args, subcommands)
    label = f"{program} {subcommand}" if subcommand else program
    progress = RunProgress()
    try:
        with quiet_third_party_noise(subcommand):
            start(args, progress)
    except KeyboardInterrupt:
        print(f"\n{label}: interrupted.", file=sys.stderr)
        return 130
    except SystemExit as exit_:  # --help, --print_config, argparse errors
        if exit_.code is None or isinstance(exit_.code, int):
            return int(exit_.code or 0)
        print(f"{label}: error: {exit_.code}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 -- every failure becomes an exit status
        cause = root_error(error)
        usage = isinstance(cause, UsageError) or not progress.started
        # A usage error is explained by its message; a failed run that spml's own
        # checks did not explain (a bug, out of memory) needs its traceback.
        if os.environ.get("SPML_TRACEBACK") or not (
            usage or _raised_inside(cause, "spml_lightning")
        ):
            traceback.print_exception(error, file=sys.stderr)
        print(f"{label}: error: {error_message(cause)}", file=sys.stderr)
        return 2 if usage else 1
    return 0
