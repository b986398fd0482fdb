#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (scripts/fuzz.sh), from the repository's fixtures
and from small files made here: pickles of every protocol, and torch.save-shaped zip and
pre-1.6 archives written without torch (stand-in classes under torch's names).

usage: fuzz-seeds.py OUT_DIR   (writes OUT_DIR/<target>/<seed>)
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SEP = b"\n\x00--next-file--\x00\n"
out = sys.argv[1]


def fixture(*parts):
    with open(os.path.join(ROOT, "fixtures", *parts), "rb") as f:
        return f.read()


def seed(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- stand-ins for torch's classes, so pickles name them as torch.save does ---------
torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
torch._utils = utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = utils


class FloatStorage:
    pass


FloatStorage.__module__ = "torch"
torch.FloatStorage = FloatStorage


def _rebuild_tensor_v2(*args):
    pass


_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2


class Storage:
    def __init__(self, key, values):
        self.key, self.values = key, values


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        return (_rebuild_tensor_v2, args)


def state_dict():
    a = Storage("0", [float(i) for i in range(6)])
    b = Storage("1", [0.5, -1.0])
    sd = collections.OrderedDict()
    sd["conv.weight"] = Tensor(a, 0, (2, 3), (3, 1))
    sd["conv.weight_t"] = Tensor(a, 0, (3, 2), (1, 3))
    sd["bias"] = Tensor(b, 0, (2,), (1,))
    return sd, [a, b]


def torch_pickle(obj, storage_record, protocol=2):
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=protocol)
    p.persistent_id = lambda o: storage_record(o) if isinstance(o, Storage) else None
    p.dump(obj)
    return buf.getvalue()


def floats(values):
    return struct.pack("<%df" % len(values), *values)


def zip_file(protocol):
    sd, storages = state_dict()
    pkl = torch_pickle(sd, lambda s: ("storage", FloatStorage, s.key, "cpu", len(s.values)), protocol)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", b"3\n")
        for s in storages:
            z.writestr("archive/data/" + s.key, floats(s.values))
    return buf.getvalue()


def legacy_file():
    sd, storages = state_dict()
    out = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, out, protocol=2)
    out.write(torch_pickle(sd, lambda s: ("storage", FloatStorage, s.key, "cpu", len(s.values), None)))
    pickle.dump([s.key for s in storages], out, protocol=2)
    for s in storages:
        out.write(struct.pack("<q", len(s.values)))
        out.write(floats(s.values))
    return out.getvalue()


# --- pickle ------------------------------------------------------------------------
plain = {
    "a": [1, 2.5, None, True, -7, 2**70, -(2**40)],
    "b": (b"bytes", bytearray(b"ba"), "text", "\u00e9"),
    "c": {frozenset([1, 2]), 3},
    "d": collections.OrderedDict([("x", 1), ("y", [[], (), {}])]),
}
plain["self"] = [plain["a"], plain["a"]]
for proto in range(0, 6):
    seed("pickle", "plain_p%d" % proto, pickle.dumps(plain, protocol=proto))
for proto in (2, 4):
    seed("pickle", "state_dict_p%d" % proto, torch_pickle(state_dict()[0], lambda s: ("storage", FloatStorage, s.key, "cpu", 1), proto))
for name in ("smallcnn_d3", "smallcnn_d4_pruned_log"):
    with zipfile.ZipFile(os.path.join(ROOT, "fixtures/reference", name, "model_state.pth")) as z:
        seed("pickle", name + "_data.pkl", z.read("archive/data.pkl"))

# --- torch_file and state_dict -----------------------------------------------------
for target in ("torch_file", "state_dict"):
    seed(target, "zip_p2.pth", zip_file(2))
    seed(target, "zip_p4.pth", zip_file(4))
    seed(target, "legacy.pth", legacy_file())
    seed(target, "legacy_format.pth", fixture("backbones", "legacy_format.pth"))
    seed(target, "plain.pkl", pickle.dumps(plain, protocol=2))
header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "__metadata__": {"k": "v"}}).encode()
seed("state_dict", "tiny.safetensors", struct.pack("<Q", len(header)) + header + floats([1, 2, 3, 4]))

# --- model_dir: config.json, tree.bin, the safetensors header (the data is the fixture's)
model = ("models", "main-2026-12-01", "projected")
tensors = fixture(*model, "model.safetensors")
(n,) = struct.unpack("<Q", tensors[:8])
seed("model_dir", "projected", fixture(*model, "config.json") + SEP + fixture(*model, "tree.bin") + SEP + tensors[8 : 8 + n])

# --- run_toml ----------------------------------------------------------------------
seed("run_toml", "run.toml", fixture("runs", "main-2026-12-01", "run.toml"))
seed("run_toml", "empty.toml", b"")
seed("run_toml", "recipe.toml", b'backbone = "resnet50"\ndepth = 9\nproto_dim = 256\nimage_size = 224\n[schedule]\nepochs = 100\nmilestones = [60, 70]\nprotocol = "reference"\n')

# --- cub_metadata ------------------------------------------------------------------
names = ["classes.txt", "images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt", "parts/parts.txt", "parts/part_locs.txt"]
seed("cub_metadata", "cub-tiny", SEP.join(fixture("cub-tiny", *n.split("/")) for n in names))
seed("cub_metadata", "cub-tiny-no-parts", SEP.join(fixture("cub-tiny", n) for n in names[:5]))
