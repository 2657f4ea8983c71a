"""Attention kernel alone: fused ``scaled_dot_product_attention`` vs the math path vs matmul.

At 1,200 tokens over half of the release encoder's FLOPs are the two attention products; this
times them alone (release shape: 8 heads of 32 dimensions) next to a plain matrix multiply,
to show how close the fused kernel gets to the machine's limit, and the fused kernel and the
matmul in bfloat16 (whether bf16 can speed attention up on this machine).

    python benchmarks/attention_kernel.py [--cells 4] [--tokens 1200]
    python benchmarks/attention_kernel.py --smoke   # smallest setting (CI): seconds

``--smoke`` times 1 cell of 128 tokens, 1 repeat, and a 256^3 matrix multiply; options given
with it still apply.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _smoke import parse_args as parse_smoke
from torch.nn.attention import SDPBackend, sdpa_kernel

#: Defaults of ``--smoke``: the smallest setting, for CI.
SMOKE = {"cells": 1, "tokens": 128, "repeats": 1, "matmul_size": 256}


def seconds(fn: Callable[[], object], repeats: int) -> float:
    """Mean wall time of ``fn`` after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=1200)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the matmul")
    args = parse_smoke(parser, SMOKE)

    torch.manual_seed(0)
    shape = (args.cells, args.heads, args.tokens, args.head_dim)
    q, k, v = (torch.randn(shape) for _ in range(3))
    n = args.matmul_size
    a, b = torch.randn(n, n), torch.randn(n, n)
    flop = 4 * args.cells * args.heads * args.tokens**2 * args.head_dim
    with torch.inference_mode():
        fused = seconds(lambda: F.scaled_dot_product_attention(q, k, v), args.repeats)
        with sdpa_kernel(SDPBackend.MATH):
            math = seconds(lambda: F.scaled_dot_product_attention(q, k, v), args.repeats)
        matmul = seconds(lambda: a @ b, args.repeats)
        q16, k16, v16, a16, b16 = (t.to(torch.bfloat16) for t in (q, k, v, a, b))
        fused16 = seconds(lambda: F.scaled_dot_product_attention(q16, k16, v16), args.repeats)
        matmul16 = seconds(lambda: a16 @ b16, args.repeats)
    matmul_gflops = 2 * n**3 / matmul / 1e9
    print(f"threads={torch.get_num_threads()} shape={shape} attention GFLOP={flop / 1e9:.2f}")
    print(f"plain matmul ({n}^3): {matmul_gflops:.1f} GFLOP/s")
    for name, t in (("fused SDPA", fused), ("math path", math), ("fused bf16", fused16)):
        gflops = flop / t / 1e9
        print(
            f"{name:10s}: {t:.3f} s, {gflops:.1f} GFLOP/s = {gflops / matmul_gflops:.0%} of "
            "fp32 matmul"
        )
    print(
        f"bf16 / fp32 speed: fused attention {fused / fused16:.2f}x, "
        f"matmul {matmul / matmul16:.2f}x"
    )


if __name__ == "__main__":
    main()
