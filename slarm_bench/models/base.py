"""The model interface the harness drives (DESIGN.md "Models").

Batch mode: `reconstruct(context) -> Scene`, then `render(scene, ...)` once per target timestep (all cameras).
Streaming mode: `start() -> state`, then `step(state, frame) -> (state, scene)` one timestep at a time.
A model returns a `Prediction` in [0,1] RGB with whatever else it produces; a field it does not produce is
None, and the harness reports the matching metrics as "not produced" rather than as zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from slarm_bench.clip import Clip


@dataclass
class Scene:
    """What `reconstruct` returns: Gaussians (render.Gaussians) for Gaussian models, or any payload."""

    gaussians: Any = None
    sky: Any = None          # model-specific sky representation (e.g. a sky token)
    affine: Any = None       # per-camera colour transform [V,3,4] or None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prediction:
    """One target timestep, all V cameras. Tensors on any device; float32.

    rgb [V,H,W,3] in [0,1]; depth [V,H,W] expected z-depth (m); flow [V,H,W,3] world-frame velocity (m/s)
    in the clip's world frame; semantic [V,H,W] int64 class indices into the protocol's class list;
    features [V,H,W,C] language-aligned features (optional, for queries).
    """

    rgb: torch.Tensor
    depth: torch.Tensor | None = None
    flow: torch.Tensor | None = None
    semantic: torch.Tensor | None = None
    features: torch.Tensor | None = None


class Model:
    """Base class of every model. Subclasses set `name` and implement reconstruct and render."""

    name: str = "model"
    #: Clip fields the model reads from its context beyond images, poses, intrinsics and time
    #: (the oracle reads ground truth); the harness refuses to give a model what a protocol forbids.
    context_fields: tuple[str, ...] = ()
    #: Prediction fields the model produces ("rgb", "depth", "flow", "semantic").
    produces: tuple[str, ...] = ("rgb",)

    def reconstruct(self, context: Clip) -> Scene:
        raise NotImplementedError

    def render(self, scene: Scene, cam_to_world: np.ndarray, intrinsics: np.ndarray, time: float,
               size: tuple[int, int]) -> Prediction:
        """Render all cameras of one timestep: cam_to_world [V,4,4], intrinsics [V,3,3], time (s)."""
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        """What identifies this model's numbers: preset, checkpoint sha256, renderer backend, ..."""
        return {"model": self.name}

    def checkpoint_sha256(self) -> str | None:
        return None

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA) so timings are honest; no-op on the CPU."""


class StreamingModel(Model):
    """A model that can take one timestep (all cameras) at a time."""

    def start(self) -> Any:
        raise NotImplementedError

    def step(self, state: Any, frame: Clip) -> tuple[Any, Scene]:
        raise NotImplementedError
