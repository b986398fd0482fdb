"""Reference-style PyTorch ProtoTree trainer over an image data set, data loading included,
for side-by-side timing with `cargo run --release -p prototree --example train_epoch_bench`
(benches/train_compare.sh runs the two in turn).

Trains whole epochs (or the first --max-batches batches of each) the way the reference
code does: a torch Dataset that opens and decodes each image with PIL per item, resizes it
to --size x --size (bilinear), augments it with torchvision transforms and normalises it;
a DataLoader (reference default: num_workers=0); the backbone (torchvision ResNet cut
after layer4, or the small CNN of prototree-backbone), a 1x1 conv + sigmoid add-on, the
reference-style tree head of tree_head.py (nodes routing in Python), NLL on log(y_hat),
AdamW over three groups (backbone at --lr-net, add-on at --lr-block, prototypes at --lr,
eps 1e-7, no weight decay), the backbone frozen for --freeze-epochs, and the reference's
derivative-free leaf update after every batch (minus 1/nr_batches of the epoch-start
distribution, ReLU, plus the batch's update).

Data: a directory in CUB-200-2011's layout (images.txt, image_class_labels.txt,
train_test_split.txt, images/), e.g. from `prototree synth`; only the training split is used.

Prints one JSON line: {"epoch_s": [...], "images_per_s": [...], "step_ms": median,
"wait_ms": median time waiting for the next batch, "train_accuracy": [...],
"peak_rss_mb": ..., "total_s": ..., ...}.

usage: python train_epoch.py --data DIR --backbone small-cnn --size 64 --batch 32 --depth 5 \
           --features 64 --epochs 3 --augmentation flip --lr 2e-3 --lr-block 2e-3 --lr-net 2e-3 \
           --freeze-epochs 0 --threads 2
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
from PIL import Image
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tree_head import Head  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--backbone", default="small-cnn")
ap.add_argument("--size", type=int, default=64)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--depth", type=int, default=5)
ap.add_argument("--features", type=int, default=64)
ap.add_argument("--epochs", type=int, default=1)
ap.add_argument("--max-batches", type=int, default=0, help="0: whole epochs")
ap.add_argument("--augmentation", default="flip", choices=["none", "flip", "shift", "reference"])
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--lr-block", type=float, default=2e-3)
ap.add_argument("--lr-net", type=float, default=2e-3)
ap.add_argument("--freeze-epochs", type=int, default=0)
ap.add_argument("--workers", type=int, default=0)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
t_start = time.perf_counter()
if a.threads > 0:
    torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)


def read_table(name):
    with open(os.path.join(a.data, name)) as f:
        return dict(line.split(maxsplit=1) for line in f if line.strip())


paths = read_table("images.txt")
labels = read_table("image_class_labels.txt")
is_train = read_table("train_test_split.txt")
ids = [i for i in paths if is_train[i].strip() == "1"]
num_classes = len({labels[i].strip() for i in paths})
samples = [(os.path.join(a.data, "images", paths[i].strip()), int(labels[i]) - 1) for i in ids]

if a.backbone in ("small-cnn", "small_cnn"):
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
else:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
shift = transforms.RandomAffine(0, translate=(1 / 16, 1 / 16))
augment = {
    "none": [],
    "flip": [transforms.RandomHorizontalFlip(), shift],
    "shift": [shift],
    "reference": [
        transforms.RandomOrder([
            transforms.RandomPerspective(distortion_scale=0.2, p=0.5),
            transforms.ColorJitter((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.02, 0.02)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomAffine(degrees=10, shear=(-2, 2), translate=[0.05, 0.05]),
        ])
    ],
}[a.augmentation]
transform = transforms.Compose(
    [transforms.Resize((a.size, a.size))] + augment
    + [transforms.ToTensor(), transforms.Normalize(mean, std)]
)


class Images(torch.utils.data.Dataset):
    def __len__(self):
        return len(samples)

    def __getitem__(self, i):
        path, y = samples[i]
        with open(path, "rb") as f:
            img = Image.open(f).convert("RGB")
        return transform(img), y


loader = torch.utils.data.DataLoader(
    Images(), batch_size=a.batch, shuffle=True, num_workers=a.workers, drop_last=False
)


class SmallCnn(nn.Module):
    """prototree-backbone's small CNN: four 3x3 conv (no bias) + BatchNorm + ReLU stages of
    16, 32, 64, 128 channels, the first three followed by 2x2 max-pooling."""

    def __init__(self):
        super().__init__()
        layers, c_in = [], 3
        for k, c in enumerate((16, 32, 64, 128)):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            if k < 3:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


if a.backbone in ("small-cnn", "small_cnn"):
    features, c = SmallCnn(), 128
else:
    resnet = getattr(torchvision.models, a.backbone)()
    features = nn.Sequential(*list(resnet.children())[:-2])
    c = 512 if a.backbone in ("resnet18", "resnet34") else 2048
add_on = nn.Sequential(nn.Conv2d(c, a.features, 1, bias=False), nn.Sigmoid())
head = Head(a.depth, a.features, num_classes)
leaves = list(head.root.leaves())
for leaf in leaves:
    leaf._dist_params.data = torch.randn(num_classes) * 1e-3
opt = torch.optim.AdamW(
    [
        {"params": features.parameters(), "lr": a.lr_net},
        {"params": add_on.parameters(), "lr": a.lr_block},
        {"params": [head.prototype_vectors], "lr": a.lr},
    ],
    lr=a.lr, eps=1e-7, weight_decay=0.0,
)
nr_batches = len(loader) if a.max_batches <= 0 else min(a.max_batches, len(loader))
epoch_s, rates, accs, steps, waits = [], [], [], [], []
setup_s = time.perf_counter() - t_start
for epoch in range(1, a.epochs + 1):
    frozen = epoch <= a.freeze_epochs
    for p in features.parameters():
        p.requires_grad = not frozen
    features.train(), add_on.train(), head.train()
    old = {leaf: leaf._dist_params.detach().clone() for leaf in leaves}
    t_epoch = time.perf_counter()
    t_wait = t_epoch
    seen, correct = 0, 0
    for k, (xs, ys) in enumerate(loader):
        if k >= nr_batches:
            break
        t_step = time.perf_counter()
        waits.append((t_step - t_wait) * 1e3)
        opt.zero_grad()
        out, attr = head(add_on(features(xs)))
        F.nll_loss(torch.log(out), ys).backward()
        opt.step()
        with torch.no_grad():
            target = F.one_hot(ys, num_classes=num_classes)
            for leaf in leaves:
                update = torch.sum(
                    (attr[leaf, "pa"].view(-1, 1) * leaf.distribution() * target) / out, dim=0
                )
                leaf._dist_params -= old[leaf] / nr_batches
                F.relu_(leaf._dist_params)
                leaf._dist_params += update
            correct += int((out.argmax(dim=1) == ys).sum())
            seen += len(ys)
        t_wait = time.perf_counter()
        steps.append((t_wait - t_step) * 1e3)
    s = time.perf_counter() - t_epoch
    epoch_s.append(s)
    rates.append(seen / s)
    accs.append(correct / max(seen, 1))
usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({
    "epoch_s": epoch_s,
    "images_per_s": rates,
    "step_ms": statistics.median(steps),
    "wait_ms": statistics.median(waits),
    "train_accuracy": accs,
    "batches_per_epoch": nr_batches,
    "train_images": len(samples),
    "setup_s": setup_s,
    "total_s": time.perf_counter() - t_start,
    "peak_rss_mb": usage,
    "peak_rss_workers_mb": children,
    "backbone": a.backbone, "size": a.size, "batch": a.batch, "depth": a.depth,
    "threads": torch.get_num_threads(), "workers": a.workers, "torch": torch.__version__,
}))
