"""Exports the example ONNX models with PyTorch and records ONNX Runtime's outputs.

    python3 examples/onnx/export.py            # needs torch (Debian: python3-torch)
    python3 examples/onnx/export.py --ort      # needs onnxruntime; writes *_expected.npy
    python3 examples/onnx/export.py --blocks [--ort]   # only the two transformer blocks

Six models, each with a dynamic batch (ONNX `dim_param`):
- mlp.onnx: a 3-layer perceptron (Linear exported as Gemm, ReLU, Softmax);
- block.onnx: a pre-norm transformer block (LayerNormalization, multi-head causal
  attention written out with Reshape/Transpose/MatMul/Softmax, exact GELU as Erf), whose
  reshapes read the batch and sequence length through Shape/Gather/Concat;
- mobilenet_v2.onnx, mobilenet_v3_small.onnx: torchvision's MobileNet-V2 and
  MobileNet-V3-Small at width 0.25 with 10 classes (random weights, nothing downloaded;
  batch-norm statistics randomized so that folding them is not an identity): strided and
  depthwise Conv, Clip (ReLU6), HardSwish, HardSigmoid, squeeze-excite blocks with global
  average pooling, Flatten and Gemm, on 64x64 images;
- bert_block.onnx: a BERT-style post-norm encoder block, inputs `x` [batch, seq, 32] and
  `attention_mask` [batch, seq] (int64, broadcast to [batch, 1, 1, seq] as an additive
  mask), reshapes built from `x.size()[:-1] + (heads, head_dim)`;
- gpt2_block.onnx: a GPT-2-style decoder (token and position embeddings, one pre-norm block
  with the tanh GELU, a final norm and the tied head), input `input_ids` [batch, seq];
  position ids are `arange(seq)` and the causal mask is a slice of a registered
  lower-triangular buffer (`bias[:, :, k - q : k, :k]`), as Hugging Face's GPT-2 writes it.
  Both blocks have batch and seq dynamic; their inputs and outputs are recorded at two sizes
  (`<model>_<batch>x<seq>_<name>.npy`).

Inputs are seeded; compiler/tests/onnx_models.rs imports each model, runs it on Flint's
reference interpreter and compares with ONNX Runtime's outputs.
"""

import argparse
import math
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def blocks():
    """The two transformer blocks with both axes dynamic: name -> (model, a function from
    (batch, seq) to seeded inputs, the recorded sizes, input names, output names, dynamic
    axes). The weights and the recorded inputs depend only on the seed."""
    import torch
    from torch import nn

    class BertBlock(nn.Module):
        def __init__(self, d=32, heads=4, ff=64):
            super().__init__()
            self.heads, self.head_dim = heads, d // heads
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
            self.up, self.down = nn.Linear(d, ff), nn.Linear(ff, d)

        def split(self, t):
            return t.view(t.size()[:-1] + (self.heads, self.head_dim)).permute(0, 2, 1, 3)

        def forward(self, x, attention_mask):
            ext = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
            q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + ext
            ctx = (torch.softmax(scores, dim=-1) @ v).permute(0, 2, 1, 3).contiguous()
            ctx = ctx.view(ctx.size()[:-2] + (self.heads * self.head_dim,))
            h = self.ln1(x + self.o(ctx))
            return self.ln2(h + self.down(nn.functional.gelu(self.up(h))))

    class Gpt2Block(nn.Module):
        def __init__(self, vocab=96, positions=32, d=32, heads=4):
            super().__init__()
            self.heads, self.d = heads, d
            self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(positions, d)
            self.ln_1, self.ln_2, self.ln_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
            self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
            tril = torch.tril(torch.ones(positions, positions, dtype=torch.bool))
            self.register_buffer("bias", tril.view(1, 1, positions, positions))

        def split(self, t):
            return t.view(t.size()[:-1] + (self.heads, self.d // self.heads)).permute(0, 2, 1, 3)

        def attn(self, h):
            q, k, v = self.c_attn(h).split(self.d, dim=2)
            q, k, v = self.split(q), self.split(k), self.split(v)
            w = q @ k.transpose(-1, -2) / (v.size(-1) ** 0.5)
            ql, kl = q.size(-2), k.size(-2)
            causal = self.bias[:, :, kl - ql : kl, :kl]
            w = torch.where(causal, w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
            a = (torch.softmax(w, dim=-1) @ v).permute(0, 2, 1, 3).contiguous()
            return self.c_proj(a.view(a.size()[:-2] + (self.d,)))

        def forward(self, input_ids):
            position_ids = torch.arange(0, input_ids.size(-1), dtype=torch.long).unsqueeze(0)
            h = self.wte(input_ids) + self.wpe(position_ids)
            h = h + self.attn(self.ln_1(h))
            m = self.c_fc(self.ln_2(h))
            m = 0.5 * m * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (m + 0.044715 * torch.pow(m, 3.0))))
            h = self.ln_f(h + self.mlp_proj(m))
            return h @ self.wte.weight.t()

    def bert_inputs(b, s):
        mask = torch.ones(b, s, dtype=torch.long)
        for i in range(b):
            mask[i, s - 1 - i % s :] = 0 if i % 2 else 1  # odd rows pad their tail
        return [torch.randn(b, s, 32), mask]

    def gpt2_inputs(b, s):
        return [torch.randint(0, 96, (b, s))]

    torch.manual_seed(1)
    axes = {0: "batch", 1: "seq"}
    return {
        "bert_block": (
            BertBlock(),
            bert_inputs,
            [(2, 7), (3, 5)],
            ["x", "attention_mask"],
            ["y"],
            {"x": axes, "attention_mask": axes, "y": axes},
        ),
        "gpt2_block": (
            Gpt2Block(),
            gpt2_inputs,
            [(2, 7), (3, 12)],
            ["input_ids"],
            ["logits"],
            {"input_ids": axes, "logits": axes},
        ),
    }


def export_blocks():
    import torch

    for name, (model, inputs, sizes, ins, outs, axes) in blocks().items():
        model.eval()
        recorded = [inputs(b, s) for b, s in sizes]
        path = os.path.join(HERE, f"{name}.onnx")
        torch.onnx.export(
            model, tuple(recorded[0]), path, input_names=ins, output_names=outs, dynamic_axes=axes, opset_version=17
        )
        for (b, s), xs in zip(sizes, recorded):
            for n, x in zip(ins, xs):
                np.save(os.path.join(HERE, f"{name}_{b}x{s}_{n}.npy"), x.numpy())
        print("wrote", path)


def run_ort_blocks():
    import onnxruntime as ort

    for name, (_, _, sizes, ins, _, _) in blocks().items():
        sess = ort.InferenceSession(os.path.join(HERE, f"{name}.onnx"), providers=["CPUExecutionProvider"])
        for b, s in sizes:
            feed = {n: np.load(os.path.join(HERE, f"{name}_{b}x{s}_{n}.npy")) for n in ins}
            (y,) = sess.run(None, feed)
            np.save(os.path.join(HERE, f"{name}_{b}x{s}_expected.npy"), y)
            print(name, f"{b}x{s}", "ORT", ort.__version__, y.shape)


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
    export_blocks()


def run_ort():
    import onnxruntime as ort

    for name in ["mlp", "block", "mobilenet_v2", "mobilenet_v3_small"]:
        sess = ort.InferenceSession(os.path.join(HERE, f"{name}.onnx"), providers=["CPUExecutionProvider"])
        x = np.load(os.path.join(HERE, f"{name}_input.npy"))
        (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
        np.save(os.path.join(HERE, f"{name}_expected.npy"), y)
        print(name, "ORT", ort.__version__, y.shape)
    run_ort_blocks()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--ort", action="store_true", help="run ONNX Runtime and write the expected outputs")
    p.add_argument("--blocks", action="store_true", help="only the BERT- and GPT-2-style blocks")
    a = p.parse_args()
    if a.blocks:
        run_ort_blocks() if a.ort else export_blocks()
    else:
        run_ort() if a.ort else export()
