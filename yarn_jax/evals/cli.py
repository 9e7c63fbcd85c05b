"""Command line of eval.py: flags -> EvalConfig -> runner.run. Bad input: one line, exit code 2.

python eval.py --method dynamic_ntk                      # the default run (see --help)
python eval.py --method yarn,dynamic_ntk --factor 4 --lengths 2k,8k,16k --stride 512
python eval.py --task passkey --method yarn --lengths 4k,12k --depths 0,0.5,1 --trials 3
python eval.py --config configs/eval_default.py --model path/to/hf_dir --data docs/*.txt
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

from yarn_jax.evals.runner import ROPE_FIELDS, EvalConfig, EvalError, run


def _int_list(s: str) -> list[int]:
    out = []
    for part in s.split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1024 if part.endswith("k") else 1
        try:
            out.append(int(float(part.rstrip("k")) * mult))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a length: {part!r} (e.g. 2048 or 2k)") from None
    return out


def _float_list(s: str) -> list[float] | str:
    if s.strip().lower() == "random":
        return "random"
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {s!r}") from None


def _flag(field: str) -> str:
    return "--" + ("rope-truncate" if field == "truncate" else field.replace("_", "-"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eval.py",
        description="Perplexity over context lengths / passkey retrieval for RoPE methods. "
        "With no argument: SmolLM2-135M-Instruct (GGUF, fetched once) on the bundled documents.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    a = p.add_argument
    a("--config", help="a configs/*.py file whose get_config() gives the run (flags override it)")
    a("--task", choices=["perplexity", "passkey"])
    a("--method", dest="methods", help="one method, a comma list, or 'all'")
    a("--no-baseline", action="store_true", help="do not add the `default` (no scaling) baseline")
    a("--model", help="HF folder, .gguf file or hub id (default: SmolLM2-135M-Instruct GGUF)")
    a("--tokenizer", help="tokenizer path if not the model's")
    a("--dtype", choices=["float32", "bfloat16", "float16"])
    a("--lengths", type=_int_list, help="context lengths, e.g. 2k,4k,8k,12k")
    a("--samples", type=int, help="documents per length (the first long enough)")
    a("--stride", type=int, help="sliding-window stride in tokens (default 256)")
    a(
        "--truncate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one window per document (its first L tokens), as the paper's Proof-pile tables",
    )
    a("--data", nargs="+", help="text files / dirs, .jsonl/.parquet/.csv files, or a datasets name")
    a("--documents", help="comma list of document names (bundled names or file names), or 'all'")
    a("--text-field", help="column holding the text in jsonl/parquet/datasets data")
    a("--split", help="datasets split")
    a("--loss-chunk", type=int, help="positions per chunk of the loss (memory of the logits)")
    a("--depths", type=_float_list, help="passkey depths in [0,1], comma list, or 'random'")
    a("--trials", type=int, help="passkey trials per (length, depth)")
    a("--max-new-tokens", type=int)
    a("--seed", type=int)
    a("--output-dir", help="where results.json/csv and the plot go (default eval_out)")
    a("--no-progress", action="store_true", help="no progress bars")
    g = p.add_argument_group("RoPE fields (apply to every non-default method)")
    for field in ROPE_FIELDS:
        if field in ("truncate", "finetuned"):
            g.add_argument(_flag(field), dest=f"rope_{field}", default=None,
                           action=argparse.BooleanOptionalAction)  # fmt: skip
        elif field in ("short_factor", "long_factor"):
            g.add_argument(_flag(field), dest=f"rope_{field}", type=_float_list, metavar="F,F,...")
        elif field == "original_max_position_embeddings":
            g.add_argument(_flag(field), dest=f"rope_{field}", type=int, metavar="L")
        else:
            g.add_argument(_flag(field), dest=f"rope_{field}", type=float, metavar="X")
    return p


def load_config_file(path: str) -> dict[str, Any]:
    from yarn_jax.config_files import load_config

    if not pathlib.Path(path).is_file():
        raise EvalError(f"--config {path}: no such file")
    try:
        cfg = load_config(path)
    except Exception as e:
        raise EvalError(f"--config {path}: could not evaluate get_config() ({e})") from None
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    d = load_config_file(args.config) if args.config else {}
    rope = dict(d.get("rope") or {}) if args.config else dict(EvalConfig().rope)
    for field in ROPE_FIELDS:
        v = getattr(args, f"rope_{field}")
        if v == "random":
            raise EvalError(f"{_flag(field)} takes numbers, not 'random'")
        if v is not None:
            rope[field] = tuple(v) if isinstance(v, list) else v
    d["rope"] = rope
    simple = ["task", "methods", "model", "tokenizer", "dtype", "lengths", "samples", "stride",
              "truncate", "data", "documents", "text_field", "split", "loss_chunk", "trials",
              "max_new_tokens", "seed", "output_dir"]  # fmt: skip
    for key in simple:
        v = getattr(args, key)
        if v is not None:
            d[key] = v
    # Flags that only make sense for another selection undo the default's shortcuts.
    if args.stride is not None and args.truncate is None:
        d["truncate"] = False  # a stride means sliding windows
    if (args.data or args.samples is not None) and args.documents is None:
        d["documents"] = ()  # the default's document choice names bundled documents
    if args.documents is not None and args.documents.strip().lower() == "all":
        d["documents"] = ()
    if args.depths is not None:
        d["depths"] = None if args.depths == "random" else args.depths
    if args.no_baseline:
        d["baseline"] = None
    if args.no_progress:
        d["progress"] = False
    return EvalConfig.from_dict(d)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(config_from_args(args))
    except (EvalError, ValueError, FileNotFoundError) as e:
        print(f"eval.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eval.py: interrupted; nothing written", file=sys.stderr)
        return 130
    return 0
