"""Self-verification metrics shared by the offline analysis scripts (confidence_baseline.py,
readout_probe.py), computed as coordinator/src/eval.rs does: Mann-Whitney AUROC with ties counted
half, the within-problem AUROC over pairs of one problem's correct and incorrect samples, and
LASER.md's F1 (harmonic mean of the accuracy on correct and on incorrect answers).

Rows are eval samples (`RUN/eval_samples/step-N.jsonl`): dicts with `task_id` and `correct`;
`scores` is one number per row.
"""
import collections


def auroc(pos, neg):
    """P(score of a positive > score of a negative), ties half; None when a class is empty."""
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def split(rows, scores):
    """(scores of correct rows, scores of incorrect rows)."""
    pos = [s for r, s in zip(rows, scores) if r["correct"]]
    neg = [s for r, s in zip(rows, scores) if not r["correct"]]
    return pos, neg


def auroc_within(rows, scores):
    """AUROC over pairs of one problem's correct and incorrect samples; None without such pairs."""
    by_task = collections.defaultdict(list)
    for r, s in zip(rows, scores):
        by_task[r["task_id"]].append((s, r["correct"]))
    wins = pairs = 0.0
    for group in by_task.values():
        pos = [s for s, c in group if c]
        neg = [s for s, c in group if not c]
        for p in pos:
            for n in neg:
                wins += (p > n) + 0.5 * (p == n)
                pairs += 1
    return wins / pairs if pairs else None


def f1_at(rows, scores, threshold=0.5):
    """Harmonic mean of the accuracy on correct (score > threshold) and incorrect answers."""
    pos, neg = split(rows, scores)
    a = sum(s > threshold for s in pos) / max(len(pos), 1)
    b = sum(s <= threshold for s in neg) / max(len(neg), 1)
    return 2 * a * b / (a + b) if a + b else 0.0
