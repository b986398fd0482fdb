"""Writes scikit-learn's handwritten digits (1,797 8x8 images, 10 classes) as a CUB-layout
data set of SIZE-px PNGs (nearest-neighbour upscaling, white digits on black), with a
seeded 80/20 train/test split, for `prototree train --data OUT`.

    python3 benches/datasets/digits_to_imagefolder.py OUT [--size 32] [--seed 0]

A throwaway virtual environment with scikit-learn and Pillow is enough; nothing in the
project needs Python.
"""
import argparse
import os
import random

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--size", type=int, default=32)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

d = load_digits()
rng = random.Random(a.seed)
ids = list(range(len(d.images)))
rng.shuffle(ids)
test = set(ids[: len(ids) // 5])
os.makedirs(os.path.join(a.out, "images"), exist_ok=True)
images, labels, split, boxes = [], [], [], []
classes = [f"{c + 1:03d}.digit_{c}" for c in range(10)]
for i, (img, y) in enumerate(zip(d.images, d.target)):
    grey = (np.asarray(img) / 16.0 * 255).clip(0, 255).astype(np.uint8)
    pil = Image.fromarray(grey, "L").resize((a.size, a.size), Image.NEAREST).convert("RGB")
    rel = f"{classes[y]}/digit_{i:04d}.png"
    os.makedirs(os.path.join(a.out, "images", classes[y]), exist_ok=True)
    pil.save(os.path.join(a.out, "images", rel))
    n = i + 1
    images.append(f"{n} {rel}")
    labels.append(f"{n} {y + 1}")
    split.append(f"{n} {0 if i in test else 1}")
    boxes.append(f"{n} 0 0 {a.size} {a.size}")
for name, lines in [
    ("images.txt", images),
    ("image_class_labels.txt", labels),
    ("train_test_split.txt", split),
    ("bounding_boxes.txt", boxes),
    ("classes.txt", [f"{c + 1} {n}" for c, n in enumerate(classes)]),
]:
    with open(os.path.join(a.out, name), "w") as f:
        f.write("\n".join(lines) + "\n")
print(f"{len(images)} images ({len(test)} test) in {a.out}")
