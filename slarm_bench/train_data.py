"""Training samples for STORM-style models: 20-frame windows of prepared sequences.

Each sample is one window: context frames {0,5,10,15} (all cameras) and `num_targets` supervision timesteps
drawn at random from the whole window (context and non-context frames alike, as STORM does), all cameras.
Order and randomness are a pure function of (seed, global sample position): the index stream walks a fresh
permutation of all windows each epoch, step s of rank r takes positions
[(s * world + r) * batch, ... + batch), and each sample's target frames come from a generator seeded by
(seed, position). So any rank count, worker count or resume point sees the same data for the same step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from slarm_bench.errors import SlarmBenchError

WINDOW = 20
CONTEXT = (0, 5, 10, 15)


class TrainDataError(SlarmBenchError):
    """No training data, or data that does not fit the model."""


def prepare_hint(dataset: str, split: str) -> str:
    return f"run `slarm-bench prepare {dataset} --split {split} --scenes N --workers K` first"


class WindowDataset(Dataset):
    """(window index, sample seed) -> dict of numpy arrays (collated to tensors by the DataLoader).

    ctx_images uint8 [T,V,H,W,3], ctx_c2w [T,V,4,4], ctx_k [T,V,3,3], ctx_time [T] (s since window start);
    tgt_images uint8 [S,V,H,W,3], tgt_c2w, tgt_k, tgt_time [S], tgt_depth [S,V,H,W] (0 = no lidar),
    tgt_sky [S,V,H,W] bool (all False where the dataset has no sky mask; `has_sky` says which).
    with_flow=True adds tgt_flow float32 [S,V,H,W,3] (world-frame m/s of the surface at each pixel, 0 where
    invalid), tgt_flow_valid [S,V,H,W] bool (the clip's flow validity: depth > 0, or depth_dense > 0 where
    meta["flow_dense"]) and fps (the frame rate, for the rendered backward-difference flow);
    with_context_flow=True the same at the context frames: ctx_flow [T,V,H,W,3], ctx_flow_valid [T,V,H,W].
    """

    def __init__(self, dataset: str = "synthetic", split: str = "train", data_root: Any = None,
                 image_size: tuple[int, int] | None = None, num_targets: int = 4,
                 generate_on_the_fly: bool = False, max_scenes: int | None = None,
                 with_flow: bool = False, with_context_flow: bool = False) -> None:
        self.dataset, self.split, self.data_root = dataset, split, data_root
        self.with_flow, self.with_context_flow = bool(with_flow), bool(with_context_flow)
        self.num_targets = int(num_targets)
        self.on_the_fly = generate_on_the_fly
        self.image_size = tuple(image_size) if image_size else None
        self._store = None
        if generate_on_the_fly:
            if dataset != "synthetic":
                raise TrainDataError(f"generate_on_the_fly works for the synthetic dataset only, not "
                                     f"{dataset!r}")
            from slarm_bench.data.synthetic import SPLIT_SIZES

            n = SPLIT_SIZES[split] if max_scenes is None else min(max_scenes, SPLIT_SIZES[split])
            self.windows = [(f"{split}-{i:05d}", 0) for i in range(n)]
            return
        from slarm_bench.store import Store

        store = Store(data_root)
        scenes = []
        if store.root.is_dir() and dataset in store.datasets() and split in store.splits(dataset):
            scenes = store.scenes(dataset, split)
        if max_scenes is not None:
            scenes = scenes[:max_scenes]
        if not scenes:
            raise TrainDataError(f"no prepared {dataset}/{split} scenes in the store at {store.root}; "
                                 f"{prepare_hint(dataset, split)}")
        self.windows = []
        for scene in scenes:
            self.windows += [(scene, s) for s in range(store.num_frames(dataset, split, scene) - WINDOW + 1)]
        if not self.windows:
            raise TrainDataError(f"the {dataset}/{split} scenes at {store.root} are shorter than {WINDOW} "
                                 f"frames; prepare them with at least {WINDOW} frames")
        if (with_flow or with_context_flow) and "flow" not in store.info(dataset, split, scenes[0])["fields"]:
            raise TrainDataError(f"the prepared {dataset}/{split} scenes have no scene flow; flow supervision "
                                 f"needs a dataset with flow labels (synthetic, Waymo's scene-flow release)")
        if self.image_size is not None:
            first = store.read_window(dataset, split, scenes[0], [0], fields=[])
            if first.image_size != self.image_size:
                raise TrainDataError(f"the prepared {dataset}/{split} images are {first.image_size[0]}x"
                                     f"{first.image_size[1]} but the model trains at {self.image_size[0]}x"
                                     f"{self.image_size[1]}; prepare the data at that size or pick a model "
                                     f"config with image_size {list(first.image_size)}")

    def __len__(self) -> int:
        return len(self.windows)

    def _fields(self, scene: str) -> list[str]:
        """The per-pixel fields a sample reads from the store (besides images)."""
        fields = ["depth", "sky"]
        if self.with_flow or self.with_context_flow:
            info = self._store.info(self.dataset, self.split, scene)
            dense = info["meta"].get("flow_dense") and "depth_dense" in info["fields"]
            fields += ["flow", *(["depth_dense"] if dense else [])]
        return fields

    def _window(self, index: int):
        scene, start = self.windows[index]
        frames = list(range(start, start + WINDOW))
        if self.on_the_fly:
            from slarm_bench.clip import Clip
            from slarm_bench.data.synthetic import generate_sequence, split_seed

            h, w = self.image_size or (160, 240)
            seq = generate_sequence(split_seed(self.split, int(scene.rsplit("-", 1)[1])), h, w, WINDOW,
                                    scene=scene)
            return Clip.from_sequence_window(seq, list(range(WINDOW)))
        if self._store is None:  # one per worker process: the Store caches manifests
            from slarm_bench.store import Store

            self._store = Store(self.data_root)
        return self._store.read_window(self.dataset, self.split, scene, frames, fields=self._fields(scene))

    def __getitem__(self, item: tuple[int, int]) -> dict[str, np.ndarray]:
        index, sample_seed = item
        clip = self._window(int(index))
        rng = np.random.default_rng(int(sample_seed))
        targets = np.sort(rng.choice(WINDOW, size=self.num_targets, replace=False))
        ctx, tgt = list(CONTEXT), targets.tolist()
        t, v, h, w = clip.images.shape[:4]
        depth = clip.depth if clip.depth is not None else np.zeros((t, v, h, w), np.float32)
        sky = clip.sky if clip.sky is not None else np.zeros((t, v, h, w), bool)
        extra = {**(self._flow_labels(clip, tgt, "tgt") if self.with_flow else {}),
                 **(self._flow_labels(clip, ctx, "ctx") if self.with_context_flow else {})}
        return {**extra,
            "ctx_images": clip.images[ctx], "ctx_c2w": clip.cam_to_world[ctx].astype(np.float32),
            "ctx_k": clip.intrinsics[ctx].astype(np.float32), "ctx_time": clip.time[ctx].astype(np.float32),
            "tgt_images": clip.images[tgt], "tgt_c2w": clip.cam_to_world[tgt].astype(np.float32),
            "tgt_k": clip.intrinsics[tgt].astype(np.float32), "tgt_time": clip.time[tgt].astype(np.float32),
            "tgt_depth": depth[tgt].astype(np.float32), "tgt_sky": sky[tgt],
            "has_sky": np.asarray(clip.sky is not None),
        }

    @staticmethod
    def _flow_labels(clip, frames: list[int], prefix: str) -> dict[str, np.ndarray]:
        if clip.flow is None:
            raise TrainDataError(f"{clip.meta.get('scene')} has no scene flow; flow supervision needs flow "
                                 f"labels")
        dense = clip.meta.get("flow_dense") and clip.depth_dense is not None
        depth = (clip.depth_dense if dense else clip.depth)[frames]
        flow = clip.flow[frames].astype(np.float32)
        valid = (depth > 0) & np.isfinite(flow).all(-1)
        return {f"{prefix}_flow": np.where(valid[..., None], flow, 0.0).astype(np.float32),
                f"{prefix}_flow_valid": valid, "fps": np.float32(clip.meta["fps"])}


class StepBatchSampler(Sampler):
    """Infinite batches of (window index, sample seed) for one rank, starting at `start_step`."""

    def __init__(self, num_windows: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_step: int = 0) -> None:
        self.n, self.batch, self.seed = num_windows, batch_size, seed
        self.rank, self.world, self.start_step = rank, world_size, start_step
        self._perm: tuple[int, np.ndarray] | None = None

    def _at(self, position: int) -> int:
        epoch = position // self.n
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return int(self._perm[1][position % self.n])

    def batch_at(self, step: int) -> list[tuple[int, int]]:
        first = (step * self.world + self.rank) * self.batch
        return [(self._at(p), int(np.random.default_rng([self.seed, 1, p]).integers(2 ** 62)))
                for p in range(first, first + self.batch)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch_at(step)
            step += 1

    def __len__(self) -> int:  # DataLoader asks; the stream is unbounded
        return 2 ** 31


def seed_worker(seed: int, rank: int, worker_id: int) -> None:
    """DataLoader worker_init_fn (bind seed and rank with functools.partial): seeds numpy and torch per
    (seed, rank, worker) for any library randomness; the samples themselves carry their own seeds."""
    s = int(np.random.default_rng([seed, rank, worker_id]).integers(2 ** 31))
    np.random.seed(s)
    torch.manual_seed(s)
