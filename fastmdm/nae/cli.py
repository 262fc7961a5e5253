"""`fastmdm nae generate` and `fastmdm nae check`: L&O-NAE-SAT data from the native engine, and its exact checker."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from fastmdm.cli import (
    CommandError,
    HelpFormatter,
    UsageError,
    add_command,
    add_debug,
    add_generate_outputs,
    check_writable,
    count,
    int_at_least,
    positive_int,
    read_data_file,
    write_text_output,
)
from fastmdm.nae import engine, files

_TASK_OPTIONS = ("latents", "observations", "arity", "structure_seed")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _task_from(args, defaults: bool) -> engine.Task | None:
    """The task of --latents/--observations/--arity/--structure-seed (None when none is given and not `defaults`)."""
    given = {k: getattr(args, k) for k in _TASK_OPTIONS if getattr(args, k) is not None}
    if not given and not defaults:
        return None
    try:
        return engine.Task(**given)
    except ValueError as e:
        name = str(e).split(" ", 1)[0]
        raise UsageError(f"{_option(name)}: {e}" if name in _TASK_OPTIONS else str(e)) from None


def cmd_generate(args: argparse.Namespace) -> int:
    fmt = args.format or ("npz" if args.out and args.out.endswith(".npz") else "txt")
    if fmt == "npz" and (args.out is None or args.out == "-"):
        raise UsageError("--format npz needs --out FILE: binary data does not go to stdout")
    if args.seed >= 2**64:
        raise UsageError(f"--seed: expected an integer below 2**64, got {args.seed}")
    task = _task_from(args, defaults=True)
    check_writable("--out", args.out)
    try:
        tokens = engine.generate(args.n, task, args.seed, threads=args.threads, progress=not args.quiet)
    except ValueError as e:
        raise CommandError(str(e)) from None
    try:
        if fmt == "npz":
            files.save_npz(args.out, tokens, task, seed=args.seed)
        else:
            write_text_output(args.out, files.format_lines(tokens, task, seed=args.seed))
    except OSError as e:
        raise CommandError(f"--out {args.out}: cannot write it ({e.strerror or e})") from None
    if not args.quiet and args.out not in (None, "-") and len(tokens):
        ones = tokens[:, task.observation_positions].mean()
        print(f"wrote {len(tokens)} sequences ({task.describe()}) to {args.out} ({fmt}); "
              f"{ones:.1%} of observations are 1", file=sys.stderr)
    return 0


def _read(args) -> tuple[np.ndarray, engine.Task, list[str]]:
    return read_sequences(args.file, _task_from(args, defaults=False))


def read_sequences(file: str, given: engine.Task | None) -> tuple[np.ndarray, engine.Task, list[str]]:
    """(tokens, task, a label per sequence) from `file`: npz (by content) or text ('-' = stdin); `given`: the
    task of a text file without a header. Unreadable or malformed files are a CommandError."""
    return read_data_file(file, given, files, "fastmdm nae generate",
                          "--latents, --observations, --arity and --structure-seed")


def _explain(tokens: np.ndarray, task: engine.Task, ok_tokens: np.ndarray) -> str:
    """What is wrong at the first position that is not ok in one sequence."""
    p = int(np.argmin(ok_tokens))
    char = "." if tokens[p] == engine.MASK_ID else str(int(tokens[p]))
    if p < task.latents:
        return f"latent {p} is '{char}' (masked)"
    j = p - task.latents
    clause = [int(i) for i in task.clauses[j]]
    vals = tokens[clause]
    where = f"observation {j} (position {p}, clause latents {clause})"
    if (vals == engine.MASK_ID).any():
        return f"{where}: a latent of its clause is masked"
    if tokens[p] == engine.MASK_ID:
        return f"{where} is masked"
    want = int((vals != vals[0]).any())
    return f"{where} is {char}, but the latents are {''.join(map(str, vals))} so NAE gives {want}"


def cmd_check(args: argparse.Namespace) -> int:
    tokens, task, labels = _read(args)
    n = len(tokens)
    bar = None
    if not args.quiet and n >= 100_000:
        from tqdm import tqdm  # noqa: PLC0415 (only for the progress bar)

        bar = tqdm(total=n, desc="check", unit="seq", smoothing=0.1)
    oks, accs = [], []
    try:
        step = 1 << 16
        for a in range(0, n, step):
            r = engine.check(tokens[a:a + step], task, threads=args.threads)
            oks.append(r.ok)
            accs.append(r.observation_accuracy)
            if bar is not None:
                bar.update(len(r.ok))
    finally:
        if bar is not None:
            bar.close()
    ok = np.concatenate(oks) if oks else np.zeros(0, bool)
    acc = np.concatenate(accs) if accs else np.zeros(0)
    incomplete = int((tokens == engine.MASK_ID).any(axis=1).sum())
    consistent = int(ok.sum())
    share = f" ({consistent / n:.2%})" if n else ""
    plural = "" if n == 1 else "s"
    print(f"{n} sequence{plural} of {task.describe()}: {consistent} consistent{share}, {n - consistent} not "
          f"({incomplete} with masked tokens); observation tokens correct: "
          f"{acc.mean() if n else 1.0:.2%}")
    if consistent < n:
        i = int(np.argmin(ok))
        detail = _explain(tokens[i], task, engine.check(tokens[i], task, threads=1).ok_tokens[0])
        more = f" (and {n - consistent - 1} more)" if n - consistent > 1 else ""
        raise CommandError(f"{labels[i]}: {detail}{more}")
    return 0


def _task_arguments(p, defaults: bool) -> None:
    d = engine.Task()

    def text(name: str, what: str) -> str:
        return what + (f" (default: {getattr(d, name)})" if defaults else
                       " (default: the file's; needed for a text file without a header)")

    p.add_argument("--latents", type=int_at_least(2), default=None, metavar="N",
                   help=text("latents", "number of latent tokens N"))
    p.add_argument("--observations", type=positive_int, default=None, metavar="P",
                   help=text("observations", "number of observation tokens P"))
    p.add_argument("--arity", type=int_at_least(2), default=None, metavar="K",
                   help=text("arity", "latents per NAE clause"))
    p.add_argument("--structure-seed", type=count, default=None, metavar="S",
                   help=text("structure_seed", "seed of the clauses, fixed for the whole distribution"))


def register(top) -> None:
    p = top.add_parser("nae", help="L&O-NAE-SAT sequences: generate data, check sequences, train and evaluate MDMs",
                       formatter_class=HelpFormatter)
    add_debug(p)
    sub = p.add_subparsers(dest="nae_command", metavar="SUBCOMMAND")
    sub.required = True

    g = add_command(
        sub, "generate", cmd_generate, "generate L&O-NAE-SAT sequences (latents, then NAE observations)",
        description="Generate sequences of an L&O-NAE-SAT task with the native engine: N uniform bits, then "
        "one observation per clause, 1 unless the clause's latents are all equal. The structure seed fixes the "
        "clauses; the seed fixes the sequences. Same seeds, same bytes, for any --threads. See docs/nae.md.",
    )
    g.add_argument("--n", type=count, required=True, metavar="COUNT", help="number of sequences")
    g.add_argument("--seed", type=count, default=0, help="sequence i depends only on (seed, i) and the task")
    _task_arguments(g, defaults=True)
    add_generate_outputs(g, "txt: a header line, then '<latents> <observations>' per line; npz: int8 tokens "
                         "[n, N+P], int32 clauses [P, k] and the task")

    c = add_command(
        sub, "check", cmd_check, "check sequences exactly against their task",
        description="Check every observation of every sequence against the NAE predicate of its clause's "
        "latents. Prints a summary; exits with 1 naming the first inconsistent sequence if there is one.",
    )
    c.add_argument("file", help="a txt or npz file of `fastmdm nae generate` (or the same format), - for stdin")
    _task_arguments(c, defaults=False)
    c.add_argument("--threads", type=positive_int, default=None, help="worker threads (default: all cores)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")

    from fastmdm.nae import cli_model  # noqa: PLC0415 (torch loads only when a model command runs)
    cli_model.register(sub)
