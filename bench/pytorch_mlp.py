"""The reference workload in plain PyTorch, for `bench overhead`: exactly the job of
config/reference_mlp.yaml and bench/src/bin/bare-mlp.rs (Fashion-MNIST from Debian's package,
bytes / 255, MLP 784-128-10 with ReLU, Adam 1e-3, batch 128, seed 42, 5 epochs, the same
batch loop with training loss and accuracy summed on tensors, test accuracy). Prints one JSON
line: seconds (inside the process, after imports) and accuracy.

usage: python3 bench/pytorch_mlp.py DATA_DIR THREADS
"""

import gzip
import json
import struct
import sys
import time

started = time.monotonic()
import torch  # noqa: E402  (the import is part of the program's cost, timed from outside too)


def read_idx(path):
    """An IDX file (gzipped) as a flat uint8 tensor and its dimensions."""
    with gzip.open(path, "rb") as file:
        data = file.read()
    zero, kind, rank = struct.unpack(">HBB", data[:4])
    if zero != 0 or kind != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * rank, data[4 : 4 + 4 * rank])
    body = bytearray(data[4 + 4 * rank :])
    return torch.frombuffer(body, dtype=torch.uint8), dims


def images(path):
    pixels, dims = read_idx(path)
    return pixels.view(dims[0], dims[1] * dims[2]).to(torch.float32) * (1.0 / 255.0)


def labels(path):
    values, _ = read_idx(path)
    return values.to(torch.int64)


def main():
    folder, threads = sys.argv[1], int(sys.argv[2])
    torch.manual_seed(42)
    torch.set_num_threads(threads)
    x_train = images(f"{folder}/train-images-idx3-ubyte.gz")
    y_train = labels(f"{folder}/train-labels-idx1-ubyte.gz")
    x_test = images(f"{folder}/t10k-images-idx3-ubyte.gz")
    y_test = labels(f"{folder}/t10k-labels-idx1-ubyte.gz")
    net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    n, batch_size = x_train.shape[0], 128
    for _epoch in range(5):
        order = torch.randperm(n)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            xb, yb = x_train.index_select(0, index), y_train.index_select(0, index)
            logits = net(xb)
            loss = torch.nn.functional.cross_entropy(logits, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                loss_sum += loss.double() * len(index)
                correct += (logits.argmax(-1) == yb).sum()
        _ = (loss_sum.item(), correct.item())
    with torch.no_grad():
        accuracy = (net(x_test).argmax(-1) == y_test).float().mean().item()
    print(json.dumps({"seconds": time.monotonic() - started, "accuracy": accuracy}))


if __name__ == "__main__":
    main()
