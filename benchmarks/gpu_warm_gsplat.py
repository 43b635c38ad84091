"""Compile gsplat's CUDA kernels (its first use builds them, about 100 s on a bare machine) with one tiny
rasterisation, so that a GPU session can do it beside data preparation instead of inside a training:
    python3 benchmarks/gpu_warm_gsplat.py
Wait for it to finish before anything else uses gsplat: a training that started while it was still
building broke the build on the H100 (missing object files, the lock removed) and that training failed.
"""

import torch
from gsplat import rasterization

dev = torch.device("cuda")
means = torch.tensor([[0.0, 0.0, 2.0]], device=dev)
rasterization(means, torch.tensor([[1.0, 0, 0, 0]], device=dev), torch.full((1, 3), 0.1, device=dev),
              torch.ones(1, device=dev), torch.ones(1, 3, device=dev), torch.eye(4, device=dev)[None],
              torch.tensor([[[100.0, 0, 16], [0, 100, 16], [0, 0, 1]]], device=dev), 32, 32)
torch.cuda.synchronize()
print("gsplat kernels ready")
