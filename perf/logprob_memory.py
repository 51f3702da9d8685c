"""Peak memory of one GRPO loss + backward on SmolLM2-135M: the chunked selective log-softmax
(``evalgym.logprobs``) against the full ``log_softmax(logits.float())`` every loss used before.

    python perf/logprob_memory.py [--rows 16] [--length 512] [--out perf/results/logprob_memory]

Each variant runs in a fresh process (so one variant's freed memory cannot hide another's peak) on the same
16 × 512 tokens (256 prompt + 256 completion tokens a row, the completion scored): the peak resident memory
over the loss and backward, minus the resident memory before it (model and inputs loaded). The ``backbone``
variant (decoder forward + backward, a loss on the hidden states, no output layer) is what every variant
shares; ``log-prob part`` = a variant's peak − the backbone's. Goal (issue): chunked ≤ 0.3 × full.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from perf.memwatch import rss_mb  # noqa: E402


def measure(variant: str, rows: int, length: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from evalgym.logprobs import CausalLMScorer
    from evalgym.models import resolve_model
    from evalgym.trainers.losses import policy_loss

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m"), dtype=torch.float32).train()
    ids = torch.randint(0, model.config.vocab_size, (rows, length))
    attn = torch.ones_like(ids)
    mask = torch.zeros(rows, length - 1)
    mask[:, length // 2 - 1:] = 1.0
    adv = torch.randn(rows)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import gc
    gc.collect()
    rss0 = rss_mb() * 1024   # kB, as ru_maxrss
    t0 = time.perf_counter()
    if variant == "backbone":
        hidden = model.get_decoder()(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
        (hidden.float().pow(2).mean()).backward()
    else:
        if variant == "full":
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
            new = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0] * mask
        else:
            new = CausalLMScorer(model)(ids, attn, mask, share_prompts=False)
        loss, _ = policy_loss(new, new.detach(), adv, mask)
        loss.backward()
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"variant": variant, "peak_delta_mb": (max(peak, before) - rss0) / 1024, "seconds": elapsed,
            "rows": rows, "length": length, "vocab": model.config.vocab_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)   # one variant, in a child process
    ap.add_argument("--out", default=str(REPO / "perf" / "results" / "logprob_memory"))
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.rows, args.length)))
        return
    results = {}
    for variant in ("backbone", "full", "chunked"):
        done = subprocess.run([sys.executable, __file__, "--variant", variant, "--rows", str(args.rows),
                               "--length", str(args.length)], capture_output=True, text=True, check=True, cwd=REPO)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        print(variant, results[variant], flush=True)
    base = results["backbone"]["peak_delta_mb"]
    full_part = results["full"]["peak_delta_mb"] - base
    chunk_part = results["chunked"]["peak_delta_mb"] - base
    summary = {**results, "full_logprob_part_mb": full_part, "chunked_logprob_part_mb": chunk_part,
               "ratio": chunk_part / full_part if full_part > 0 else None}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    md = ["# Log-prob memory: chunked vs full log-softmax (SmolLM2-135M, one GRPO loss + backward)", "",
          f"{args.rows} rows x {args.length} tokens (half prompt, half scored completion), vocabulary "
          f"{results['full']['vocab']}, float32, CPU; peak resident memory over loss + backward above what was "
          "resident before (model and inputs), each variant in a fresh process.", "",
          "| variant | peak above start (MB) | log-prob part (MB) | seconds |", "|---|---|---|---|",
          f"| backbone only (decoder fwd+bwd) | {base:.0f} | - | {results['backbone']['seconds']:.1f} |",
          f"| full log_softmax (before) | {results['full']['peak_delta_mb']:.0f} | {full_part:.0f} | "
          f"{results['full']['seconds']:.1f} |",
          f"| chunked selective (evalgym.logprobs) | {results['chunked']['peak_delta_mb']:.0f} | {chunk_part:.0f} | "
          f"{results['chunked']['seconds']:.1f} |", "",
          f"Log-prob part, chunked / full: **{summary['ratio']:.2f}** (goal <= 0.3).", ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
