"""Recompute a truncate-mode eval.py run with transformers and compare the perplexities.

    python eval.py --method dynamic_ntk --output-dir eval_out       # the default run
    python bench/bench_eval_vs_transformers.py eval_out/results.json

For every (method, length, document) row of results.json, transformers (LlamaForCausalLM, fp32,
SDPA, 2 threads) scores the same window: the first L token ids of the document, tokenized with
yarn_jax's tokenizer so both sides see identical ids. RoPE settings go to transformers through
`RopeConfig.to_hf("v5")`. Prints both perplexities and their relative difference (the issue's bar:
0.5%). Slow: one transformers forward per row (FACTS.md: 40 s at 8k on 2 cores).

Measured 2026-12-01 on the default run (SmolLM2-135M-Instruct Q4_1 GGUF, KJV Genesis, first L
tokens, fp32; machine shared, load ~5):
    default     2048: ours 4.208926  transformers 4.208901  (6e-6)
    default     8192: ours 5.981365  transformers 5.981325  (7e-6)
    default    12288: ours 8.520134  transformers 8.520072  (7e-6)
    dynamic_ntk 12288 (factor 4): ours 7.039277  transformers 7.039230  (7e-6)
"""

import json
import math
import sys
import time

import numpy as np


def main(path: str) -> int:
    import torch
    import transformers

    import yarn_jax
    from yarn_jax import rope
    from yarn_jax.convert.gguf import read_gguf
    from yarn_jax.evals import documents
    from yarn_jax.model import LlamaConfig

    torch.set_num_threads(2)
    res = json.loads(open(path).read())
    st = res["settings"]
    if not st.get("truncate"):
        raise SystemExit("only truncate-mode results (one window per document) are supported")
    model_path = st["model"]
    tok = yarn_jax.load_tokenizer(model_path)
    names = {d["name"] for d in st["documents"]}
    docs = [d for d in documents.bundled_documents() if d.name in names]
    ids = {d.name: np.asarray(documents.encode_ids(tok, d.text)) for d in docs}
    if model_path.endswith(".gguf"):
        ck = read_gguf(model_path)
        hf_cfg, state = dict(ck.hf_config), {k: torch.from_numpy(v) for k, v in ck.tensors()}
    else:
        hf_cfg = json.loads(open(f"{model_path}/config.json").read())
        state = transformers.AutoModelForCausalLM.from_pretrained(model_path).state_dict()
    worst = 0.0
    for method, rcfg in st["rope"].items():
        cfg = rope.RopeConfig(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in rcfg.items()})  # fmt: skip
        # The config our export would write (architecture, rope, max_position_embeddings).
        conf = LlamaConfig.from_hf(hf_cfg).replace(rope=cfg).to_hf("v5")
        model = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(**conf)
        )
        missing, unexpected = model.load_state_dict(state, strict=False)
        allowed = {"lm_head.weight"} if conf.get("tie_word_embeddings") else set()
        if set(missing) - allowed or unexpected:
            raise SystemExit(
                f"{model_path}: weights do not fit transformers' {type(model).__name__}: "
                f"missing {sorted(set(missing) - allowed)}, unexpected {sorted(unexpected)}"
            )
        model.eval()
        for row in res["rows"]:
            if row["method"] != method:
                continue
            x = torch.tensor(ids[row["document"]][: row["length"]])[None]
            t0 = time.perf_counter()
            with torch.no_grad():
                ppl = math.exp(model(input_ids=x, labels=x).loss.item())
            rel = abs(row["ppl"] - ppl) / ppl
            worst = max(worst, rel)
            print(f"{method:12s} {row['length']:6d} {row['document']:18s} ours {row['ppl']:.6f}  "
                  f"transformers {ppl:.6f}  rel {rel:.1e}  ({time.perf_counter() - t0:.0f} s)",
                  flush=True)  # fmt: skip
    print(f"worst relative difference {worst:.2e} ({'within' if worst < 5e-3 else 'OVER'} 0.5%)")
    return 0 if worst < 5e-3 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "eval_out/results.json"))
