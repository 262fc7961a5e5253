"""`fastmdm sudoku solve`: the model's answer to each input puzzle, in order (even when it is wrong)."""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from fastmdm.sudoku.data import MASK_ID


def read_inputs(puzzles: list[str], file: str | None) -> np.ndarray:
    """int8 [N, 81] from command-line puzzles and/or a file ('-' = stdin); blank lines and '#' comments
    skipped; a bad puzzle raises ValueError naming its line."""
    from fastmdm.sudoku import grids  # noqa: PLC0415
    rows = [grids.parse_puzzle(s) for s in puzzles]
    if file is not None:
        lines = sys.stdin.read().splitlines() if file == "-" else file
        read = grids.read_puzzles(lines)
        rows += list(read)
    if not rows:
        raise ValueError("no puzzles: pass 81-character puzzles as arguments or --file FILE ('-' for stdin)")
    return np.stack([np.asarray(r, dtype=np.int8).reshape(81) for r in rows])


def solve(model, puzzles: np.ndarray, *, strategy="margin", k=None, steps=None, score_noise=0.0, seed=0,
          batch_size=256) -> tuple[np.ndarray, np.ndarray]:
    """(answers int8 [N, 81], valid bool [N])."""
    from fastmdm.sudoku.data import is_valid_solution  # noqa: PLC0415
    from fastmdm.sudoku.evaluate import solve_batch  # noqa: PLC0415
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    answers, valid = [], []
    for i in range(0, len(puzzles), batch_size):
        p = torch.as_tensor(puzzles[i:i + batch_size]).long()
        a = solve_batch(model, p, strategy=strategy, k=k, steps=steps, score_noise=score_noise, generator=g).cpu()
        answers.append(a.to(torch.int8).numpy())
        valid.append(is_valid_solution(p, a).numpy())
    return np.concatenate(answers), np.concatenate(valid)


def run_cli(args) -> int:
    import fastmdm  # noqa: PLC0415
    from fastmdm.sudoku import model as smodel  # noqa: PLC0415
    if args.strategy not in fastmdm.STRATEGIES:
        raise SystemExit(f"--strategy: unknown {args.strategy!r}; use one of {sorted(fastmdm.STRATEGIES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        puzzles = read_inputs(args.puzzles, args.file)
    except (ValueError, OSError) as e:
        raise SystemExit(f"fastmdm sudoku solve: {e}") from None
    model, _ = smodel.load(args.checkpoint, device=args.device, precision=args.precision)
    answers, valid = solve(model, puzzles, strategy=args.strategy, k=args.k, steps=args.steps,
                           score_noise=args.score_noise, seed=args.seed, batch_size=args.batch_size)
    for p, a, ok in zip(puzzles, answers, valid):
        digits = "".join(str(int(v)) for v in a)
        if args.json:
            print(json.dumps({"puzzle": "".join(str(int(v)) if v else "." for v in p), "answer": digits,
                              "valid": bool(ok)}))
        else:
            print(digits)
    return 0
