"""Exports the example ONNX models with PyTorch and records ONNX Runtime's outputs.

    python3 examples/onnx/export.py            # needs torch (Debian: python3-torch)
    python3 examples/onnx/export.py --ort      # needs onnxruntime; writes *_expected.npy

Four models, each with a dynamic batch (ONNX `dim_param`):
- mlp.onnx: a 3-layer perceptron (Linear exported as Gemm, ReLU, Softmax);
- block.onnx: a pre-norm transformer block (LayerNormalization, multi-head causal
  attention written out with Reshape/Transpose/MatMul/Softmax, exact GELU as Erf), whose
  reshapes read the batch and sequence length through Shape/Gather/Concat;
- mobilenet_v2.onnx, mobilenet_v3_small.onnx: torchvision's MobileNet-V2 and
  MobileNet-V3-Small at width 0.25 with 10 classes (random weights, nothing downloaded;
  batch-norm statistics randomized so that folding them is not an identity): strided and
  depthwise Conv, Clip (ReLU6), HardSwish, HardSigmoid, squeeze-excite blocks with global
  average pooling, Flatten and Gemm, on 64x64 images.

Inputs are seeded; compiler/tests/onnx_models.rs imports each model, runs it on Flint's
reference interpreter and compares with ONNX Runtime's outputs.
"""

import argparse
import math
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def export():
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(64, 96)
            self.fc2 = nn.Linear(96, 48)
            self.fc3 = nn.Linear(48, 10)

        def forward(self, x):
            h = torch.relu(self.fc1(x))
            h = torch.relu(self.fc2(h))
            return torch.softmax(self.fc3(h), dim=-1)

    class Block(nn.Module):
        def __init__(self, d=32, heads=4, ff=64):
            super().__init__()
            self.heads = heads
            self.ln1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d)
            self.up = nn.Linear(d, ff)
            self.down = nn.Linear(ff, d)

        def forward(self, x):
            b, s, d = x.shape
            h = self.heads
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
            q = q.reshape(b, s, h, d // h).transpose(1, 2)
            k = k.reshape(b, s, h, d // h).transpose(1, 2)
            v = v.reshape(b, s, h, d // h).transpose(1, 2)
            scores = q @ k.transpose(-2, -1) / math.sqrt(d // h)
            causal = torch.ones(s, s, dtype=torch.bool).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
            att = torch.softmax(scores, dim=-1) @ v
            x = x + self.proj(att.transpose(1, 2).reshape(b, s, d))
            return x + self.down(nn.functional.gelu(self.up(self.ln2(x))))

    import torchvision

    def cnn(build):
        model = build(width_mult=0.25, num_classes=10)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        return model

    image_axes = {"x": {0: "batch"}, "logits": {0: "batch"}}
    models = {
        "mlp": (Mlp(), torch.randn(5, 64), {"x": {0: "batch"}, "probs": {0: "batch"}}, ["x"], ["probs"]),
        "block": (Block(), torch.randn(2, 7, 32), {"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}}, ["x"], ["y"]),
        "mobilenet_v2": (cnn(torchvision.models.mobilenet_v2), torch.randn(2, 3, 64, 64), image_axes, ["x"], ["logits"]),
        "mobilenet_v3_small": (
            cnn(torchvision.models.mobilenet_v3_small),
            torch.randn(2, 3, 64, 64),
            image_axes,
            ["x"],
            ["logits"],
        ),
    }
    for name, (model, x, axes, ins, outs) in models.items():
        model.eval()
        path = os.path.join(HERE, f"{name}.onnx")
        torch.onnx.export(model, (x,), path, input_names=ins, output_names=outs, dynamic_axes=axes, opset_version=17)
        np.save(os.path.join(HERE, f"{name}_input.npy"), x.numpy())
        print("wrote", path)


def run_ort():
    import onnxruntime as ort

    for name in ["mlp", "block", "mobilenet_v2", "mobilenet_v3_small"]:
        sess = ort.InferenceSession(os.path.join(HERE, f"{name}.onnx"), providers=["CPUExecutionProvider"])
        x = np.load(os.path.join(HERE, f"{name}_input.npy"))
        (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
        np.save(os.path.join(HERE, f"{name}_expected.npy"), y)
        print(name, "ORT", ort.__version__, y.shape)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--ort", action="store_true", help="run ONNX Runtime and write the expected outputs")
    a = p.parse_args()
    run_ort() if a.ort else export()
