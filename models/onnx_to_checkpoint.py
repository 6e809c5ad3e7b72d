"""Turn an exported model back into a checkpoint ``train.py --init`` can fine-tune.

    python models/onnx_to_checkpoint.py MODEL.onnx OUT.pt [--channels 8 16 24 48 64]

Needed when the training run's own checkpoint is gone: the export folds each
BatchNorm into its convolution, so this sets every BatchNorm to an identity
(mean 0, variance 1 - eps, scale 1) whose shift is the folded bias. The result
computes what the ONNX file computes; fine-tune it with ``train.py --freeze-bn``
so the BatchNorms keep those statistics. Give the file as ``train.py`` exported
it before channel alignment, or one without aligned channels (``git show`` an
older commit); aligned files are refused, their padded channels would not fit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def onnx_to_state(path: Path, channels: tuple, leaky: float = 0.05):
    import onnx
    import torch
    from onnx import numpy_helper

    from train import build_net

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    net = build_net(leaky=leaky, channels=channels)
    layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
    pairs, k = [], 0
    while k < len(layers):  # each conv is followed by its BatchNorm, except the head's
        bn = layers[k + 1] if k + 1 < len(layers) and isinstance(layers[k + 1], torch.nn.BatchNorm2d) else None
        pairs.append((layers[k], bn))
        k += 2 if bn is not None else 1
    if len(pairs) != len(convs):
        raise ValueError(f"{path}: {len(convs)} convolutions, the network with channels {channels} has {len(pairs)}")
    with torch.no_grad():
        for (conv, bn), node in zip(pairs, convs):
            w = np.array(inits[node.input[1]])
            b = np.array(inits[node.input[2]]) if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ValueError(f"{path}: convolution {node.name} has weights {w.shape}, expected "
                                 f"{tuple(conv.weight.shape)} (aligned channels, or other channels?)")
            conv.weight.copy_(torch.from_numpy(w))
            if bn is None:
                conv.bias.copy_(torch.from_numpy(b))
            else:
                bn.weight.fill_(1.0)
                bn.bias.copy_(torch.from_numpy(b))
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
    return net


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--channels", type=int, nargs=5, default=[8, 16, 24, 48, 64])
    ap.add_argument("--leaky", type=float, default=0.05)
    args = ap.parse_args(argv)
    import onnxruntime as ort
    import torch

    net = onnx_to_state(args.model, tuple(args.channels), args.leaky).eval()
    x = np.random.default_rng(0).random((1, 1, 256, 256), dtype=np.float32)
    with torch.no_grad():
        mine = torch.sigmoid(net(torch.from_numpy(x))).numpy()
    ref = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    diff = float(np.abs(mine - ref).max())
    if diff > 1e-4:
        print(f"{args.model}: the rebuilt network differs from the file by {diff:.2g}", file=sys.stderr)
        return 1
    torch.save({"step": 0, "state": net.state_dict(), "args": {"from_onnx": str(args.model)}}, args.out)
    print(f"{args.out}: the network of {args.model} (largest difference {diff:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
