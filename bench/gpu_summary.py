#!/usr/bin/env python3
"""Summary of bench/gpu_check.sh: our CUDA decode throughput next to transformers on the same GPU and
the memory-bandwidth bound (nominal HBM, and the copy bandwidth gpu_reference.py measured).
Any input may be missing (a part that failed); what is there is printed."""

import argparse
import json
import math
import os


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"(no {os.path.basename(path)}: {e})")
        return None


def fmt(x, digits=0):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--laser", required=True)
    ap.add_argument("--hf", required=True)
    ap.add_argument("--parity")
    args = ap.parse_args()

    if args.parity and os.path.exists(args.parity):
        print("CUDA parity (max |diff| against transformers f32):")
        with open(args.parity) as f:
            for line in f:
                if "overall max" in line or "TOKENS DIFFER" in line or "test result" in line or "SKIPPED" in line:
                    print("  " + line.rstrip())
        print()

    ours, hf = load(args.laser), load(args.hf)
    copy_bw = (hf or {}).get("copy_bandwidth", {}).get("gbps_best")
    if hf:
        print(f"GPU: {hf.get('device')}; transformers {hf['versions']['transformers']}, torch {hf['versions']['torch']}"
              f" (CUDA {hf.get('cuda')}), attn {hf.get('attn_implementation')}")
    if copy_bw:
        print(f"device-to-device copy bandwidth: {copy_bw:.0f} GB/s (best; read + write)")
    if ours:
        print(f"ours: {ours['backend']}, {ours['total_params']} params, {ours['weight_bytes_per_step'] / 1e6:.1f} MB "
              f"weights/step, nominal HBM {ours.get('hbm_gbps')} GB/s, debug_assertions {ours.get('debug_assertions')}")
    hf_rows = {}
    for r in (hf or {}).get("rows", []):
        hf_rows[(r["dtype"], r["batch"])] = r
    batches = sorted({r["batch"] for r in (ours or {}).get("rows", [])} | {b for _, b in hf_rows})
    ours_rows = {r["batch"]: r for r in (ours or {}).get("rows", [])}
    print()
    shape = ours or hf or {}
    print(f"Decode tok/s (tokens from decode forwards / decode time), prompt {shape.get('prompt_tokens')}, "
          f"{shape.get('new_tokens')} new tokens, medians:")
    print("| batch | ours f32 tok/s | ours ms/step | HF f32 tok/s | HF f32 ms/step | HF bf16 tok/s | ours / HF f32 "
          "| bound tok/s (nominal) | bound tok/s (copy bw) | ours % of copy-bw bound |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in batches:
        o = ours_rows.get(b, {})
        f32 = hf_rows.get(("float32", b), {})
        bf16 = hf_rows.get(("bfloat16", b), {})
        od, hd = o.get("decode_tok_s"), f32.get("decode_tok_s")
        ratio = od / hd if od and hd and not math.isnan(hd) else None
        bound_copy = b * copy_bw * 1e9 / o["bytes_per_step"] if copy_bw and o.get("bytes_per_step") else None
        pct = 100 * od / bound_copy if od and bound_copy else None
        print(f"| {b} | {fmt(od)} | {fmt(o.get('ms_per_decode_step'), 2)} | {fmt(hd)} | "
              f"{fmt(f32.get('ms_per_decode_step'), 2)} | {fmt(bf16.get('decode_tok_s'))} | {fmt(ratio, 2)} | "
              f"{fmt(o.get('bound_tok_s'))} | {fmt(bound_copy)} | {fmt(pct, 1)} |")


if __name__ == "__main__":
    main()
