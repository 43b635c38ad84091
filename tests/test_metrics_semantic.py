"""Semantic mIoU / accuracy on hand-computed cases and the open-vocabulary prediction rule."""

from __future__ import annotations

import math

import pytest
import torch

from slarm_bench.errors import SlarmBenchError
from slarm_bench.metrics import Sample, SemanticMetric, predict_semantic, semantic_scores


def test_miou_and_accuracy_hand_computed() -> None:
    gt = torch.tensor([[[0, 1], [1, 255]], [[0, 1], [1, 255]], [[255, 255], [255, 255]]], dtype=torch.uint8)
    pred = torch.tensor([[[0, 1], [2, 2]], [[0, 1], [1, 2]], [[0, 0], [0, 0]]])
    miou, acc, n = semantic_scores(pred, gt, num_classes=3)
    # image 1: IoU class0 = 1, class1 = 1/2, class2 = 0/1 (predicted on a labelled pixel) -> 0.5
    # image 2: class 2 is predicted only on an unlabelled pixel, so it does not count -> 1.0
    assert miou[:2].tolist() == pytest.approx([0.5, 1.0])
    assert acc[:2].tolist() == pytest.approx([2 / 3, 1.0])
    assert math.isnan(miou[2]) and math.isnan(acc[2]) and n.tolist() == [3, 3, 0]
    m = SemanticMetric(num_classes=3)
    m.update(Sample(semantic=pred, gt_semantic=gt))
    assert m.compute() == pytest.approx({"miou": 0.75, "accuracy": 5 / 6})  # over the 2 labelled images
    assert m.summary()["miou"]["count"] == 2


def test_labels_out_of_range_raise() -> None:
    with pytest.raises(SlarmBenchError, match="labels"):
        semantic_scores(torch.tensor([[[5]]]), torch.tensor([[[0]]]), num_classes=3)


def test_prediction_rule_thresholds_all_but_others() -> None:
    text = torch.eye(6)
    # features . text^T / 0.07 = log(p): the softmax gives back p
    confident = torch.log(torch.tensor([0.1, 0.5, 0.1, 0.1, 0.1, 0.1])) * 0.07
    unsure = torch.log(torch.tensor([0.1, 0.19, 0.18, 0.18, 0.18, 0.17])) * 0.07
    labels = predict_semantic(torch.stack([confident, unsure]), text)
    assert labels.tolist() == [1, 0]  # every class but 'others' under 0.2 is zeroed, so 'others' wins
    assert predict_semantic(unsure[None], text, min_prob=0.0).tolist() == [1]
    assert predict_semantic(unsure[None], text, others_index=2).tolist() == [2]
    with pytest.raises(SlarmBenchError, match="last dimension"):
        predict_semantic(torch.zeros(2, 5), text)
