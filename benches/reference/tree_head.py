"""Reference-style PyTorch baseline of the ProtoTree head, for side-by-side timing.

Our own re-implementation of how the reference code (github M-Nauta/ProtoTree) computes the
head, written from its description (see docs/model.md): node objects that route
recursively in Python, the L2 distance as a convolution with a ones kernel for ||z||^2,
leaves that expand their distribution to the batch, and the derivative-free leaf update
as a Python loop over leaves. Prints one JSON line with the same keys as
`cargo run --release -p prototree-learn --example tree_head_bench`.

usage: python tree_head.py --depth 9 --features 256 --fmap 7 --batch 64 --classes 200 --iters 10 --threads 2
       python tree_head.py ... --device cuda   (timings after torch.cuda.synchronize; adds peak_device_mb)
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Leaf(nn.Module):
    def __init__(self, index, num_classes):
        super().__init__()
        self.index = index
        self._dist_params = nn.Parameter(torch.zeros(num_classes), requires_grad=False)

    def distribution(self):
        return F.softmax(self._dist_params - torch.max(self._dist_params), dim=0)

    def forward(self, xs, **kwargs):
        batch_size = xs.size(0)
        node_attr = kwargs.setdefault("attr", dict())
        node_attr.setdefault((self, "pa"), torch.ones(batch_size, device=xs.device))
        dist = self.distribution().view(1, -1)
        dists = torch.cat((dist,) * batch_size, dim=0)
        node_attr[self, "ds"] = dists
        return dists, node_attr

    def leaves(self):
        return {self}


class Branch(nn.Module):
    def __init__(self, index, l, r):
        super().__init__()
        self.index = index
        self.l = l
        self.r = r

    def forward(self, xs, **kwargs):
        batch_size = xs.size(0)
        node_attr = kwargs.setdefault("attr", dict())
        pa = node_attr.setdefault((self, "pa"), torch.ones(batch_size, device=xs.device))
        ps = self.g(**kwargs)
        node_attr[self, "ps"] = ps
        node_attr[self.l, "pa"] = (1 - ps) * pa
        node_attr[self.r, "pa"] = ps * pa
        l_dists, _ = self.l.forward(xs, **kwargs)
        r_dists, _ = self.r.forward(xs, **kwargs)
        ps = ps.view(batch_size, 1)
        return (1 - ps) * l_dists + ps * r_dists, node_attr

    def g(self, **kwargs):
        out_map = kwargs["out_map"]
        conv_net_output = kwargs["conv_net_output"]
        return conv_net_output[out_map[self]].squeeze(dim=1)

    def leaves(self):
        return self.l.leaves().union(self.r.leaves())

    def branches(self):
        out = {self}
        for child in (self.l, self.r):
            if isinstance(child, Branch):
                out |= child.branches()
        return out


def build(depth, num_classes, index=0):
    if depth == 0:
        return Leaf(index, num_classes), index + 1
    l, nxt = build(depth - 1, num_classes, index + 1)
    r, nxt = build(depth - 1, num_classes, nxt)
    return Branch(index, l, r), nxt


class Head(nn.Module):
    def __init__(self, depth, dim, num_classes):
        super().__init__()
        self.root, _ = build(depth, num_classes)
        p = 2 ** depth - 1
        self.prototype_vectors = nn.Parameter(torch.randn(p, dim, 1, 1) * 0.1 + 0.5)
        self.branch_list = list(self.root.branches())
        self.out_map = {b: j for j, b in enumerate(self.branch_list)}

    def distances(self, z):
        ones = torch.ones_like(self.prototype_vectors)
        z2 = F.conv2d(z ** 2, weight=ones)
        p2 = torch.sum(self.prototype_vectors ** 2, dim=(1, 2, 3)).view(-1, 1, 1)
        zp = F.conv2d(z, weight=self.prototype_vectors)
        return torch.sqrt(torch.abs(z2 + p2 - 2 * zp) + 1e-14)

    def forward(self, z):
        d = self.distances(z)
        bs, p, w, h = d.shape
        d_min = -F.max_pool2d(-d, kernel_size=(w, h)).view(bs, p)
        sims = torch.exp(-d_min)
        out, attr = self.root.forward(z, conv_net_output=sims.chunk(p, dim=1), out_map=self.out_map)
        return out, attr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=9)
    ap.add_argument("--features", type=int, default=256)
    ap.add_argument("--fmap", type=int, default=7)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=200)
    ap.add_argument("--iters", type=int, default=10)
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
    head = Head(a.depth, a.features, a.classes)
    leaves = list(head.root.leaves())
    for leaf in leaves:
        leaf._dist_params.data = torch.relu(torch.randn(a.classes) * 2)
    head = head.to(dev)
    z = torch.rand(a.batch, a.features, a.fmap, a.fmap, device=dev, requires_grad=True)
    y = torch.arange(a.batch, device=dev) % a.classes
    opt = torch.optim.AdamW([head.prototype_vectors], lr=1e-3, eps=1e-7, weight_decay=0.0)

    def timed(fn):
        fn()
        ts = []
        for _ in range(a.iters):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            ts.append((time.perf_counter() - t) * 1e3)
        return statistics.median(ts)

    def fwd():
        with torch.no_grad():
            head(z)

    def fwd_bwd():
        out, _ = head(z)
        F.nll_loss(torch.log(out), y).backward()

    old = {leaf: leaf._dist_params.detach().clone() for leaf in leaves}

    def train_step():
        opt.zero_grad()
        out, attr = head(z)
        F.nll_loss(torch.log(out), y).backward()
        opt.step()
        with torch.no_grad():
            target = F.one_hot(y, num_classes=a.classes)
            for leaf in head.root.leaves():
                update = torch.sum(
                    (attr[leaf, "pa"].view(-1, 1) * leaf.distribution() * target) / out, dim=0
                )
                leaf._dist_params -= old[leaf] / 100
                F.relu_(leaf._dist_params)
                leaf._dist_params += update

    res = {
        "fwd_ms": timed(fwd),
        "fwd_bwd_ms": timed(fwd_bwd),
        "train_step_ms": timed(train_step),
        "depth": a.depth,
        "features": a.features,
        "fmap": a.fmap,
        "batch": a.batch,
        "classes": a.classes,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": a.device,
    }
    if cuda:
        res["peak_device_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        res["soft_images_per_s"] = a.batch * 1e3 / res["fwd_ms"]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
