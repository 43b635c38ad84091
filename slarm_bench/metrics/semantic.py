"""Semantic metrics and the open-vocabulary prediction rule (REFERENCE.md section 2).

Per image, over labelled pixels (gt != 255): mean IoU, macro over the classes present in the prediction
or the ground truth there (a class predicted only on unlabelled pixels does not count), and pixel
accuracy. Both are averaged over labelled images (at least one pixel != 255); other images give NaN.
"""

from __future__ import annotations

import torch

from slarm_bench.metrics.base import Metric, MetricInputError, Sample, ValueSpec, batched, nan_where

IGNORE_INDEX = 255
# The open-vocabulary query rule of REFERENCE.md section 2 (softmax temperature, per-class floor).
QUERY_TEMPERATURE = 0.07
QUERY_MIN_PROB = 0.2


def predict_semantic(features: torch.Tensor, text_embeddings: torch.Tensor, others_index: int = 0,
                     temperature: float = QUERY_TEMPERATURE, min_prob: float = QUERY_MIN_PROB,
                     normalize: bool = False) -> torch.Tensor:
    """Class index per pixel [...] from features [...,D] and text embeddings [C,D].

    softmax(features . text^T / temperature); probabilities below `min_prob` are set to 0 for every class
    except `others_index`; argmax. normalize=True L2-normalises both first (the definition does not; the
    features are trained against L2-normalised teacher features).
    """
    if features.shape[-1] != text_embeddings.shape[-1]:
        raise MetricInputError(
            f"features [...,{features.shape[-1]}] and text embeddings [C,{text_embeddings.shape[-1]}] "
            "must share the last dimension: decode features into the text space first."
        )
    f, t = features.float(), text_embeddings.to(features.device).float()
    if normalize:
        f, t = torch.nn.functional.normalize(f, dim=-1), torch.nn.functional.normalize(t, dim=-1)
    prob = torch.softmax(f @ t.T / temperature, dim=-1)
    low = prob < min_prob
    low[..., others_index] = False
    return torch.where(low, torch.zeros_like(prob), prob).argmax(-1)


def semantic_scores(pred: torch.Tensor, gt: torch.Tensor, num_classes: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image (mIoU [B], accuracy [B], labelled pixels [B]) of labels pred, gt [B,H,W]; NaN if none."""
    pred, gt = batched(pred, 2), batched(gt, 2)
    if pred.shape != gt.shape:
        raise MetricInputError(
            f"semantic {tuple(pred.shape)} and gt_semantic {tuple(gt.shape)} must both be [B,H,W]."
        )
    gt, pred = gt.long(), pred.long()
    labelled = gt != IGNORE_INDEX
    gt_l = torch.where(labelled, gt, torch.zeros_like(gt))
    if num_classes is None:
        num_classes = int(max(gt_l.max(), pred.max())) + 1 if gt.numel() else 1
    if pred.min() < 0 or pred.max() >= num_classes or gt_l.max() >= num_classes:
        raise MetricInputError(f"semantic labels must lie in [0, {num_classes}) (255 = unlabelled in gt).")
    b = gt.shape[0]
    # one bincount for the whole batch: bin = image * C^2 + gt * C + pred, unlabelled pixels dropped
    idx = (torch.arange(b, device=gt.device).view(b, 1, 1) * num_classes + gt_l) * num_classes + pred
    conf = torch.bincount(idx[labelled], minlength=b * num_classes * num_classes)
    conf = conf.view(b, num_classes, num_classes).to(torch.float64)
    inter = conf.diagonal(dim1=1, dim2=2)
    union = conf.sum(2) + conf.sum(1) - inter
    present = union > 0
    iou = torch.where(present, inter / union.clamp_min(1), torch.zeros_like(inter))
    n_cls = present.sum(1).to(torch.float64)
    n_pix = labelled.flatten(1).sum(1).to(torch.float64)
    miou = nan_where(iou.sum(1) / n_cls.clamp_min(1), n_pix == 0)
    acc = nan_where(inter.sum(1) / n_pix.clamp_min(1), n_pix == 0)
    return miou, acc, n_pix


class SemanticMetric(Metric):
    """Per-image mIoU and pixel accuracy (fractions, higher is better), averaged over labelled images."""

    name, higher_is_better, unit = "semantic", True, ""
    chunk_size = 4

    def __init__(self, num_classes: int | None = None) -> None:
        self.num_classes = num_classes
        notes = "per image over labelled pixels (ignore 255), mean over labelled images"
        super().__init__([ValueSpec("miou", True, "", notes=notes + "; macro over classes in pred or gt"),
                          ValueSpec("accuracy", True, "", notes=notes)])

    def _values(self, sample: Sample) -> dict[str, tuple[torch.Tensor, None]]:
        sample.require("semantic", "gt_semantic", metric=self.name)
        miou, acc, _ = semantic_scores(sample.semantic, sample.gt_semantic, self.num_classes)
        return {"miou": (miou, None), "accuracy": (acc, None)}
