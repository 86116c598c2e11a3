#!/usr/bin/env python3
"""GPU reference for model/examples/decode_throughput.rs (offline tooling, never a runtime dependency).

transformers' LlamaForCausalLM/Qwen2ForCausalLM built from a config.json with random weights (nothing
downloaded), sampling at temperature 1 with EOS suppressed (min_new_tokens = max_new_tokens), the
same shapes as our decode bench: `batch` prompts of `prompt_tokens` random ids, `new_tokens` each.
Also measures the device's achievable memory bandwidth with a large device-to-device copy.

    python3 bench/gpu_reference.py --config bench/configs/smollm2-135m.json --out OUT.json
    ~/.cache/laser-pyref/bin/python bench/gpu_reference.py --device cpu --batch 1,2 --new-tokens 8 \
        --reps 1 --out /tmp/ref.json                       # a quick check without a GPU

Timing (torch.cuda.synchronize around every call): total = generate(new_tokens); prefill =
generate(max_new_tokens=1) (prefill forward + first token), median of `reps` each;
decode tok/s = batch * (new_tokens - 1) / (total - prefill), the tokens produced by decode
forwards over their time, as the Rust bench reports; total tok/s = batch * new_tokens / total.
"""

import argparse
import json
import os
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

transformers.logging.set_verbosity_error()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, fn):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def copy_bandwidth(device, gib=2.0, iters=10):
    """Achievable bandwidth of a device-to-device copy: (bytes read + bytes written) / time."""
    n = int(gib * 2**30) // 4
    src = torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    sync(device)
    times = []
    for _ in range(iters):
        s, _ = timed(device, lambda: dst.copy_(src))
        times.append(s)
    best, med = min(times), statistics.median(times)
    moved = 2 * n * 4
    del src, dst
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"bytes_moved_per_copy": moved, "gbps_best": moved / best / 1e9, "gbps_median": moved / med / 1e9}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs/smollm2-135m.json"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", default="1,8,64")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtypes", default="float32,bfloat16", help="comma list of float32, bfloat16, float32-tf32")
    ap.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, eager)")
    ap.add_argument("--bandwidth-gib", type=float, default=2.0, help="copy size for the bandwidth test; 0 skips it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="JSON output path")
    args = ap.parse_args()

    device = torch.device(args.device)
    batches = [int(b) for b in args.batch.split(",")]
    new, plen = args.new_tokens, args.prompt_tokens
    result = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "python": sys.version.split()[0]},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "config": args.config,
        "attn_implementation": args.attn,
        "prompt_tokens": plen,
        "new_tokens": new,
        "reps": args.reps,
        "timing": "decode tok/s = batch*(new-1) / (t(generate new) - t(generate 1)); medians of reps",
        "rows": [],
    }
    if device.type == "cuda":
        result["cuda"] = torch.version.cuda

    def dump():
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)

    if args.bandwidth_gib > 0:
        bw = copy_bandwidth(device, args.bandwidth_gib, iters=10 if device.type == "cuda" else 2)
        result["copy_bandwidth"] = bw
        print(f"device-to-device copy ({args.bandwidth_gib} GiB): {bw['gbps_best']:.0f} GB/s best, "
              f"{bw['gbps_median']:.0f} GB/s median (read + write)", flush=True)
        dump()

    config = AutoConfig.from_pretrained(args.config) if os.path.isdir(args.config) else None
    if config is None:
        with open(args.config) as f:
            raw = json.load(f)
        config = AutoConfig.for_model(raw["model_type"], **{k: v for k, v in raw.items() if k != "model_type"})
    config._attn_implementation = args.attn
    eos = config.eos_token_id if isinstance(config.eos_token_id, int) else (config.eos_token_id or [0])[0]

    for dname in args.dtypes.split(","):
        dtype = {"float32": torch.float32, "float32-tf32": torch.float32, "bfloat16": torch.bfloat16}[dname]
        torch.backends.cuda.matmul.allow_tf32 = dname == "float32-tf32"
        torch.backends.cudnn.allow_tf32 = dname == "float32-tf32"
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, attn_implementation=args.attn)
        model = model.to(device=device, dtype=dtype).eval()
        n_params = sum(p.numel() for p in model.parameters())
        print(f"\n{dname}: {type(model).__name__}, {n_params} params, built in {time.perf_counter() - t0:.1f} s", flush=True)
        for batch in batches:
            g = torch.Generator().manual_seed(args.seed + batch)
            ids = torch.randint(3, config.vocab_size, (batch, plen), generator=g).to(device)
            mask = torch.ones_like(ids)

            def gen(n):
                with torch.inference_mode():
                    return model.generate(
                        input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                        do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                        pad_token_id=0, eos_token_id=eos,
                    )

            warm_s, out = timed(device, lambda: gen(new))
            assert out.shape == (batch, plen + new), out.shape
            timed(device, lambda: gen(1))
            totals, prefills = [], []
            for _ in range(args.reps):  # alternated, so drift hits both alike
                totals.append(timed(device, lambda: gen(new))[0])
                prefills.append(timed(device, lambda: gen(1))[0])
            total, prefill = statistics.median(totals), statistics.median(prefills)
            decode_s = total - prefill if total > prefill else float("nan")
            row = {
                "dtype": dname, "batch": batch,
                "decode_tok_s": batch * (new - 1) / decode_s,
                "total_tok_s": batch * new / total,
                "ms_per_decode_step": 1e3 * decode_s / (new - 1),
                "prefill_ms": 1e3 * prefill,
                "total_s_runs": totals, "prefill_s_runs": prefills, "warmup_s": warm_s,
                "params": n_params,
            }
            result["rows"].append(row)
            dump()
            print(f"  batch {batch}: decode {row['decode_tok_s']:.0f} tok/s, {row['ms_per_decode_step']:.2f} ms/step, "
                  f"total {row['total_tok_s']:.0f} tok/s, prefill {row['prefill_ms']:.1f} ms (warm-up {warm_s:.1f} s)", flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    print(f"\ntransformers {transformers.__version__}, torch {torch.__version__}, {result['device']}, attn {args.attn}")
    print("| dtype | batch | decode tok/s | total tok/s | ms/decode step | prefill ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        print(f"| {r['dtype']} | {r['batch']} | {r['decode_tok_s']:.0f} | {r['total_tok_s']:.0f} | "
              f"{r['ms_per_decode_step']:.2f} | {r['prefill_ms']:.1f} |")
    dump()


if __name__ == "__main__":
    main()
