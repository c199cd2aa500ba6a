"""CUDA-graph replay of whole training steps.

At the seed's GPU setting a training step is a few hundred microseconds of device work spread over
some sixty kernels; launched one by one from Python, the launches cost more than the work. Here each
distinct step (input shape, with or without the auxiliary dead-latent loss) is run eagerly a couple of
times on a side stream (so the optimizer state and library handles exist), then captured once into a
CUDA graph and replayed for every later step: forward, backward, gradient projection, clipping, the
fused Adam update, decoder renormalisation and the dead-latent counters all run as one launch.

The graph computes exactly what the eager step computes; only the input buffer is copied in per step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

WARMUP_STEPS = 2
"""Eager steps run before a step is captured (per input shape and aux setting)."""


class GraphedStep:
    """Runs `body(x, use_aux)` (one full training step, no host syncs) through captured CUDA graphs."""

    def __init__(self, body: Callable[[Tensor, bool], None], zero_grad: Callable[[], None]) -> None:
        self.body = body
        self.zero_grad = zero_grad
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, Tensor]] = {}
        self.warm: dict[tuple, int] = {}
        self.stream = torch.cuda.Stream()

    def __call__(self, x: Tensor, use_aux: bool) -> None:
        key = (tuple(x.shape), x.dtype, use_aux)
        captured = self.graphs.get(key)
        if captured is not None:
            graph, static_x = captured
            static_x.copy_(x)
            graph.replay()
            return
        if self.warm.get(key, 0) < WARMUP_STEPS:
            self.warm[key] = self.warm.get(key, 0) + 1
            self._eager(x, use_aux)
            return
        self._capture(key, x, use_aux)
        graph, static_x = self.graphs[key]
        static_x.copy_(x)
        graph.replay()

    def _eager(self, x: Tensor, use_aux: bool) -> None:
        """One ordinary step on the side stream (warm-up runs must not happen on the capturing stream)."""
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            self.zero_grad()
            self.body(x, use_aux)
        torch.cuda.current_stream().wait_stream(self.stream)

    def _capture(self, key: tuple, x: Tensor, use_aux: bool) -> None:
        static_x = torch.empty_like(x)
        torch.cuda.synchronize()
        # gradients allocated inside the capture live in the graph's own pool, rewritten by every replay
        self.zero_grad()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.body(static_x, use_aux)
        self.graphs[key] = (graph, static_x)
