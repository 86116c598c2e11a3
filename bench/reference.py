#!/usr/bin/env python3
"""The reference side of bench/run.sh (offline tooling, never a runtime dependency).

A long-lived worker with the same line protocol as `laser-bench serve`: one JSON command per line on
stdin, one JSON reply per line on stdout ({"ok": true, "result": ...}). bench/run.py alternates the
two workers' repetitions on the same CPU. Models load once, on first use.

    (a) generate : transformers `generate`, sampling, fixed length (min_new_tokens = max_new_tokens)
    (b) rl_step  : one TRL GRPOTrainer optimizer step (generation + reward + loss + AdamW)
    (d) fwdbwd   : scripts/bench_learner_torch.py's forward+backward (verl policy loss + MSE on z_c)

    ~/.cache/laser-pyref/bin/python bench/reference.py serve --tiny DIR --smollm2 FILE.gguf
"""

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import time
import warnings

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "scripts"))

warnings.filterwarnings("ignore")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig  # noqa: E402

transformers.logging.set_verbosity_error()
logging.disable(logging.WARNING)


def synthetic_ids(batch, length, vocab, salt):
    """bench/src/main.rs::synthetic_ids, id for id."""
    return [[((b + salt) * 7919 + t * 104729 + 3) % (vocab - 4) + 4 for t in range(length)] for b in range(batch)]


class Worker:
    def __init__(self, paths):
        self.paths = paths
        self.models = {}

    def load(self, name):
        if name in self.models:
            return self.models[name]
        path = self.paths.get(name)
        if path is None:
            raise ValueError(f"unknown model {name!r} (start with --{name} PATH)")
        t = time.perf_counter()
        if path.endswith(".gguf"):
            d, f = os.path.split(path)
            tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
            model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
        else:
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model.eval()
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        print(f"reference: loaded {name} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        self.models[name] = {"model": model, "tok": tok, "rl_model": None}
        return self.models[name]

    def handle(self, cmd):
        op = cmd["op"]
        if op == "hello":
            import trl

            return {
                "impl": f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}",
                "threads": torch.get_num_threads(),
            }
        if op == "load":
            m = self.load(cmd["model"])["model"]
            return {"vocab": m.config.vocab_size, "layers": m.config.num_hidden_layers}
        if op == "generate":
            return self.generate(cmd)
        if op == "rl_step":
            return self.rl_step(cmd)
        if op == "fwdbwd":
            return self.fwdbwd(cmd)
        raise ValueError(f"unknown op {op!r}")

    def generate(self, cmd):
        m = self.load(cmd["model"])
        model, tok = m["model"], m["tok"]
        batch, plen, new = cmd["batch"], cmd["prompt_len"], cmd["new_tokens"]
        ids = torch.tensor(synthetic_ids(batch, plen, model.config.vocab_size, 0))
        eos = tok.eos_token_id if tok.eos_token_id is not None else 0
        cfg = GenerationConfig(
            max_new_tokens=new,
            min_new_tokens=new,  # EOS suppressed: every row generates exactly `new` tokens, as ours
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            eos_token_id=eos,
            pad_token_id=tok.pad_token_id,
        )
        torch.manual_seed(cmd["seed"])
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=cfg)
        seconds = time.perf_counter() - t
        return {"seconds": seconds, "tokens": int((out.shape[1] - plen) * batch)}

    def rl_step(self, cmd):
        """One GRPOTrainer optimizer step: 8 prompts x num_generations completions of exactly
        new_tokens tokens, math-verify rewards, loss on micro-batches of `micro_batch` completions with
        gradient accumulation over the whole generation batch, clipping and AdamW."""
        from datasets import Dataset
        from math_verify import parse, verify
        from trl import GRPOConfig, GRPOTrainer
        from transformers import TrainerCallback

        m = self.load(cmd["model"])
        tok = m["tok"]
        if m["rl_model"] is None:
            # Its own copy: it trains (as ours does), the generation model stays as loaded.
            path = self.paths[cmd["model"]]
            if path.endswith(".gguf"):
                d, f = os.path.split(path)
                rl = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
                # transformers dequantizes GGUF to plain float32 tensors but still flags the model as
                # quantized, which Trainer refuses to fine-tune; the weights are ordinary parameters.
                assert all(p.dtype == torch.float32 for p in rl.parameters())
                rl.is_quantized = False
                rl.hf_quantizer = None
                m["rl_model"] = rl
            else:
                m["rl_model"] = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model = m["rl_model"]
        tasks = cmd["tasks"]
        n, new, micro = cmd["n"], cmd["new_tokens"], cmd["micro_batch"]
        prompts = len(tasks)
        timing = {"generate_s": 0.0, "reward_s": 0.0}

        def reward(completions, solution, **_):
            t = time.perf_counter()
            out = []
            for c, sol in zip(completions, solution):
                try:
                    out.append(float(verify(parse("$" + sol + "$"), parse(c))))
                except Exception:
                    out.append(0.0)
            timing["reward_s"] += time.perf_counter() - t
            return out

        reward.__name__ = "math_verify_accuracy"

        class StepTimer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                timing["begin"] = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                timing["end"] = time.perf_counter()

        generate = model.generate

        def timed_generate(*a, **kw):
            t = time.perf_counter()
            out = generate(*a, **kw)
            timing["generate_s"] += time.perf_counter() - t
            timing["completion_tokens"] = int((out.shape[1] - kw["input_ids"].shape[1]) * out.shape[0])
            return out

        model.generate = timed_generate
        with tempfile.TemporaryDirectory() as out_dir:
            args = GRPOConfig(
                output_dir=out_dir,
                per_device_train_batch_size=micro,
                gradient_accumulation_steps=prompts * n // micro,  # one optimizer step per generation batch
                num_generations=n,
                max_completion_length=new,
                generation_kwargs={"min_new_tokens": new},  # fixed length, as ours
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                beta=0.0,
                learning_rate=1e-6,
                max_steps=1,
                use_cpu=True,
                bf16=False,
                fp16=False,
                report_to="none",
                save_strategy="no",
                logging_strategy="no",
                disable_tqdm=True,
                shuffle_dataset=False,
                seed=cmd["seed"],
                dataloader_num_workers=0,
            )
            ds = Dataset.from_list([{"prompt": t["prompt"], "solution": t["gold"]} for t in tasks])
            trainer = GRPOTrainer(
                model=model,
                reward_funcs=[reward],
                args=args,
                train_dataset=ds,
                processing_class=tok,
                callbacks=[StepTimer()],
            )
            with contextlib.redirect_stdout(io.StringIO()):
                trainer.train()
        model.generate = generate
        seconds = timing["end"] - timing["begin"]
        return {
            "seconds": seconds,
            "generate_s": timing["generate_s"],
            "reward_s": timing["reward_s"],
            "train_s": seconds - timing["generate_s"] - timing["reward_s"],
            "prompt_tokens": [len(tok(t["prompt"])["input_ids"]) for t in tasks],
            "response_tokens": timing.get("completion_tokens", 0),
        }

    def fwdbwd(self, cmd):
        import bench_learner_torch as blt

        if (cmd["seqs"], cmd["group"], cmd["prompt"], cmd["response"], cmd["micro_batch"]) != (
            blt.SEQS,
            4,
            blt.PROMPT,
            blt.RESPONSE,
            blt.MICRO,
        ):
            raise ValueError("fwdbwd: scripts/bench_learner_torch.py has a fixed shape; the command differs")
        m = self.load(cmd["model"])
        model = m["model"]
        vocab = model.config.vocab_size
        eos = model.config.eos_token_id if isinstance(model.config.eos_token_id, int) else 2
        ids, rewards = blt.make_batch(vocab, eos)
        t = time.perf_counter()
        blt.grads(model, ids, rewards, vocab)
        seconds = time.perf_counter() - t
        model.zero_grad(set_to_none=True)
        return {"seconds": seconds, "tokens": blt.SEQS * (blt.PROMPT + blt.RESPONSE)}


def main():
    args = sys.argv[1:]
    if not args or args[0] != "serve":
        sys.exit("usage: reference.py serve --tiny DIR --smollm2 FILE.gguf")
    paths = {}
    rest = args[1:]
    for k in range(0, len(rest), 2):
        paths[rest[k].lstrip("-")] = rest[k + 1]
    # Same thread count as ours (all cores) unless LASER_BENCH_TORCH_THREADS says otherwise.
    torch.set_num_threads(int(os.environ.get("LASER_BENCH_TORCH_THREADS", os.cpu_count())))
    worker = Worker(paths)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = {"ok": True, "result": worker.handle(json.loads(line))}
        except Exception as e:  # reported to the driver, which stops the run
            import traceback

            traceback.print_exc()
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
