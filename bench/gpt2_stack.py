#!/usr/bin/env python3
"""Writes a GPT-2-small-shaped stack as Flint source: d=768, 12 heads of 64, MLP 3072,
batch <= 4, sequence <= 128, pre-norm blocks with causal attention and tanh GELU.

    python3 bench/gpt2_stack.py LAYERS > gpt2_LAYERS.tg

The compile-time benchmark (`make bench`) compiles it at 1, 12 and 48 layers."""
import sys

BLOCK = """\
fn attn(x: f32[B, S, 768]) -> (y: f32[B, S, 768]) {
    param c_attn_w: f32[2304, 768]
    param c_attn_b: f32[2304]
    param c_proj_w: f32[768, 768]
    param c_proj_b: f32[768]
    qkv = linear(x, c_attn_w, c_attn_b)
    q = permute(reshape(slice(qkv, axis=-1, start=0, end=768), shape=[B, S, 12, 64]), perm=[0, 2, 1, 3])
    k = permute(reshape(slice(qkv, axis=-1, start=768, end=1536), shape=[B, S, 12, 64]), perm=[0, 2, 1, 3])
    v = permute(reshape(slice(qkv, axis=-1, start=1536, end=2304), shape=[B, S, 12, 64]), perm=[0, 2, 1, 3])
    o = attention(q, k, v, causal=true)
    y = linear(reshape(permute(o, perm=[0, 2, 1, 3]), shape=[B, S, 768]), c_proj_w, c_proj_b)
}

fn mlp(x: f32[B, S, 768]) -> (y: f32[B, S, 768]) {
    param c_fc_w: f32[3072, 768]
    param c_fc_b: f32[3072]
    param c_proj_w: f32[768, 3072]
    param c_proj_b: f32[768]
    y = linear(gelu(linear(x, c_fc_w, c_fc_b), approximate="tanh"), c_proj_w, c_proj_b)
}

fn block(x: f32[B, S, 768]) -> (y: f32[B, S, 768]) {
    param ln_1_g: f32[768]
    param ln_1_b: f32[768]
    param ln_2_g: f32[768]
    param ln_2_b: f32[768]
    n1 = layer_norm(x, ln_1_g, ln_1_b)
    a = attn(n1) as attn
    r = x + a
    n2 = layer_norm(r, ln_2_g, ln_2_b)
    m = mlp(n2) as mlp
    y = r + m
}
"""


def main():
    layers = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    if layers < 1:
        sys.exit("gpt2_stack.py: LAYERS must be at least 1")
    out = [f"# GPT-2-small-shaped stack, {layers} layer(s); written by bench/gpt2_stack.py.\n", BLOCK]
    out.append("graph gpt2(x: f32[B<=4, T<=128, 768]) -> (y: f32[B, T, 768]) {\n")
    out.append("    param ln_f_g: f32[768]\n    param ln_f_b: f32[768]\n")
    prev = "x"
    for i in range(layers):
        out.append(f"    h{i} = block({prev}) as h{i}\n")
        prev = f"h{i}"
    out.append(f"    y = layer_norm({prev}, ln_f_g, ln_f_b)\n}}\n")
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
