"""Training loop on a tiny synthetic store: finite losses, outputs, resume, determinism, DDP (gloo)."""

from __future__ import annotations

import csv
import dataclasses
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from slarm_bench.data.synthetic import generate_sequence
from slarm_bench.errors import SlarmBenchError
from slarm_bench.models.storm_net import storm_config
from slarm_bench.store import Store
from slarm_bench.train import lr_factor, train
from slarm_bench.train_data import StepBatchSampler, TrainDataError

H, W = 16, 24
CFG = dataclasses.replace(storm_config("storm-t"), embed_dim=32, depth=1, num_heads=2, image_size=(H, W),
                          upsample_channels=(16, 8, 8), sky_hidden=16, motion_hidden=16, motion_dim=8,
                          num_motion_tokens=4)


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    store = Store(root)
    for i in range(2):
        store.write(generate_sequence(i, height=H, width=W, num_frames=21, scene=f"train-{i:05d}"), "train")
    return root


def options(root: Path, out: Path, steps: int, **kw) -> dict:
    return dict(model="storm-t", out_dir=out, steps=steps, batch_size=1, warmup=1, ckpt_every=1,
                num_workers=0, log_every=1, data_root=root, config=CFG, num_targets=1, backend="torch",
                lpips_start=10 ** 6, quiet=True, **kw)


def losses(out: Path) -> list[tuple[int, float, float]]:
    with open(out / "train_log.csv", newline="") as f:
        return [(int(r["step"]), float(r["loss"]), float(r["psnr"])) for r in csv.DictReader(f)]


def test_train_resume_and_determinism(store_root, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    full = train(**options(store_root, a, 3))
    assert full["step"] == 2
    for name in ("train_log.csv", "train_curve.png", "storm-t.safetensors", "storm-t.json",
                 "storm-t.train.json",
                 "checkpoints/step_00000002.safetensors", "checkpoints/step_00000002.optim.pt"):
        assert (a / name).is_file(), name
    log_a = losses(a)
    assert [s for s, _, _ in log_a] == [0, 1, 2]
    assert all(torch.isfinite(torch.tensor([l, p])).all() for _, l, p in log_a)

    # Two steps, then a second call that resumes at step 2: the same log and weights as the single run.
    train(**options(store_root, b, 3, stop_after=1))
    assert [s for s, _, _ in losses(b)] == [0, 1]
    resumed = train(**options(store_root, b, 3))
    assert losses(b) == log_a
    assert resumed["param_digest"] == full["param_digest"]
    assert resumed["sha256"] == full["sha256"]
    # Everything done: a third call trains nothing and leaves the log alone.
    train(**options(store_root, b, 3))
    assert losses(b) == log_a


def test_missing_store_says_how_to_prepare(tmp_path):
    with pytest.raises(TrainDataError, match="slarm-bench prepare synthetic --split train"):
        train(**options(tmp_path / "empty", tmp_path / "out", 1))


def test_sampler_shards_ranks_disjointly_and_resumes():
    one = StepBatchSampler(10, 2, seed=0, world_size=1)
    r0, r1 = (StepBatchSampler(10, 1, seed=0, rank=r, world_size=2) for r in (0, 1))
    for step in range(6):
        assert [i for i, _ in one.batch_at(step)] == [r0.batch_at(step)[0][0], r1.batch_at(step)[0][0]]
    later = StepBatchSampler(10, 2, seed=0, start_step=4)
    assert next(iter(later)) == one.batch_at(4)
    assert lr_factor(0, 10, 100) == pytest.approx(0.1) and lr_factor(100, 10, 100) == pytest.approx(0.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, root: str, out: str, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    res = train(**options(Path(root), Path(out), 2, device="cpu"))
    Path(result_dir, f"rank{rank}.txt").write_text(res["param_digest"])
    import torch.distributed as dist

    dist.destroy_process_group()


def test_ddp_gloo_two_ranks_keep_identical_parameters(store_root, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(store_root), str(tmp_path / "ddp"), str(tmp_path)),
             nprocs=2, join=True)
    d0, d1 = ((tmp_path / f"rank{r}.txt").read_text() for r in (0, 1))
    assert d0 == d1
    assert [s for s, _, _ in losses(tmp_path / "ddp")] == [0, 1]
    assert (tmp_path / "ddp" / "storm-t.safetensors").is_file()


SLARM_CFG = dict(embed_dim=32, depth=1, num_heads=2, sky_hidden=16)


def test_slarm_training_exports_a_checkpoint_slarm_model_loads(store_root, tmp_path):
    from slarm_bench.clip import SLARM_CLASSES
    from slarm_bench.models.slarm import SlarmModel
    from slarm_bench.models.slarm_net import slarm_config

    cfg = slarm_config("slarm-t-o1", **SLARM_CFG, image_size=(H, W), decoder_hidden=(16, 32))
    out = tmp_path / "slarm"
    res = train(**{**options(store_root, out, 2, device="cpu"), "model": "slarm-t-o1", "config": cfg})
    assert res["step"] == 1 and res["export"].endswith("slarm-t-o1.safetensors")
    rows = list(csv.DictReader(open(out / "train_log.csv", newline="")))
    assert [int(r["step"]) for r in rows] == [0, 1]
    for r in rows:  # every SLARM term was computed (the feature term from the semantic labels)
        assert all(torch.isfinite(torch.tensor(float(r[k]))) for k in ("loss", "rgb", "depth", "motion",
                                                                        "feature", "psnr")), r
    model = SlarmModel(checkpoint=str(out / "slarm-t-o1"), device="cpu", backend="torch")
    assert model.cfg == cfg and model.checkpoint_sha256() == res["sha256"]
    store = Store(store_root)
    clip = store.read_window("synthetic", "train", "train-00000", [0, 5, 10, 15])
    scene = model.reconstruct(clip)
    pred = model.render(scene, clip.cam_to_world[-1], clip.intrinsics[-1], float(clip.time[-1]), (H, W))
    assert pred.rgb.shape == (3, H, W, 3) and torch.isfinite(pred.rgb).all()
    assert int(pred.semantic.max()) < len(SLARM_CLASSES)
    # Resuming that folder with another architecture is refused, naming the fix.
    with pytest.raises(Exception, match="another configuration"):
        train(**{**options(store_root, out, 3, device="cpu"), "model": "slarm-t-o1",
                 "config": slarm_config("slarm-t-o1", **{**SLARM_CFG, "image_size": (H, W), "embed_dim": 16,
                                                         "decoder_hidden": (16, 32)})})


def test_tiny_presets_fit_the_export_budget():
    from slarm_bench.models.slarm_net import SlarmNet, slarm_config
    from slarm_bench.models.storm_net import StormNet

    def count(net):
        return sum(p.numel() for p in net.parameters())

    for name in ("storm-t", "static-t"):
        cfg = storm_config(name)
        assert count(StormNet(cfg)) <= 7_000_000 and cfg.pixel_shift == 0.0, name
    assert storm_config("storm-b8").pixel_shift == 0.5
    for name in ("slarm-t", "slarm-t-o1", "slarm-t-o2"):
        assert count(SlarmNet(slarm_config(name))) < 7_500_000, name


def test_slarm_feature_targets_subsample_the_feature_loss_only(store_root):
    """feature_targets=1 distils features on the first target timestep only: its feature term equals the
    term of the same batch cut to that target, while the RGB term still covers every target."""
    from slarm_bench.models.slarm_net import SlarmNet, slarm_config
    from slarm_bench.train_family import SemanticWindowDataset, SlarmTrainStep, TrainError

    torch.manual_seed(0)
    cfg = slarm_config("slarm-t-o1", **SLARM_CFG, image_size=(H, W), decoder_hidden=(16, 32))
    net = SlarmNet(cfg).eval()
    data = SemanticWindowDataset("synthetic", "train", store_root, (H, W), 2, False, None)
    batch = {k: torch.as_tensor(v)[None] for k, v in data[(0, 7)].items()}
    first = {k: (v[:, :1] if k.startswith("tgt_") else v) for k, v in batch.items()}
    with torch.no_grad():
        one = SlarmTrainStep(net, "torch", 0.0, feature_targets=1)(batch, False)
        every = SlarmTrainStep(net, "torch", 0.0)(batch, False)
        cut = SlarmTrainStep(net, "torch", 0.0)(first, False)
    assert torch.allclose(one["feature"], cut["feature"], rtol=1e-5)
    assert not torch.allclose(one["feature"], every["feature"], rtol=1e-5)
    assert torch.allclose(one["rgb"], every["rgb"], rtol=1e-5)
    with pytest.raises(TrainError, match="feature_targets"):
        SlarmTrainStep(net, "torch", 0.0, feature_targets=0)


def test_feature_fine_tune_changes_only_the_feature_head(store_root, tmp_path):
    """init_from + train_only="features": the export equals init_from bit for bit outside the feature head
    and decoder, those do change, and the summary names the starting checkpoint."""
    import json

    from safetensors.torch import load_file

    from slarm_bench.models.slarm_net import slarm_config

    cfg = slarm_config("slarm-t-o1", **SLARM_CFG, image_size=(H, W), decoder_hidden=(16, 32))
    base = train(**{**options(store_root, tmp_path / "base", 1, device="cpu"), "model": "slarm-t-o1",
                    "config": cfg})
    tuned = train(**{**options(store_root, tmp_path / "tuned", 3, device="cpu"), "model": "slarm-t-o1",
                     "config": cfg, "init_from": base["export"], "train_only": "features",
                     "feature_targets": None, "feature_balance": 0.5, "lr": 1e-2})
    before, after = load_file(base["export"]), load_file(tuned["export"])
    assert before.keys() == after.keys()
    head = ("feature_pred.", "feature_decoder.")
    for key in before:
        same = torch.equal(before[key], after[key])
        assert same != key.startswith(head), key
    summary = json.loads((tmp_path / "tuned" / "slarm-t-o1.train.json").read_text())
    assert summary["init_sha256"] == base["sha256"] and summary["train_only"] == "features"
    assert summary["feature_balance"] == 0.5 and summary["feature_targets"] == "all"
    with pytest.raises(SlarmBenchError, match="does not exist"):
        train(**{**options(store_root, tmp_path / "x", 1, device="cpu"), "model": "slarm-t-o1", "config": cfg,
                 "init_from": tmp_path / "missing.safetensors"})
    with pytest.raises(SlarmBenchError, match="train_only"):
        train(**{**options(store_root, tmp_path / "y", 1, device="cpu"), "train_only": "features"})
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()   # refused before writing


def test_class_balance_weights_give_each_present_class_the_same_total():
    from slarm_bench.losses_slarm import class_balance_weights

    labels = torch.tensor([0] * 90 + [3] * 9 + [5])
    w = class_balance_weights(labels, 9, 1.0)
    assert torch.allclose(w.mean(), torch.tensor(1.0))
    totals = torch.stack([w[labels == c].sum() for c in (0, 3, 5)])
    assert torch.allclose(totals, totals[0].expand(3), rtol=1e-5)
    assert torch.allclose(class_balance_weights(labels, 9, 0.0), torch.ones(100))
    half = class_balance_weights(labels, 9, 0.5)
    assert half[-1] / half[0] == pytest.approx(90 ** 0.5, rel=1e-5)


def test_cli_set_overrides_the_preset_configuration(store_root, tmp_path):
    """`python -m slarm_bench.train ... --set FIELD=VALUE` trains the preset with those fields changed (here
    a tiny slarm-t with another speed_shift); the export records them and a typo names the field."""
    import json

    from slarm_bench.models.slarm_net import SPEED_SHIFT, SlarmNet, slarm_config
    from slarm_bench.train import main

    out = tmp_path / "set"
    common = ["slarm-t", "--out-dir", str(out), "--data-root", str(store_root), "--steps", "1", "--batch-size", "1",
              "--num-workers", "0", "--num-targets", "1", "--backend", "torch", "--device", "cpu", "--warmup", "1",
              "--set", "image_size=[16,24]", "--set", "embed_dim=16", "--set", "num_heads=2", "--set", "depth=1",
              "--set", "decoder_hidden=[8,8]", "--set", "sky_hidden=8"]
    main([*common, "--set", "speed_shift=4.6"])
    cfg = json.loads((out / "slarm-t.json").read_text())
    assert cfg["config"]["speed_shift"] == 4.6
    # the field drives the speed at zero raw output: 100 sigmoid(-shift)
    torch.manual_seed(0)
    net = SlarmNet(slarm_config("slarm-t", image_size=(16, 24), embed_dim=16, num_heads=2, depth=1,
                                speed_shift=4.6))
    assert net.cfg.speed_shift == 4.6 and slarm_config("slarm-t").speed_shift == SPEED_SHIFT
    with pytest.raises(SlarmBenchError, match="unknown fields"):
        main([*common, "--set", "sped_shift=4.6"])


def _tiny_step_inputs(store_root, model: str):
    """(tiny eval-mode network, its train-step class, one batched sample, its config) for storm-t or a SLARM
    preset, for tests that compare one loss term under two weights."""
    from slarm_bench.models.slarm_net import SlarmNet, slarm_config
    from slarm_bench.models.storm import init_for_training
    from slarm_bench.models.storm_net import StormNet
    from slarm_bench.train_data import WindowDataset
    from slarm_bench.train_family import SemanticWindowDataset, SlarmTrainStep, StormTrainStep

    torch.manual_seed(0)
    if model == "storm-t":
        net, make, dataset, cfg = init_for_training(StormNet(CFG)).eval(), StormTrainStep, WindowDataset, CFG
    else:
        cfg = slarm_config(model, **SLARM_CFG, image_size=(H, W), decoder_hidden=(16, 32))
        net, make, dataset = SlarmNet(cfg).eval(), SlarmTrainStep, SemanticWindowDataset
    data = dataset("synthetic", "train", store_root, (H, W), 1, False, None)
    batch = {k: torch.as_tensor(v)[None] for k, v in data[(0, 3)].items()}
    return net, make, batch, cfg


@pytest.mark.parametrize("model", ["storm-t", "slarm-t-o1"])
def test_motion_weight_scales_the_motion_regulariser_only(store_root, tmp_path, model):
    """motion_weight sets the regulariser's weight: the logged motion term is weight x mean(m^2), so with
    the same weights and batch the weighted terms differ by the ratio of the weights and nothing else
    changes; the export records the weight; a negative weight is refused before anything is written."""
    import json

    from slarm_bench.losses import VELOCITY_WEIGHT

    net, make, batch, cfg = _tiny_step_inputs(store_root, model)
    key = "velocity" if model == "storm-t" else "motion"
    with torch.no_grad():
        ref = make(net, "torch", 0.0)(batch, False)
        low = make(net, "torch", 0.0, motion_weight=VELOCITY_WEIGHT / 100)(batch, False)
    if key == "velocity":  # STORM logs the unweighted mean(v^2); SLARM logs the weighted term
        assert torch.allclose(low[key], ref[key])
        weighted = ref[key] * VELOCITY_WEIGHT * 0.99
    else:
        assert torch.allclose(low[key] * 100, ref[key], rtol=1e-5)
        weighted = ref[key] * 0.99
    assert float(ref[key]) > 0
    assert torch.allclose(ref["loss"].double() - low["loss"].double(), weighted.double(), rtol=0.05, atol=1e-6)
    for term in set(ref) - {key, "loss"}:
        assert torch.equal(low[term], ref[term]), term
    train(**{**options(store_root, tmp_path / "w", 1, device="cpu"), "model": model, "config": cfg,
             "motion_weight": 1e-5})
    assert json.loads((tmp_path / "w" / f"{model}.train.json").read_text())["motion_weight"] == 1e-5
    with pytest.raises(SlarmBenchError, match="motion_weight"):
        train(**{**options(store_root, tmp_path / "bad", 1, device="cpu"), "model": model, "config": cfg,
                 "motion_weight": -1.0})
    assert not (tmp_path / "bad").exists()


def _tiny_slarm_and_sample(store_root, **flow_options: bool):
    """(config, network in eval mode, one 2-target sample) of a tiny order-1 SLARM on the fixture store."""
    from slarm_bench.models.slarm_net import SlarmNet, slarm_config
    from slarm_bench.train_family import SemanticWindowDataset

    torch.manual_seed(0)
    cfg = slarm_config("slarm-t-o1", **SLARM_CFG, image_size=(H, W), decoder_hidden=(16, 32))
    data = SemanticWindowDataset("synthetic", "train", store_root, (H, W), 2, False, None, **flow_options)
    return cfg, SlarmNet(cfg).eval(), data[(0, 5)]


def _check_slarm_only_loss_weight(store_root, tmp_path, cfg, name: str) -> None:
    """A SLARM training with `name`=0.5 records it in the export's train.json; a STORM preset refuses it
    before anything is written."""
    import json

    out = tmp_path / name
    train(**{**options(store_root, out, 1, device="cpu"), "model": "slarm-t-o1", "config": cfg, name: 0.5})
    assert json.loads((out / "slarm-t-o1.train.json").read_text())[name] == 0.5
    with pytest.raises(SlarmBenchError, match="SLARM presets only"):
        train(**{**options(store_root, tmp_path / "storm", 1, device="cpu"), name: 0.5})
    assert not (tmp_path / "storm").exists()


def _check_only_term_changes(net, batch, option: str, term: str) -> dict:
    """The SLARM train step with option=1 adds `term` (> 0), twice that with option=2, and leaves every
    other term as it is without the option. Returns the terms at option=1."""
    from slarm_bench.train_family import SlarmTrainStep

    with torch.no_grad():
        plain = SlarmTrainStep(net, "torch", 0.0)(batch, False)
        one = SlarmTrainStep(net, "torch", 0.0, **{option: 1.0})(batch, False)
        two = SlarmTrainStep(net, "torch", 0.0, **{option: 2.0})(batch, False)
    assert term not in plain and float(one[term]) > 0
    assert torch.allclose(two[term], 2 * one[term], rtol=1e-5)
    for key in set(plain) - {"loss"}:
        assert torch.equal(plain[key], one[key]), key
    return one


def test_flow_supervision_adds_an_l1_flow_term_on_labelled_pixels(store_root, tmp_path):
    """flow_weight > 0 (SLARM): samples carry the target flow labels, the rendered flow is compared with
    them (L1 on valid pixels, scaled by the weight, nothing else changes), the export records the weight;
    STORM presets refuse it and a store without flow says so."""


    cfg, net, sample = _tiny_slarm_and_sample(store_root, with_flow=True)
    assert "ctx_flow" not in sample and sample["tgt_flow"].shape == (2, 3, H, W, 3) and sample["tgt_flow_valid"].any()
    assert not sample["tgt_flow"][~sample["tgt_flow_valid"]].any() and float(sample["fps"]) == 10.0
    batch = {k: torch.as_tensor(v)[None] for k, v in sample.items()}
    _check_only_term_changes(net, batch, "flow_weight", "flow")
    # the loss term itself: weight x mean over labelled pixels of the L1 error (m/s)
    from slarm_bench.losses_slarm import SlarmLossConfig, slarm_losses

    pred = {"rgb": torch.zeros(1, 1, 2, 2, 3), "depth": torch.ones(1, 1, 2, 2), "alpha": torch.ones(1, 1, 2, 2),
            "motion": torch.zeros(1, 4, 1, 3), "flow": torch.zeros(1, 1, 2, 2, 3)}
    gt_flow = torch.tensor([[1.0, -2.0, 0.0], [3.0, 0.0, 0.0], [9.0, 9.0, 9.0], [0.0, 0.0, 0.0]])
    gt = {"rgb": torch.zeros(1, 1, 2, 2, 3), "flow": gt_flow.reshape(1, 1, 2, 2, 3),
          "flow_valid": torch.tensor([True, True, False, True]).reshape(1, 1, 2, 2)}
    assert slarm_losses(pred, gt, SlarmLossConfig(flow=0.5))["flow"].item() == pytest.approx(0.5 * (3 + 3 + 0) / 3)
    assert "flow" not in slarm_losses(pred, gt, SlarmLossConfig())
    _check_slarm_only_loss_weight(store_root, tmp_path, cfg, "flow_weight")


def test_label_fine_tune_adds_the_query_cross_entropy_only(store_root, tmp_path):
    """label_weight > 0 (SLARM): the loss gains weight x cross-entropy of the query rule's logits (feature .
    class text / QUERY_TEMPERATURE) on labelled pixels, nothing else changes, the export records the weight;
    STORM presets refuse it before anything is written."""
    from slarm_bench.losses_slarm import SlarmLossConfig, slarm_losses
    from slarm_bench.metrics.semantic import QUERY_TEMPERATURE

    # the term itself on a hand-made case: two labelled pixels, one unlabelled, two classes
    table = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]).reshape(1, 1, 1, 3, 2)
    labels = torch.tensor([0, 255, 1]).reshape(1, 1, 1, 3)
    pred = {"rgb": torch.zeros(1, 1, 1, 3, 3), "depth": torch.ones(1, 1, 1, 3), "alpha": torch.ones(1, 1, 1, 3),
            "motion": torch.zeros(1, 4, 1, 3), "features": feats}
    gt = {"rgb": torch.zeros(1, 1, 1, 3, 3), "teacher_labels": labels, "teacher_table": table}
    logits = torch.tensor([[1.0, 0.6], [0.6, 1.0]]) / QUERY_TEMPERATURE
    expected = -torch.log_softmax(logits, -1).diagonal().mean()
    terms = slarm_losses(pred, gt, SlarmLossConfig(label=0.5))
    assert terms["label"].item() == pytest.approx(0.5 * expected.item(), rel=1e-5)
    assert "label" not in slarm_losses(pred, gt, SlarmLossConfig())
    # feature_balance weights it per class like the distillation: classes 0, 0, 1 -> n^-1 = 1/2, 1/2, 1
    feats3 = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]]).reshape(1, 1, 1, 3, 2)
    labels3 = torch.tensor([0, 0, 1]).reshape(1, 1, 1, 3)
    ce = F.cross_entropy(torch.tensor([[1.0, 0.6], [0.8, 0.96], [0.6, 1.0]]) / QUERY_TEMPERATURE,
                         torch.tensor([0, 0, 1]), reduction="none")
    weighted = (ce * torch.tensor([0.5, 0.5, 1.0]) / (2 / 3)).mean()
    balanced = slarm_losses({**pred, "features": feats3}, {**gt, "teacher_labels": labels3},
                            SlarmLossConfig(label=0.5, feature_balance=1.0))
    assert balanced["label"].item() == pytest.approx(0.5 * weighted.item(), rel=1e-5)
    assert weighted.item() != pytest.approx(ce.mean().item(), rel=1e-3)
    # in the train step: only the new term differs, and it scales with the weight
    cfg, net, sample = _tiny_slarm_and_sample(store_root)
    batch = {k: torch.as_tensor(v)[None] for k, v in sample.items()}
    _check_only_term_changes(net, batch, "label_weight", "label")
    _check_slarm_only_loss_weight(store_root, tmp_path, cfg, "label_weight")


def test_context_flow_supervises_each_context_gaussians_velocity(store_root, tmp_path):
    """context_flow_weight > 0 (SLARM): samples carry the context frames' flow labels and the loss gains
    weight x mean over labelled context pixels of L1(velocity of the pixel's Gaussian - its flow); nothing
    else changes; the export records the weight; STORM presets refuse it."""
    from slarm_bench.losses_slarm import SlarmLossConfig, slarm_losses
    from slarm_bench.models.storm import context_inputs

    base = {"rgb": torch.zeros(1, 1, 1, 1, 3), "depth": torch.ones(1, 1, 1, 1), "alpha": torch.ones(1, 1, 1, 1),
            "motion": torch.zeros(1, 4, 1, 3)}
    velocity = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [5.0, 5.0, 5.0]]).reshape(1, 1, 1, 1, 3, 3)
    labels = torch.tensor([[2.0, -1.0, 0.0], [1.0, 0.0, 0.5], [0.0, 0.0, 0.0]]).reshape(1, 1, 1, 1, 3, 3)
    gt = {"rgb": torch.zeros(1, 1, 1, 1, 3), "context_flow": labels,
          "context_flow_valid": torch.tensor([True, True, False]).reshape(1, 1, 1, 1, 3)}
    terms = slarm_losses({**base, "context_velocity": velocity}, gt, SlarmLossConfig(context_flow=0.5))
    assert terms["context_flow"].item() == pytest.approx(0.5 * (3.0 + 0.5) / 2)
    assert "context_flow" not in slarm_losses({**base, "context_velocity": velocity}, gt, SlarmLossConfig())

    cfg, net, sample = _tiny_slarm_and_sample(store_root, with_context_flow=True)
    assert "tgt_flow" not in sample and sample["ctx_flow"].shape == (4, 3, H, W, 3) and sample["ctx_flow_valid"].any()
    batch = {k: torch.as_tensor(v)[None] for k, v in sample.items()}
    one = _check_only_term_changes(net, batch, "context_flow_weight", "context_flow")
    with torch.no_grad():
        out = net(context_inputs(batch["ctx_images"]), batch["ctx_c2w"], batch["ctx_k"],
                  (batch["ctx_time"] - batch["ctx_time"][:, :1]) / net.cfg.time_span)
    valid = batch["ctx_flow_valid"]
    expected = (out.motion[..., 0, :] - batch["ctx_flow"]).abs().sum(-1)[valid].mean()
    assert one["context_flow"].item() == pytest.approx(expected.item(), rel=1e-4)
    _check_slarm_only_loss_weight(store_root, tmp_path, cfg, "context_flow_weight")


@pytest.mark.parametrize("model", ["storm-t", "slarm-t-o1"])
def test_depth_weight_scales_the_depth_term_only(store_root, tmp_path, model):
    """depth_weight sets the depth term's weight in the total (STORM logs the unweighted L1, SLARM the
    weighted term); every other term is unchanged; the export records it; a negative weight is refused."""
    import json

    net, make, batch, cfg = _tiny_step_inputs(store_root, model)
    with torch.no_grad():
        ref = make(net, "torch", 0.0)(batch, False)
        high = make(net, "torch", 0.0, depth_weight=5.0)(batch, False)
    unweighted = ref["depth"]  # at the reference weight 1.0 both families log the unweighted L1
    assert float(unweighted) > 0
    assert torch.allclose(high["loss"].double() - ref["loss"].double(), 4.0 * unweighted.double(), rtol=1e-4)
    for term in set(ref) - {"depth", "loss"}:
        assert torch.equal(high[term], ref[term]), term
    train(**{**options(store_root, tmp_path / "w", 1, device="cpu"), "model": model, "config": cfg,
             "depth_weight": 5.0})
    assert json.loads((tmp_path / "w" / f"{model}.train.json").read_text())["depth_weight"] == 5.0
    with pytest.raises(SlarmBenchError, match="depth_weight"):
        train(**{**options(store_root, tmp_path / "bad", 1, device="cpu"), "model": model, "config": cfg,
                 "depth_weight": -1.0})
    assert not (tmp_path / "bad").exists()


def _motion_weight_entropy(net) -> float:
    """Mean entropy of the softmax over the motion tokens, as a fraction of its maximum, for random inputs."""
    from tests.benchmark_script import load_benchmark

    cap = {}
    hook = net.register_forward_hook(lambda m, i, o: cap.__setitem__("out", o))
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(1, 2, 3, 3, H, W, generator=gen) * 2 - 1
    c2w = torch.eye(4).expand(1, 2, 3, 4, 4).clone()
    c2w[:, 1, :, 0, 3] = 1.0
    k = torch.tensor([[20.0, 0, W / 2], [0, 20.0, H / 2], [0, 0, 1]]).expand(1, 2, 3, 3, 3)
    with torch.no_grad():
        net(images, c2w, k, torch.tensor([[0.0, 0.5]]))
    hook.remove()
    return float(load_benchmark("bench_motion_learned").token_entropy(cap["out"].motion_weights).mean())


def test_xavier_motion_head_init_breaks_the_uniform_token_softmax():
    """With the reference trunc-normal 0.02 the softmax over the motion tokens starts uniform (entropy at
    its maximum: every pixel mixes the same bases); motion_head_init='xavier' starts it far from uniform
    and changes the motion key and query heads only; an unknown name or a static model is refused."""
    from slarm_bench.models.storm import StormModelError, init_for_training
    from slarm_bench.models.storm_net import StormNet

    torch.manual_seed(0)
    ref = init_for_training(StormNet(CFG))
    torch.manual_seed(0)
    xav = init_for_training(StormNet(CFG), motion_head_init="xavier")
    assert _motion_weight_entropy(ref) > 0.999
    assert _motion_weight_entropy(xav) < 0.9
    changed = {n for n, p in ref.state_dict().items() if not torch.equal(p, xav.state_dict()[n])}
    assert changed and all(n.startswith(("motion_key_head.", "motion_query_heads.")) for n in changed)
    assert not any(n.endswith("bias") for n in changed)
    with pytest.raises(StormModelError, match="reference, xavier"):
        init_for_training(StormNet(CFG), motion_head_init="kaiming")
    with pytest.raises(StormModelError, match="static"):
        init_for_training(StormNet(dataclasses.replace(CFG, num_motion_tokens=0)), motion_head_init="xavier")


def test_motion_head_init_is_recorded_and_refused_without_motion_tokens(store_root, tmp_path):
    """train(motion_head_init='xavier') records it in the export's train.json; a static STORM or a SLARM
    preset refuses it before anything is written."""
    import json

    train(**options(store_root, tmp_path / "x", 1, device="cpu", motion_head_init="xavier"))
    assert json.loads((tmp_path / "x" / "storm-t.train.json").read_text())["motion_head_init"] == "xavier"
    static = dataclasses.replace(CFG, num_motion_tokens=0)
    for name, kw in (("static", {"config": static}),
                     ("slarm", {"model": "slarm-t", "config": None}),
                     ("typo", {"motion_head_init": "xavir"})):
        with pytest.raises(SlarmBenchError, match="motion_head_init"):
            train(**{**options(store_root, tmp_path / name, 1, device="cpu", motion_head_init="xavier"), **kw})
        assert not (tmp_path / name).exists()
