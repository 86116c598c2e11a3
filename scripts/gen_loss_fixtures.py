#!/usr/bin/env python3
"""Reference fixtures for the learner's loss parity test (learner/tests/loss_parity.rs).

Offline tooling only (never a runtime dependency). The GRPO/PPO parts call verl's OWN functions from
PyPI `verl==0.5.0` (the version the LaSeR authors built on), from verl/trainer/ppo/core_algos.py:
compute_grpo_outcome_advantage, compute_policy_loss (vanilla), agg_loss and kl_penalty. The LaSeR parts
(self-reward advantages and mixing, class-reweighted MSE) are written here in torch from
../shared/LASER.md, independently of the Rust code.

How verl is imported: `pip install --no-deps verl==0.5.0` into the reference venv. Importing
`verl.trainer.ppo.core_algos` normally runs verl/__init__.py, which pulls in ray, pandas and tensordict
(DataProto) that core_algos never uses. So we register bare package objects for `verl`, `verl.utils`,
`verl.trainer` and `verl.trainer.ppo` whose __path__ points at the installed verl directories: the real
core_algos.py, utils/torch_functional.py, utils/device.py and trainer/config/*.py are then imported from
the installed files unchanged, without running the heavy package __init__ files. The one remaining
unused import, `tensordict.TensorDict` (a type annotation in torch_functional.py), gets a stub if the
package is absent. Nothing in the functions we call is replaced.

Usage:
    python3 -m venv ~/.cache/laser-pyref && ~/.cache/laser-pyref/bin/pip install torch numpy
    ~/.cache/laser-pyref/bin/pip install --no-deps verl==0.5.0   (or scripts/setup_reference_env.sh)
    ~/.cache/laser-pyref/bin/python scripts/gen_loss_fixtures.py [--out learner/tests/fixtures]

Two kinds of fixture: four batches where the log-probs are leaf tensors (every loss mode, KL, entropy,
phases; gradients w.r.t. the log-probs), and one end-to-end batch through the tiny Qwen2 fixture model
(transformers, float64): the same `reference_loss` on log-probs from a real forward pass, recording the
gradient of one weight matrix (`GRAD_WEIGHT`). The Rust side runs its scoring pass over
[prompt, response] with z_c read after the last response token and must match both.
"""

import argparse
import importlib.util
import json
import os
import sys
import types

import numpy as np
import torch

VERL_VERSION = "0.5.0"


def import_verl_core_algos():
    spec = importlib.util.find_spec("verl")
    if spec is None or spec.origin is None:
        sys.exit(f"verl is not installed: pip install --no-deps verl=={VERL_VERSION}")
    root = os.path.dirname(spec.origin)
    with open(os.path.join(root, "version", "version")) as f:
        version = f.read().strip()
    if version != VERL_VERSION:
        sys.exit(f"expected verl {VERL_VERSION}, found {version}")
    for name, sub in [("verl", ""), ("verl.utils", "utils"), ("verl.trainer", "trainer"), ("verl.trainer.ppo", "trainer/ppo")]:
        module = types.ModuleType(name)
        module.__path__ = [os.path.join(root, sub)]
        sys.modules[name] = module
    if importlib.util.find_spec("tensordict") is None:
        stub = types.ModuleType("tensordict")
        stub.TensorDict = type("TensorDict", (), {})
        sys.modules["tensordict"] = stub
    import verl.trainer.ppo.core_algos as core_algos

    return core_algos, version


core_algos, verl_version = import_verl_core_algos()

DTYPE = torch.float64


def f32(x):
    """Round to float32 and back, so the Rust side (f32) and the reference see identical inputs."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


# ---------------------------------------------------------------- LaSeR parts, written from LASER.md


def self_reward_advantages(rollout_self_rewards, truncated, verifier_adv_seq, group_ids, cfg):
    """A_s: group z-score of clamp(r_s, 0, 1) (truncated samples score 0); A_v where the std <= T."""
    scores = torch.where(truncated, torch.zeros_like(rollout_self_rewards), rollout_self_rewards.clamp(0.0, 1.0))
    a_s = torch.empty_like(scores)
    for gid in sorted(set(group_ids.tolist())):
        idx = torch.tensor([i for i, g in enumerate(group_ids.tolist()) if g == gid])
        group = scores[idx]
        std = torch.std(group)  # unbiased, as verl's A_v
        if std <= cfg["group_std_threshold"]:
            a_s[idx] = verifier_adv_seq[idx]
        else:
            a_s[idx] = (group - group.mean()) / (std + cfg["advantage_eps"])
    return a_s


def laser_mse(self_reward_logprob, verifier_rewards, truncated, cfg, c_ref):
    """L_mse = 1/(N_c+N_i) * sum_i w_i (r_s,i - r_v,i)^2 over non-truncated samples."""
    r_s = cfg["beta_v"] * (self_reward_logprob - c_ref)
    valid = ~truncated
    correct = valid & (verifier_rewards >= 0.5)
    incorrect = valid & (verifier_rewards < 0.5)
    n_c, n_i = int(correct.sum()), int(incorrect.sum())
    n = n_c + n_i
    if n == 0:
        return (r_s * 0.0).sum()
    w_c = n / (2 * n_c) if n_c > 0 else 0.0
    w_i = n / (2 * n_i) if n_i > 0 else 0.0
    w = torch.where(correct, torch.full_like(r_s, w_c), torch.where(incorrect, torch.full_like(r_s, w_i), torch.zeros_like(r_s)))
    sq = torch.where(valid, (r_s - verifier_rewards) ** 2, torch.zeros_like(r_s))
    return (w * sq).sum() / n


# ---------------------------------------------------------------- the full reference loss


def reference_loss(logprobs, self_reward_logprob, entropy, batch, cfg, phase, c_ref):
    """Total loss and its parts. `logprobs` [B, L], `self_reward_logprob` [B] and `entropy` [B, L] (or
    None) may be any autograd tensors; everything else comes from `batch` (torch tensors)."""
    mask = batch["response_mask"]
    truncated = batch["truncated"]
    group_ids = batch["group_ids"]
    # verl reads the outcome reward at the last response token.
    lengths = mask.sum(-1).long()
    token_level_rewards = torch.zeros_like(mask)
    token_level_rewards[torch.arange(mask.shape[0]), lengths - 1] = batch["verifier_rewards"]
    a_v_tok, _ = core_algos.compute_grpo_outcome_advantage(
        token_level_rewards=token_level_rewards,
        response_mask=mask,
        index=group_ids,
        epsilon=cfg["advantage_eps"],
        norm_adv_by_std_in_grpo=True,
    )
    a_v = a_v_tok[:, 0]  # every response has >= 1 token
    out = {"verifier_advantages": a_v}
    if phase["advantage_mixing"]:
        a_s = self_reward_advantages(batch["rollout_self_rewards"], truncated, a_v, group_ids, cfg)
        adv = (1 - cfg["tau"]) * a_v + cfg["tau"] * a_s
        out["self_reward_advantages"] = a_s
    else:
        adv = a_v
        out["self_reward_advantages"] = None
    out["advantages"] = adv
    adv_tok = adv.unsqueeze(-1) * mask

    mode = cfg["loss_agg_mode"]
    pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower = core_algos.compute_policy_loss(
        old_log_prob=batch["old_logprobs"],
        log_prob=logprobs,
        advantages=adv_tok,
        response_mask=mask,
        cliprange=None,
        cliprange_low=cfg["clip_ratio_low"],
        cliprange_high=cfg["clip_ratio_high"],
        clip_ratio_c=cfg["clip_ratio_c"],
        loss_agg_mode=mode,
    )
    out.update(policy_loss=pg_loss, clip_fraction=pg_clipfrac, clip_fraction_lower=pg_clipfrac_lower, ppo_kl=ppo_kl)
    # As verl 0.5's dp_actor.update_policy combines them.
    policy_total = pg_loss
    out["entropy_loss"] = None
    if cfg["entropy_coef"] != 0:
        entropy_loss = core_algos.agg_loss(loss_mat=entropy, loss_mask=mask, loss_agg_mode=mode)
        policy_total = policy_total - entropy_loss * cfg["entropy_coef"]
        out["entropy_loss"] = entropy_loss
    out["kl_loss"] = None
    if cfg["kl_penalty"] is not None:
        kld = core_algos.kl_penalty(logprob=logprobs, ref_logprob=batch["ref_logprobs"], kl_penalty=cfg["kl_penalty"]["estimator"])
        kl_loss = core_algos.agg_loss(loss_mat=kld, loss_mask=mask, loss_agg_mode=mode)
        policy_total = policy_total + kl_loss * cfg["kl_penalty"]["coef"]
        out["kl_loss"] = kl_loss
    mse = laser_mse(self_reward_logprob, batch["verifier_rewards"], truncated, cfg, c_ref)
    out["self_reward_mse"] = mse
    out["total"] = policy_total + cfg["alpha"] * mse if phase["self_reward_mse"] else policy_total
    return out


# ---------------------------------------------------------------- fixture batches

DEFAULT_CFG = {
    "beta_v": 0.1,
    "alpha": 0.1,
    "tau": 0.1,
    "group_std_threshold": 0.1,
    "advantage_eps": 1e-6,
    "clip_ratio_low": 0.2,
    "clip_ratio_high": 0.2,
    "clip_ratio_c": 3.0,
    "loss_agg_mode": "token-mean",
    "kl_penalty": None,
    "entropy_coef": 0.0,
}


def safe_log_ratio(rng, cfg, scale):
    """A log-ratio whose ratio is not within 1e-3 of a clip boundary, so f32 and f64 agree on which
    branch of every max/min/where is taken."""
    bounds = [1 - cfg["clip_ratio_low"], 1 + cfg["clip_ratio_high"], cfg["clip_ratio_c"]]
    while True:
        x = rng.normal(0.0, scale)
        if all(abs(np.exp(x) - b) > 1e-3 for b in bounds):
            return x


def make_batch(rng, spec):
    """spec: groups of (r_v, rollout r_s or None when truncated, response length)."""
    cfg = {**DEFAULT_CFG, **spec.get("config", {})}
    samples = [(gid, *s) for gid, group in enumerate(spec["groups"]) for s in group]
    b = len(samples)
    max_len = max(s[3] for s in samples)
    mask = np.zeros((b, max_len))
    old = np.full((b, max_len), 0.0)
    new = np.full((b, max_len), 0.0)
    ref = np.full((b, max_len), 0.0)
    ent = np.full((b, max_len), 0.0)
    for i, (_, _, _, length) in enumerate(samples):
        mask[i, :length] = 1
        old[i, :length] = -np.abs(rng.normal(1.0, 0.8, length)) - 0.01
        new[i, :length] = old[i, :length] + [safe_log_ratio(rng, cfg, spec.get("ratio_scale", 0.3)) for _ in range(length)]
        ref[i, :length] = old[i, :length] + rng.normal(0.0, 0.2, length)
        ent[i, :length] = np.abs(rng.normal(1.5, 0.5, length))
        # Padding holds junk: the loss must ignore it.
        new[i, length:] = -7.5
        old[i, length:] = -0.25
        ref[i, length:] = 3.0
        ent[i, length:] = 9.0
    truncated = [s[2] is None for s in samples]
    rollout_r_s = [0.0 if s[2] is None else s[2] for s in samples]
    # z_c log-probs around c_ref, so r_s = beta_v * (lp - c_ref) spans roughly [-1, 2].
    srl = spec["c_ref"] + rng.normal(5.0, 6.0, b)
    return cfg, {
        "group_ids": [s[0] for s in samples],
        "response_lengths": [s[3] for s in samples],
        "response_mask": mask.astype(int).tolist(),
        "logprobs": f32(new).tolist(),
        "old_logprobs": f32(old).tolist(),
        "ref_logprobs": f32(ref).tolist() if cfg["kl_penalty"] is not None else None,
        "entropy": f32(ent).tolist() if cfg["entropy_coef"] != 0 else None,
        "verifier_rewards": [float(s[1]) for s in samples],
        "rollout_self_rewards": [None if s[2] is None else float(f32(s[2])) for s in samples],
        "self_reward_logprobs": f32(srl).tolist(),
        "truncated": truncated,
        "_rollout_r_s_dense": f32(rollout_r_s).tolist(),
    }


SPECS = [
    {
        "name": "loss_token_mean_mixed",
        "description": "Default config (token-mean), full LaSeR phase. Group 0: mixed rewards with spread "
        "self-rewards (real A_s), one truncated response. Group 1: all rewards equal (A_v = 0, so A = tau "
        "A_s), one truncated response. Group 2: self-rewards with std <= T (A_s falls back to A_v). Large log-ratios hit "
        "the upper clip, the lower clip and the dual clip.",
        "seed": 1,
        "c_ref": -23.0,
        "phase": {"self_reward_mse": True, "advantage_mixing": True},
        "ratio_scale": 0.6,
        "groups": [
            [(1, 0.92, 5), (0, 0.15, 7), (1, 0.64, 3), (0, -0.2, 6), (0, None, 9)],
            [(1, 0.8, 4), (1, None, 8), (1, 0.95, 2), (1, 1.3, 5)],
            [(0, 0.40, 6), (1, 0.45, 4), (0, 0.43, 8), (1, 0.42, 3)],
        ],
    },
    {
        "name": "loss_one_class_seq_mean_token_sum_k1",
        "description": "Only the incorrect class among non-truncated samples (the only correct answer is "
        "truncated), so the correct-class weight is 0. seq-mean-token-sum aggregation, k1 KL penalty "
        "(coef 0.05), MSE on but mixing off (between the two warm-ups).",
        "seed": 2,
        "c_ref": -25.0,
        "phase": {"self_reward_mse": True, "advantage_mixing": False},
        "config": {"loss_agg_mode": "seq-mean-token-sum", "kl_penalty": {"estimator": "kl", "coef": 0.05}},
        "groups": [
            [(0, 0.3, 5), (0, 0.1, 6), (0, None, 7), (0, 0.6, 2)],
            [(1, None, 7), (0, 0.2, 4), (0, 0.7, 3), (0, 0.0, 5)],
        ],
    },
    {
        "name": "loss_seq_mean_token_mean_k3_entropy",
        "description": "Only the correct class among non-truncated samples; seq-mean-token-mean aggregation, "
        "clip-higher (eps_high 0.28), k3 (low_var_kl) KL coef 0.1, entropy bonus 0.01, full LaSeR phase.",
        "seed": 3,
        "c_ref": -23.0,
        "phase": {"self_reward_mse": True, "advantage_mixing": True},
        "ratio_scale": 0.4,
        "config": {
            "loss_agg_mode": "seq-mean-token-mean",
            "clip_ratio_high": 0.28,
            "kl_penalty": {"estimator": "low_var_kl", "coef": 0.1},
            "entropy_coef": 0.01,
        },
        "groups": [
            [(1, 0.9, 4), (0, None, 6), (1, 0.3, 5)],
            [(1, 0.7, 3), (1, 0.75, 5), (0, None, 6)],
            [(1, 0.2, 2), (1, 0.99, 4), (1, 0.5, 6)],
        ],
    },
    {
        "name": "loss_grpo_phase",
        "description": "Plain GRPO phase (before the reasoning warm-up ends): the MSE is reported but not "
        "part of the total, advantages are A_v. Default config.",
        "seed": 4,
        "c_ref": -23.0,
        "phase": {"self_reward_mse": False, "advantage_mixing": False},
        "groups": [
            [(1, 0.8, 3), (0, 0.1, 5), (0, None, 6), (1, 0.9, 4), (0, 0.3, 2)],
            [(0, 0.5, 4), (1, 0.6, 3), (1, 0.2, 5), (0, 0.4, 6), (1, None, 6)],
        ],
    },
]


def tolist(t):
    return None if t is None else t.detach().tolist()


def build_fixture(spec):
    rng = np.random.default_rng(spec["seed"])
    cfg, inputs = make_batch(rng, spec)
    dense_rs = inputs.pop("_rollout_r_s_dense")
    t = lambda x: torch.tensor(x, dtype=DTYPE)
    batch = {
        "response_mask": t(inputs["response_mask"]),
        "old_logprobs": t(inputs["old_logprobs"]),
        "ref_logprobs": None if inputs["ref_logprobs"] is None else t(inputs["ref_logprobs"]),
        "verifier_rewards": t(inputs["verifier_rewards"]),
        "rollout_self_rewards": t(dense_rs),
        "truncated": torch.tensor(inputs["truncated"]),
        "group_ids": np.array(inputs["group_ids"]),
    }
    logprobs = t(inputs["logprobs"]).requires_grad_(True)
    srl = t(inputs["self_reward_logprobs"]).requires_grad_(True)
    entropy = None if inputs["entropy"] is None else t(inputs["entropy"]).requires_grad_(True)
    out = reference_loss(logprobs, srl, entropy, batch, cfg, spec["phase"], spec["c_ref"])
    out["total"].backward()
    expected = {
        k: (v.item() if v is not None and v.dim() == 0 else tolist(v)) for k, v in out.items()
    }
    # A leaf the total does not depend on (z_c log-probs before the MSE starts) has no .grad: its gradient is 0.
    grad = lambda leaf: (leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)).tolist()
    expected["grad_logprobs"] = grad(logprobs)
    expected["grad_self_reward_logprobs"] = grad(srl)
    expected["grad_entropy"] = None if entropy is None else grad(entropy)
    return {
        "name": spec["name"],
        "description": spec["description"],
        "generator": {
            "script": "scripts/gen_loss_fixtures.py",
            "verl_version": verl_version,
            "torch_version": torch.__version__,
            "reference_dtype": "float64 (inputs rounded to float32)",
        },
        "config": cfg,
        "phase": spec["phase"],
        "c_ref": spec["c_ref"],
        "inputs": inputs,
        "expected": expected,
    }


# ---------------------------------------------------------------- end to end through the tiny model

TINY_MODEL = os.path.join(os.path.dirname(__file__), "..", "model", "tests", "fixtures", "tiny-qwen2")
# The weight matrix whose gradient the fixture records: the first layer's query projection, so the
# gradient has flowed back through the whole network (LM head, both layers, attention, RoPE).
GRAD_WEIGHT = "model.layers.0.self_attn.q_proj.weight"

MODEL_SPEC = {
    "name": "loss_tiny_qwen2_end_to_end",
    "description": "End to end through model/tests/fixtures/tiny-qwen2 (float64 transformers forward over "
    "[prompt, response] per sequence; log-probs of the response tokens and of z_c at the position whose input "
    "is the last response token). Default config (token-mean), full LaSeR phase. Group 0: mixed rewards, one "
    "truncated response (no EOS). Group 1: all rewards equal. Group 2: mixed, self-rewards spread. Old log-probs "
    "are the model's own log-probs shifted by random log-ratios, so some tokens are clipped. Records the loss "
    "parts and the gradient of " + GRAD_WEIGHT + ".",
    "seed": 11,
    "c_ref": -6.5,
    "self_reward_token": 500,
    "eos_token_id": 2,
    "phase": {"self_reward_mse": True, "advantage_mixing": True},
    "ratio_scale": 0.3,
    # (r_v, rollout r_s or None when truncated, prompt length, response length)
    "groups": [
        [(1, 0.9, 4, 5), (0, 0.2, 6, 3), (0, None, 3, 7), (1, 0.6, 5, 4)],
        [(1, 0.8, 7, 2), (1, 0.3, 4, 6), (1, 0.95, 5, 4)],
        [(0, 0.1, 3, 3), (1, 0.7, 6, 5), (0, 0.45, 4, 8)],
    ],
}


def build_model_fixture(spec):
    from transformers import AutoModelForCausalLM
    import transformers

    rng = np.random.default_rng(spec["seed"])
    cfg = dict(DEFAULT_CFG)
    model = AutoModelForCausalLM.from_pretrained(TINY_MODEL).double()
    model.eval()
    vocab = model.config.vocab_size
    z_c, eos = spec["self_reward_token"], spec["eos_token_id"]
    samples = [(gid, *s) for gid, group in enumerate(spec["groups"]) for s in group]
    normal_ids = [t for t in range(3, vocab) if t != z_c]
    prompts, responses = [], []
    for _, _, r_s, plen, rlen in samples:
        prompts.append([int(x) for x in rng.choice(normal_ids, plen)])
        body = [int(x) for x in rng.choice(normal_ids, rlen if r_s is None else rlen - 1)]
        responses.append(body if r_s is None else body + [eos])

    def forward():
        lps, srl = [], []
        for p, r in zip(prompts, responses):
            ids = torch.tensor([p + r])
            logp = torch.log_softmax(model(input_ids=ids).logits[0], dim=-1)
            rows = logp[len(p) - 1 : len(p) + len(r)]  # rows[t] predicts r[t]; rows[len(r)] predicts z_c
            lps.append(rows[torch.arange(len(r)), torch.tensor(r)])
            srl.append(rows[len(r), z_c])
        width = max(len(r) for r in responses)
        logprobs = torch.stack([torch.cat([lp, torch.zeros(width - len(lp), dtype=DTYPE)]) for lp in lps])
        return logprobs, torch.stack(srl)

    with torch.no_grad():
        current, _ = forward()
    b, width = current.shape
    mask = np.zeros((b, width))
    old = np.zeros((b, width))
    for i, r in enumerate(responses):
        mask[i, : len(r)] = 1
        old[i, : len(r)] = current[i, : len(r)].numpy() - [safe_log_ratio(rng, cfg, spec["ratio_scale"]) for _ in r]
    old = f32(old)
    truncated = [s[2] is None for s in samples]
    batch = {
        "response_mask": torch.tensor(mask, dtype=DTYPE),
        "old_logprobs": torch.tensor(old, dtype=DTYPE),
        "ref_logprobs": None,
        "verifier_rewards": torch.tensor([float(s[1]) for s in samples], dtype=DTYPE),
        "rollout_self_rewards": torch.tensor(f32([0.0 if s[2] is None else s[2] for s in samples]), dtype=DTYPE),
        "truncated": torch.tensor(truncated),
        "group_ids": np.array([s[0] for s in samples]),
    }
    model.zero_grad()
    logprobs, srl = forward()
    out = reference_loss(logprobs, srl, None, batch, cfg, spec["phase"], spec["c_ref"])
    out["total"].backward()
    weight = dict(model.named_parameters())[GRAD_WEIGHT]
    expected = {k: (v.item() if v is not None and v.dim() == 0 else tolist(v)) for k, v in out.items()}
    expected["logprobs"] = [row[: len(r)] for row, r in zip(logprobs.detach().tolist(), responses)]
    expected["self_reward_logprobs"] = srl.detach().tolist()
    expected["grad_weight"] = {"name": GRAD_WEIGHT, "shape": list(weight.shape), "values": weight.grad.flatten().tolist()}
    return {
        "name": spec["name"],
        "description": spec["description"],
        "generator": {
            "script": "scripts/gen_loss_fixtures.py",
            "verl_version": verl_version,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "model": "model/tests/fixtures/tiny-qwen2",
            "reference_dtype": "float64 (model weights are float32 upcast; old log-probs rounded to float32)",
        },
        "config": cfg,
        "phase": spec["phase"],
        "c_ref": spec["c_ref"],
        "self_reward_token": z_c,
        "inputs": {
            "group_ids": [s[0] for s in samples],
            "prompts": prompts,
            "responses": responses,
            "old_logprobs": [row[: len(r)] for row, r in zip(old.tolist(), responses)],
            "verifier_rewards": [float(s[1]) for s in samples],
            "rollout_self_rewards": [None if s[2] is None else float(f32(s[2])) for s in samples],
            "truncated": truncated,
        },
        "expected": expected,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "learner", "tests", "fixtures"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    fixture = build_model_fixture(MODEL_SPEC)
    path = os.path.join(args.out, MODEL_SPEC["name"] + ".json")
    with open(path, "w") as f:
        json.dump(fixture, f)
        f.write("\n")
    e = fixture["expected"]
    print(f"{path}: policy_loss={e['policy_loss']:.6f} clipfrac={e['clip_fraction']:.4f} "
          f"mse={e['self_reward_mse']:.6f} total={e['total']:.6f}")
    for spec in SPECS:
        fixture = build_fixture(spec)
        path = os.path.join(args.out, spec["name"] + ".json")
        with open(path, "w") as f:
            json.dump(fixture, f, indent=1)
            f.write("\n")
        e = fixture["expected"]
        print(f"{path}: policy_loss={e['policy_loss']:.6f} clipfrac={e['clip_fraction']:.4f} "
              f"clipfrac_lower={e['clip_fraction_lower']:.4f} mse={e['self_reward_mse']:.6f} total={e['total']:.6f}")


if __name__ == "__main__":
    main()
