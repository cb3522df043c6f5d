"""Training device choice: CUDA when available, never required."""

from __future__ import annotations

import pytest
import torch

from seclake_ml.ipinsights.trainer import IPInsights, choose_device


@pytest.mark.parametrize("requested, available, expected", [
    (None, True, "cuda"),
    (None, False, "cpu"),
    ("auto", True, "cuda"),
    ("AUTO", False, "cpu"),
    ("cpu", True, "cpu"),
    ("cuda", True, "cuda"),
    ("cuda:1", True, "cuda:1"),
])
def test_choose_device(requested, available, expected):
    assert choose_device(requested, cuda_available=available) == torch.device(expected)


@pytest.mark.parametrize("requested", ["cuda", "cuda:0"])
def test_cuda_requested_without_cuda_names_the_request(requested):
    with pytest.raises(ValueError, match=f"device '{requested}': CUDA is not available"):
        choose_device(requested, cuda_available=False)


@pytest.mark.parametrize("requested", ["gpu", "cuda:x", "mps", ""])
def test_unknown_devices_are_refused(requested):
    with pytest.raises(ValueError, match="expected None, 'auto', 'cpu', 'cuda'"):
        choose_device(requested, cuda_available=True)


def test_estimator_follows_torch_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert IPInsights()._resolved_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert IPInsights()._resolved_device() == torch.device("cpu")
    assert IPInsights(device="cpu")._resolved_device() == torch.device("cpu")
