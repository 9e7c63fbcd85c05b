"""Command line: import a checkpoint (HF folder or GGUF) and export it as a Hugging Face folder.

    python -m yarn_jax.convert import SmolLM2.gguf out/smollm2_hf
    python -m yarn_jax.convert import hf_folder out/yarn --rope '{"rope_type": "yarn", "factor": 4}'
    python -m yarn_jax.convert export ...      (same as import: load, then write an HF folder)
    python -m yarn_jax.convert inspect SmolLM2.gguf

`import` reads the source (checking every tensor against the config) and writes an HF folder
(safetensors + config.json + tokenizer files) that transformers loads unchanged; `--rope`
overrides the rope config that the export records. `inspect` prints the config and rope table.
"""

from __future__ import annotations

import argparse
import json
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m yarn_jax.convert",
        description="Convert LLaMA-family checkpoints (HF folder, sharded, .bin, GGUF) to a "
        "Hugging Face folder, optionally with another RoPE method.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("import", "read a checkpoint and write it as an HF folder"),
        ("export", "alias of import: load a checkpoint, export an HF folder"),
    ):
        s = sub.add_parser(name, help=help_, description=help_)
        s.add_argument("source", help="HF model folder or .gguf file")
        s.add_argument("out_dir", help="output folder (created)")
        s.add_argument(
            "--rope",
            default=None,
            help='rope override as JSON, e.g. \'{"rope_type": "yarn", "factor": 4.0, '
            '"original_max_position_embeddings": 8192}\'',
        )
        s.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
        s.add_argument(
            "--rope-form",
            default="v5",
            choices=["v4", "v5"],
            help="config.json rope layout: v5 rope_parameters or v4 rope_scaling",
        )
    s = sub.add_parser("inspect", help="print the model config and its rope table")
    s.add_argument("source", help="HF model folder or .gguf file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from yarn_jax import api, rope  # noqa: PLC0415 - keep --help fast

    if args.command == "inspect":
        cfg = api.load_config(args.source)  # the config only: no weights read or dequantized
        print(json.dumps(cfg.to_hf(), indent=2, sort_keys=True))
        print(rope.describe(cfg.rope, cfg.head_dim))
        return 0
    override = None
    if args.rope:
        try:
            override = json.loads(args.rope)
        except json.JSONDecodeError as e:
            raise SystemExit(f"--rope is not valid JSON: {e}") from e
    model = api.from_pretrained(args.source, rope_scaling=override, dtype=args.dtype)
    out = api.save_pretrained(model, args.out_dir, rope_form=args.rope_form)
    print(f"wrote {out} ({model.cfg.model_type}, rope {model.cfg.rope.rope_type})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
