"""A small, seeded training run that envcap snapshots, rebuilds and replays.

Logistic regression on a synthetic two-moons-like dataset, trained by full-batch gradient
descent with numpy. Everything is seeded, so two runs in the same environment write the same
metrics; a different BLAS, CPU ISA or numpy version may move the last digits, which is what
`envcap replay` is there to explain.

    python train.py --epochs 200 --out out/metrics.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def make_data(rng: np.random.Generator, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    angles = rng.uniform(0.0, np.pi, size=n)
    label = rng.integers(0, 2, size=n)
    x = np.where(label == 0, np.cos(angles), 1.0 - np.cos(angles))
    y = np.where(label == 0, np.sin(angles), 0.5 - np.sin(angles))
    features = np.stack([x, y, x * y, x**2, y**2], axis=1) + rng.normal(0.0, 0.15, size=(n, 5))
    return features, label.astype(np.float64)


def train(epochs: int, lr: float, seed: int) -> dict[str, float | int | list[float]]:
    rng = np.random.default_rng(seed)
    features, labels = make_data(rng)
    weights = rng.normal(0.0, 0.01, size=features.shape[1])
    bias = 0.0
    losses = []
    for _ in range(epochs):
        logits = features @ weights + bias
        probs = 1.0 / (1.0 + np.exp(-logits))
        eps = 1e-12
        loss = float(-np.mean(labels * np.log(probs + eps) + (1 - labels) * np.log(1 - probs + eps)))
        losses.append(loss)
        grad = probs - labels
        weights -= lr * (features.T @ grad) / len(labels)
        bias -= lr * float(np.mean(grad))
    accuracy = float(np.mean((features @ weights + bias > 0) == (labels > 0.5)))
    return {"epochs": epochs, "seed": seed, "final_loss": losses[-1], "accuracy": accuracy,
            "weights": [float(w) for w in weights], "loss_curve_every_10": losses[::10]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("TRAIN_SEED", "0")))
    parser.add_argument("--out", type=Path, default=Path("out/metrics.json"))
    args = parser.parse_args()
    metrics = train(args.epochs, args.lr, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(f"epochs={metrics['epochs']} loss={metrics['final_loss']:.6f} accuracy={metrics['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
