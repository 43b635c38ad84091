"""Per-family pieces of the training loop (`train.py`): the train-step modules (network + renderer + losses
as one module, so DDP sees every parameter used in one forward), SLARM's semantic training samples, the
`FAMILIES` table the loop dispatches on, and which parameters `train_only` leaves trainable."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from slarm_bench.clip import SLARM_CLASSES
from slarm_bench.errors import SlarmBenchError, check_name
from slarm_bench.losses import DEPTH_WEIGHT, VELOCITY_WEIGHT, LossWeights, storm_losses
from slarm_bench.losses_slarm import SlarmLossConfig, slarm_losses, slarm_render_targets
from slarm_bench.models.slarm_net import SLARM_PRESETS, SlarmConfig, SlarmNet, slarm_config
from slarm_bench.models.storm import context_inputs, gaussians_from_output, init_for_training, render_views
from slarm_bench.models.storm_net import STORM_PRESETS, StormConfig, StormNet, storm_config
from slarm_bench.train_data import WINDOW, TrainDataError, WindowDataset


class TrainError(SlarmBenchError):
    """Bad training options or an unusable output folder."""


class StormTrainStep(nn.Module):
    """Network + renderer + losses as one module, so DDP sees every parameter used in one forward."""

    def __init__(self, net: StormNet, backend: str, lpips_weight: float, time_span: float = 2.0,
                 bf16: bool = False, motion_weight: float = VELOCITY_WEIGHT,
                 depth_weight: float = DEPTH_WEIGHT) -> None:
        super().__init__()
        self.net, self.backend = net, backend
        self.weights = LossWeights(lpips=lpips_weight, velocity=motion_weight, depth=depth_weight)
        self.time_span, self.bf16 = time_span, bf16
        self.set_lpips(None)

    def summary(self) -> dict[str, Any]:
        return {"motion_weight": self.weights.velocity, "depth_weight": self.weights.depth}

    def set_lpips(self, fn: Any) -> None:
        """The frozen LPIPS network, kept out of the module tree (not in the state dict, not seen by DDP)."""
        object.__setattr__(self, "lpips_fn", fn)

    def forward(self, batch: dict[str, torch.Tensor], use_lpips: bool) -> dict[str, torch.Tensor]:
        net = self.net
        images = context_inputs(batch["ctx_images"])                   # [B,T,V,3,H,W]
        seconds = batch["ctx_time"]
        net_time = (seconds - seconds[:, :1]) / self.time_span
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = net(images, batch["ctx_c2w"], batch["ctx_k"], net_time)
        g = gaussians_from_output(out, seconds, net.cfg.static)
        size = tuple(batch["tgt_images"].shape[-3:-1])
        views = [render_views(net, g, out.sky_token, out.affine, batch["tgt_c2w"][:, j], batch["tgt_k"][:, j],
                              batch["tgt_time"][:, j], size, self.backend, check=False)
                 for j in range(batch["tgt_images"].shape[1])]
        pred = {k: torch.stack([v[k] for v in views], dim=1) for k in ("rgb", "depth", "alpha")}
        gt_rgb = batch["tgt_images"].float() / 255.0
        lpips_fn = self.lpips_fn if use_lpips else None
        return storm_losses(pred["rgb"], gt_rgb, pred["depth"], batch["tgt_depth"], pred["alpha"],
                            batch["tgt_sky"], batch["has_sky"], out.forward_flow, self.weights, lpips_fn)


class SlarmTrainStep(nn.Module):
    """SLARM network + renderer + losses: one forward of the context, one render per target timestep.

    Teacher: the [9,512] text embeddings of clip.SLARM_CLASSES are computed once (a non-persistent buffer);
    a pixel's target is the row of its label, looked up inside the loss on the device.
    """

    def __init__(self, net: SlarmNet, backend: str, lpips_weight: float, bf16: bool = False,
                 feature_targets: int | None = None, feature_balance: float = 0.0,
                 motion_weight: float = VELOCITY_WEIGHT, flow_weight: float = 0.0,
                 label_weight: float = 0.0, context_flow_weight: float = 0.0,
                 depth_weight: float = DEPTH_WEIGHT) -> None:
        super().__init__()
        from slarm_bench.text import default_encoder

        if feature_targets is not None and feature_targets < 1:
            raise TrainError(f"feature_targets must be at least 1 (or None for every target), got "
                             f"{feature_targets}")
        self.net, self.backend, self.bf16 = net, backend, bf16
        self.feature_targets = feature_targets
        # lpips_start=0: the loop decides when LPIPS starts (it passes lpips_fn from then on).
        self.loss_cfg = SlarmLossConfig(lpips=lpips_weight, lpips_start=0, feature_balance=feature_balance,
                                        motion=motion_weight, flow=flow_weight, label=label_weight,
                                        context_flow=context_flow_weight, depth=depth_weight)
        encoder = default_encoder()
        with torch.no_grad():
            table = encoder.encode(list(SLARM_CLASSES)).float()
        self.register_buffer("class_table", table, persistent=False)
        self.teacher = encoder.provenance()
        self.set_lpips(None)

    def set_lpips(self, fn: Any) -> None:
        object.__setattr__(self, "lpips_fn", fn)

    def summary(self) -> dict[str, Any]:
        return {"teacher": f"synthetic teacher: text embedding of the ground-truth class ({self.teacher})",
                "feature_targets": self.feature_targets or "all",
                "feature_balance": self.loss_cfg.feature_balance, "motion_weight": self.loss_cfg.motion,
                "depth_weight": self.loss_cfg.depth,
                "flow_weight": self.loss_cfg.flow, "label_weight": self.loss_cfg.label,
                "context_flow_weight": self.loss_cfg.context_flow}

    def forward(self, batch: dict[str, torch.Tensor], use_lpips: bool) -> dict[str, torch.Tensor]:
        net = self.net
        images = context_inputs(batch["ctx_images"])                   # [B,T,V,3,H,W]
        seconds = batch["ctx_time"]
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            net_time = (seconds - seconds[:, :1]) / net.cfg.time_span
            out = net(images, batch["ctx_c2w"], batch["ctx_k"], net_time)
        num_targets = batch["tgt_images"].shape[1]
        # Language features are rendered (64 more channels through the rasteriser, decoded to 512 per pixel)
        # for the first `feature_targets` target timesteps only: most of a step's time and memory otherwise.
        # The targets are drawn at random per sample, so this is an unbiased subsample of the feature loss.
        with_features = min(num_targets, self.feature_targets or num_targets)
        # Flow is rendered only when it is supervised (an off-reference option: SLARM has no flow loss).
        flow = self.loss_cfg.flow > 0
        fps = float(batch["fps"][0]) if flow else None
        views = [slarm_render_targets(net, out, seconds, batch["tgt_c2w"][:, j], batch["tgt_k"][:, j],
                                      batch["tgt_time"][:, j], fps, backend=self.backend, flow=flow,
                                      features=j < with_features)
                 for j in range(num_targets)]
        # Targets stacked as extra views: [B,S,V,...] -> [B,S*V,...].
        pred = {k: torch.stack([v[k] for v in views], dim=1).flatten(1, 2) for k in ("rgb", "depth", "alpha")}
        pred["features"] = torch.stack([v["features"] for v in views[:with_features]], dim=1).flatten(1, 2)
        pred["motion"] = views[0]["motion"]
        if flow:
            pred["flow"] = torch.stack([v["flow"] for v in views], dim=1).flatten(1, 2)
        gt = {"rgb": batch["tgt_images"].float().flatten(1, 2) / 255.0,
              "depth": batch["tgt_depth"].flatten(1, 2),
              "teacher_labels": batch["tgt_semantic"][:, :with_features].long().flatten(1, 2),
              "teacher_table": self.class_table}
        if flow:
            gt["flow"], gt["flow_valid"] = batch["tgt_flow"].flatten(1, 2), batch["tgt_flow_valid"].flatten(1, 2)
        if self.loss_cfg.context_flow:
            pred["context_velocity"] = out.motion[..., 0, :]
            gt["context_flow"], gt["context_flow_valid"] = batch["ctx_flow"], batch["ctx_flow_valid"]
        # The sky term needs a mask on every sample (one dataset per run: all or none have one).
        if bool(batch["has_sky"].all()):
            gt["sky"] = batch["tgt_sky"].flatten(1, 2)
        terms = slarm_losses(pred, gt, self.loss_cfg, 0, self.lpips_fn if use_lpips else None)
        terms["loss"] = terms.pop("total")
        with torch.no_grad():
            mse = (pred["rgb"].detach().clamp(0, 1) - gt["rgb"]).pow(2).mean()
            terms["psnr"] = -10.0 * torch.log10(mse.clamp_min(1e-10))
        return terms


class SemanticWindowDataset(WindowDataset):
    """WindowDataset samples plus tgt_semantic uint8 [S,V,H,W] (indices into clip.SLARM_CLASSES, 255 =
    unlabelled): the teacher labels of the SLARM feature loss."""

    def _window(self, index: int):
        if self.on_the_fly:
            clip = super()._window(index)
        else:
            if self._store is None:
                from slarm_bench.store import Store

                self._store = Store(self.data_root)
            scene, start = self.windows[index]
            frames = list(range(start, start + WINDOW))
            clip = self._store.read_window(self.dataset, self.split, scene, frames,
                                           fields=[*self._fields(scene), "semantic"])
        if clip.semantic is None:
            raise TrainDataError(f"{self.dataset}/{self.split} scene {clip.meta.get('scene')} has no "
                                 f"semantic labels; SLARM trains its language features from them: use a "
                                 f"labelled dataset")
        if tuple(clip.meta["label_names"]) != tuple(SLARM_CLASSES):
            raise TrainDataError(f"{self.dataset} labels {clip.meta['label_names']} are not SLARM's classes "
                                 f"{list(SLARM_CLASSES)}; prepare the data with SLARM's label set")
        self._last_clip = clip
        return clip

    def __getitem__(self, item: tuple[int, int]) -> dict[str, np.ndarray]:
        sample = super().__getitem__(item)
        clip = self._last_clip
        # The targets are the frames whose times the parent picked (its choice is seeded by the sample).
        times = clip.time.astype(np.float32)
        targets = [int(np.argmin(np.abs(times - t))) for t in sample["tgt_time"]]
        sample["tgt_semantic"] = clip.semantic[targets]
        return sample


@dataclasses.dataclass(frozen=True)
class Family:
    """How one model family plugs into the loop."""

    config_type: type
    preset: Callable[[str], Any]
    build: Callable[..., nn.Module]       # (config, **init options) -> network initialised for training
    step: Callable[..., nn.Module]    # (net, backend, lpips_weight, bf16, motion_weight=...) -> train step
    dataset: type


def _storm_step(net: StormNet, backend: str, lpips_weight: float, bf16: bool,
                motion_weight: float = VELOCITY_WEIGHT, depth_weight: float = DEPTH_WEIGHT) -> StormTrainStep:
    return StormTrainStep(net, backend, lpips_weight, bf16=bf16, motion_weight=motion_weight,
                          depth_weight=depth_weight)


FAMILIES: dict[str, Family] = {
    "storm": Family(StormConfig, storm_config, lambda cfg, **init: init_for_training(StormNet(cfg), **init),
                    _storm_step,
                    WindowDataset),
    "slarm": Family(SlarmConfig, slarm_config, SlarmNet, SlarmTrainStep, SemanticWindowDataset),
}


# What `train_only` leaves trainable per family (every other parameter is frozen); None = everything.
TRAINABLE: dict[str, dict[str, tuple[str, ...] | None]] = {
    "storm": {"all": None},
    "slarm": {"all": None, "features": ("feature_pred.", "feature_decoder.")},
}


def check_train_only(family: str, train_only: str) -> None:
    if train_only not in TRAINABLE[family]:
        raise TrainError(f"train_only={train_only!r} does not apply to the {family} presets; choose one of "
                         f"{', '.join(TRAINABLE[family])}")


def freeze_except(net: nn.Module, family: str, train_only: str) -> int:
    """Freeze every parameter outside `TRAINABLE[family][train_only]`; returns how many stay trainable."""
    check_train_only(family, train_only)
    prefixes = TRAINABLE[family][train_only]
    for name, p in net.named_parameters():
        p.requires_grad_(prefixes is None or name.startswith(prefixes))
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def model_family(model: str) -> str:
    """The family ("storm" or "slarm") of a trainable preset; an unknown name raises, naming the choices."""
    if model in SLARM_PRESETS:
        return "slarm"
    check_name("training preset", model, [*STORM_PRESETS, *SLARM_PRESETS])
    return "storm"
