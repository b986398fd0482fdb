"""Reference-style PyTorch baseline of one full ProtoTree training step (backbone + add-on
+ tree head, forward, NLL, backward, Adam step, derivative-free leaf update), for
side-by-side timing with `cargo run --release -p prototree --example train_step_bench`.

The backbone is torchvision's ResNet cut after layer4, or (`--backbone efficientnet-lite0`)
the `efficientnet-lite-pytorch` package's EfficientNet-Lite0 cut after its head
(`extract_features`), the add-on a 1x1 conv + sigmoid,
the head the reference-style one of tree_head.py (nodes routing in Python).
Prints one JSON line: {"step_ms": median, "step_cpu_ms": median CPU time, "peak_rss_mb": ..., ...}.

usage: python train_step.py --backbone resnet18 --size 224 --batch 16 --depth 9 --features 256 --classes 200 --iters 5 --threads 2
       python train_step.py --backbone resnet50 --batch 64 --device cuda   (timed after torch.cuda.synchronize;
       adds peak_device_mb = torch.cuda.max_memory_allocated and images_per_s)
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tree_head import Head  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--backbone", default="resnet18")
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--depth", type=int, default=9)
ap.add_argument("--features", type=int, default=256)
ap.add_argument("--classes", type=int, default=200)
ap.add_argument("--iters", type=int, default=5)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--device", default="cpu")
a = ap.parse_args()
dev = torch.device(a.device)
cuda = dev.type == "cuda"


def sync():
    if cuda:
        torch.cuda.synchronize(dev)


if a.threads > 0:
    torch.set_num_threads(a.threads)
torch.manual_seed(0)
if a.backbone.startswith("efficientnet-lite"):
    from efficientnet_lite_pytorch import EfficientNet

    class LiteFeatures(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.net = EfficientNet.from_name(name)

        def forward(self, x):
            return self.net.extract_features(x)

    features = LiteFeatures(a.backbone)
    c = 1280
else:
    resnet = getattr(torchvision.models, a.backbone)()
    features = nn.Sequential(*list(resnet.children())[:-2])
    c = 512 if a.backbone in ("resnet18", "resnet34") else 2048
add_on = nn.Sequential(nn.Conv2d(c, a.features, 1, bias=False), nn.Sigmoid())
head = Head(a.depth, a.features, a.classes)
leaves = list(head.root.leaves())
for leaf in leaves:
    leaf._dist_params.data = torch.relu(torch.randn(a.classes) * 2)
features, add_on, head = features.to(dev), add_on.to(dev), head.to(dev)
x = torch.rand(a.batch, 3, a.size, a.size, device=dev)
y = torch.arange(a.batch, device=dev) % a.classes
params = [
    {"params": features.parameters(), "lr": 1e-5},
    {"params": add_on.parameters(), "lr": 1e-3},
    {"params": [head.prototype_vectors], "lr": 1e-3},
]
opt = torch.optim.AdamW(params, lr=1e-3, eps=1e-7, weight_decay=0.0)
old = {leaf: leaf._dist_params.detach().clone() for leaf in leaves}
features.train()


def step():
    opt.zero_grad()
    out, attr = head(add_on(features(x)))
    F.nll_loss(torch.log(out), y).backward()
    opt.step()
    with torch.no_grad():
        target = F.one_hot(y, num_classes=a.classes)
        for leaf in leaves:
            update = torch.sum((attr[leaf, "pa"].view(-1, 1) * leaf.distribution() * target) / out, dim=0)
            leaf._dist_params -= old[leaf] / 100
            F.relu_(leaf._dist_params)
            leaf._dist_params += update


step()
ts, cpu = [], []
for _ in range(a.iters):
    sync()
    t, c = time.perf_counter(), time.process_time()
    step()
    sync()
    ts.append((time.perf_counter() - t) * 1e3)
    cpu.append((time.process_time() - c) * 1e3)
res = {
    "step_ms": statistics.median(ts),
    "step_cpu_ms": statistics.median(cpu),  # user + system CPU time of the process
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "backbone": a.backbone, "size": a.size, "batch": a.batch, "depth": a.depth,
    "threads": torch.get_num_threads(), "torch": torch.__version__, "device": a.device,
}
if cuda:
    res["peak_device_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    res["images_per_s"] = a.batch * 1e3 / res["step_ms"]
print(json.dumps(res))
