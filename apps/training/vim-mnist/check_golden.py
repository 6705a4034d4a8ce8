"""Checks vim_model.py against the golden Vision Mamba checkpoint, in float64 on the CPU.

  python3 apps/training/vim-mnist/check_golden.py [folder]   (default ../shared/golden/vim-tiny
                                                              from the repo root)

Loads config.json + model.safetensors, runs expected.json's images and compares the features
and logits with expected.json's (max abs error relative to the largest magnitude; must be
below 1e-9 in float64). Exit status 1 on a mismatch.
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vim_model import load_model  # noqa: E402


def rel_err(got, want):
    return ((got - want).abs().max() / want.abs().max().clamp(min=1e-30)).item()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../../../shared/golden/vim-tiny")
    with open(os.path.join(folder, "expected.json")) as f:
        expected = json.load(f)
    model = load_model(folder, torch.float64)
    images = torch.tensor(expected["images"], dtype=torch.float64)
    with torch.no_grad():
        feats = model.forward_features(images)
        logits = model.head(feats)
    ef = rel_err(feats, torch.tensor(expected["features"], dtype=torch.float64))
    el = rel_err(logits, torch.tensor(expected["logits"], dtype=torch.float64))
    print(f"{folder}: features rel err {ef:.3e}, logits rel err {el:.3e}")
    if "labels" in expected:
        pred = logits.argmax(-1).tolist()
        print(f"predicted {pred}, labels {expected['labels']}")
        if pred != expected["labels"]:
            print("predicted classes differ from the labels")
            sys.exit(1)
    if max(ef, el) > 1e-9:
        print("MISMATCH")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
