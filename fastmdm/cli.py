"""The `fastmdm` command line. Subcommands live beside the code they drive and register themselves here.

Errors: a command that cannot do what it was asked ends with one line on stderr,
``fastmdm <command>: error: <what> <why> <what to do>``, and exit code 2 when the command line is wrong (an
unknown option, a value out of range, options that exclude each other, a device this machine lacks) or 1
when the run failed (unreadable files, a damaged checkpoint, invalid puzzles, a model that gives NaN).
``--debug`` (or the environment variable FASTMDM_DEBUG=1) shows the Python traceback instead.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from fastmdm.runtime import keep_freed_memory

DEBUG_ENV = "FASTMDM_DEBUG"


class CommandError(Exception):
    """A failure the user can act on; printed as one line, exit code `code` (1: the run failed, 2: usage)."""

    code = 1

    def __init__(self, message: str, code: int | None = None, prog: str | None = None):
        super().__init__(message)
        self.prog = prog
        if code is not None:
            self.code = code


class UsageError(CommandError):
    code = 2


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (the usage block is what --help is for)."""

    def error(self, message):
        raise UsageError(f"{message}; see {self.prog} --help", prog=self.prog) from None

    def parse_args(self, args=None, namespace=None):
        args, extras = self.parse_known_args(args, namespace)
        if extras:  # name the subcommand the options were given to, not the top-level parser
            prog = getattr(args, "_prog", self.prog)
            raise UsageError(f"unrecognized arguments: {' '.join(extras)}; see {prog} --help", prog=prog)
        return args


class HelpFormatter(argparse.HelpFormatter):
    """Appends '(default: X)' once, and only where there is a default to show and the help does not give it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS))
                or action.option_strings == [] or isinstance(action, argparse._HelpAction)):
            return text
        return f"{text} (default: %(default)s)"


# ----------------------------------------------------------------------------------------------
# argument types: each refuses a bad value with a message argparse prefixes with the option's name
# ----------------------------------------------------------------------------------------------
def int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {v}")
        return v
    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)
count = int_at_least(0)


def number_at_least(minimum: float, strict: bool = False):
    what = f"a number {'>' if strict else '>='} {minimum:g}"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(v) or v < minimum or (strict and v == minimum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return v
    parse.__name__ = what
    return parse


def strategy(text: str) -> str:
    from fastmdm.strategies import STRATEGIES  # noqa: PLC0415
    if text not in STRATEGIES:
        raise argparse.ArgumentTypeError(f"unknown decoding strategy {text!r}; use one of "
                                         f"{', '.join(sorted(STRATEGIES))}")
    return text


def strategy_list(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated strategies such as margin,random, got {text!r}")
    for s in names:
        strategy(s)
    return names


def device(text: str) -> str:
    """'cpu', 'cuda', 'cuda:N' or 'mps', available on this machine."""
    import torch  # noqa: PLC0415
    try:
        d = torch.device(text)
    except (RuntimeError, ValueError):
        d = None
    if d is None or d.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or mps, got {text!r}")
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: this machine has no CUDA device that torch "
                                             f"{torch.__version__} can use; pass --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA "
                                             f"device(s), numbered from 0")
    if d.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available here; pass --device cpu")
    return text


def environment(args) -> dict:
    """What a results file records about the run: the command, the CPU, torch's version and the date."""
    import datetime  # noqa: PLC0415
    import shlex  # noqa: PLC0415

    import torch  # noqa: PLC0415

    from fastmdm.adapters import cpu_model  # noqa: PLC0415
    return {"command": shlex.join(["fastmdm", *getattr(args, "_argv", [])]), "cpu": cpu_model(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "date": datetime.date.today().isoformat()}


def read_data_file(file: str, given, files, make_command: str, task_hint: str):
    """(tokens, task, a label per row) from a data file of an app's `files` module (`is_npz`, `load_npz`,
    `read_text`): npz by content, else text ('-' = stdin). `given`: the task of a text file without a header
    (None: the file's); `task_hint`: the options that give it, named in the error when the header is missing.
    Unreadable or malformed files are a CommandError."""
    import zipfile  # noqa: PLC0415 (only when a command reads a file)
    name = "stdin" if file == "-" else file
    try:
        if file != "-" and files.is_npz(file):
            tokens, task = files.load_npz(file, given)
            return tokens, task, [f"row {i}" for i in range(len(tokens))]
        lines = sys.stdin.read().splitlines() if file == "-" else file
        tokens, task, numbers = files.read_text(lines, given)
    except (IsADirectoryError, NotADirectoryError, FileNotFoundError, PermissionError) as e:
        raise CommandError(f"{name}: cannot read it ({e.strerror or e}); check the path") from None
    except UnicodeDecodeError:
        raise CommandError(f"{name}: not a text file or an npz of `{make_command}`") from None
    except zipfile.BadZipFile as e:
        raise CommandError(f"{name}: not a readable npz ({e}); regenerate it with `{make_command}`") from None
    except (ValueError, OSError) as e:
        hint = "" if given is not None or "header" not in str(e) else f"; pass {task_hint}"
        raise CommandError(f"{name}: {e}{hint}") from None
    return tokens, task, [f"line {i}" for i in numbers]


def check_writable(option: str, path: str | None) -> None:
    """Refuse, before a long run, an output path whose directory does not exist ('-' is standard output)."""
    if path not in (None, "-") and not Path(path).resolve().parent.is_dir():
        raise CommandError(f"{option} {path}: its directory does not exist; create it first")


def write_text_output(path: str | None, text: str) -> None:
    """`text` to standard output (path None or '-') or atomically to a file."""
    if path is None or path == "-":
        sys.stdout.write(text)
        return
    from fastmdm.checkpoint import atomic_write_text  # noqa: PLC0415
    atomic_write_text(path, text)


def add_command(sub, name: str, func, help: str, **kwargs) -> Parser:
    """A subcommand parser with the shared formatter and --debug, running `func(args)`."""
    p = sub.add_parser(name, help=help, formatter_class=HelpFormatter, **kwargs)
    add_debug(p)
    p.set_defaults(func=func, _prog=p.prog)
    return p


def add_generate_outputs(p, format_help: str) -> None:
    """--out, --format (txt or npz, `format_help` says what each holds), --threads and --quiet of a `generate`."""
    p.add_argument("--out", default=None, help="output file (default: stdout for txt)")
    p.add_argument("--format", choices=("txt", "npz"), default=None,
                   help=format_help + ". Default: from --out's suffix, else txt")
    p.add_argument("--threads", type=positive_int, default=None, help="worker threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary on stderr")


def add_debug(p) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=f"show the Python traceback of an error (or set {DEBUG_ENV}=1)")


def version() -> str:
    import fastmdm  # noqa: PLC0415 (the package's one version source, read when asked)

    v = fastmdm.__version__
    return "unknown (not installed as a package)" if v == "0+unknown" else v


def build_parser() -> Parser:
    parser = Parser(prog="fastmdm", description="Fast adaptive decoding for masked diffusion models",
                    formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"fastmdm {version()}",
                        help="print the installed version and exit")
    add_debug(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    from fastmdm import example  # noqa: PLC0415
    example.register(sub)
    _register_native_app(sub, "sudoku", "Sudoku", "Sudoku data, training, evaluation")
    _register_native_app(sub, "nae", "L&O-NAE-SAT", "L&O-NAE-SAT data, training, evaluation")
    _register_native_app(sub, "zebra", "Zebra", "Zebra puzzle data, solving, training, evaluation")
    return parser


def _register_native_app(sub, name: str, title: str, help: str) -> None:
    """Register `fastmdm.<name>.cli`; if the native engine it needs did not load, a stand-in command says so."""
    import importlib  # noqa: PLC0415 (the apps load only when the parser is built)
    try:
        module = importlib.import_module(f"fastmdm.{name}.cli")
    except ImportError as e:  # the native engine was not built
        error = e

        def unavailable(args):
            raise CommandError(f"the {title} commands need the native engine, which did not load ({error}); "
                               "reinstall with `pip install -e .` and a C++17 compiler")
        p = add_command(sub, name, unavailable, f"{help} (needs the native engine)")
        p.add_argument("rest", nargs=argparse.REMAINDER, help=f"the {title} command and its options")
    else:
        module.register(sub)


def describe(e: BaseException) -> str:
    """One line for an exception: what went wrong, from its message."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, (CommandError, ValueError, TypeError, OSError)):
        return text
    return f"unexpected {type(e).__name__}: {text}; rerun with --debug for the traceback and report it"


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        if debug:
            raise
        print(f"{e.prog or 'fastmdm'}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    args._argv = list(sys.argv[1:] if argv is None else argv)  # as typed, for results files that record it
    debug = debug or getattr(args, "debug", False)
    prog = getattr(args, "_prog", "fastmdm")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        if not isinstance(e.code, str):
            raise
        if debug:
            raise
        print(f"{prog}: error: {e.code.removeprefix(prog + ': ')}", file=sys.stderr)
        return 1
    except Exception as e:  # no traceback for a user's mistake; --debug shows it
        if debug:
            raise
        print(f"{prog}: error: {describe(e)}", file=sys.stderr)
        return e.code if isinstance(e, CommandError) else 1


if __name__ == "__main__":
    # `python -m fastmdm.cli` runs this file as __main__; the commands raise fastmdm.cli's CommandError, so the
    # entry point must be that module's, not a second copy of its classes
    from fastmdm.cli import main as _main
    sys.exit(_main())
