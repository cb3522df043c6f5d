"""Hyperparameters: SageMaker names, defaults, ranges, string values and error messages."""

from __future__ import annotations

import pytest

from seclake_ml.ipinsights.hyperparams import IPInsightsHyperparameters


def test_defaults_follow_the_sagemaker_documentation():
    hp = IPInsightsHyperparameters()
    assert hp.to_dict() == {
        "num_entity_vectors": 100_000,
        "vector_dim": 128,
        "epochs": 10,
        "learning_rate": 0.001,
        "mini_batch_size": 10_000,
        "num_ip_encoder_layers": 1,
        "random_negative_sampling_rate": 1,
        "shuffled_negative_sampling_rate": 1,
        "weight_decay": 0.00001,
        "batch_metrics_publish_interval": 1000,
    }


def test_string_values_are_accepted_like_a_training_job():
    tutorial = {"num_entity_vectors": "20000", "random_negative_sampling_rate": "5", "vector_dim": "128",
                "mini_batch_size": "1000", "epochs": "5", "learning_rate": "0.01", "weight_decay": "1e-5"}
    hp = IPInsightsHyperparameters.from_dict(tutorial)
    assert (hp.num_entity_vectors, hp.random_negative_sampling_rate, hp.epochs) == (20000, 5, 5)
    assert hp.learning_rate == pytest.approx(0.01) and hp.weight_decay == pytest.approx(1e-5)
    assert isinstance(hp.vector_dim, int) and isinstance(hp.learning_rate, float)
    assert IPInsightsHyperparameters.from_dict(hp.to_sagemaker()) == hp


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("num_entity_vectors", 0, r"num_entity_vectors: expected an integer in \[1, 2.5e\+08\]"),
        ("num_entity_vectors", "250000001", "num_entity_vectors"),
        ("vector_dim", 3, r"vector_dim: expected an integer in \[4, 4096\], got 3"),
        ("vector_dim", "4097", "vector_dim"),
        ("vector_dim", "12.5", "vector_dim"),
        ("vector_dim", 12.5, "vector_dim"),
        ("vector_dim", True, "vector_dim"),
        ("epochs", 0, r"epochs: expected an integer in \[1, inf\)"),
        ("learning_rate", "1e-7", r"learning_rate: expected a number in \[1e-06, 10\]"),
        ("learning_rate", "nan", "learning_rate"),
        ("learning_rate", "fast", "learning_rate"),
        ("mini_batch_size", 500_001, r"mini_batch_size: expected an integer in \[1, 500000\]"),
        ("num_ip_encoder_layers", 101, r"num_ip_encoder_layers: expected an integer in \[0, 100\]"),
        ("random_negative_sampling_rate", -1, r"random_negative_sampling_rate: expected an integer in \[0, 500\]"),
        ("shuffled_negative_sampling_rate", 501, "shuffled_negative_sampling_rate"),
        ("weight_decay", 10.5, r"weight_decay: expected a number in \[0, 10\]"),
        ("batch_metrics_publish_interval", 0, "batch_metrics_publish_interval"),
    ],
)
def test_out_of_range_values_name_the_parameter_and_range(name, value, expected):
    with pytest.raises(ValueError, match=expected):
        IPInsightsHyperparameters(**{name: value})


def test_negative_sampling_rates_must_sum_to_1_to_500():
    with pytest.raises(ValueError, match=r"random_negative_sampling_rate \+ shuffled_negative_sampling_rate.*\[1, 500\].*0 \+ 0"):
        IPInsightsHyperparameters(random_negative_sampling_rate=0, shuffled_negative_sampling_rate=0)
    with pytest.raises(ValueError, match="301 = 501"):
        IPInsightsHyperparameters(random_negative_sampling_rate=200, shuffled_negative_sampling_rate=301)
    assert IPInsightsHyperparameters(random_negative_sampling_rate=0, shuffled_negative_sampling_rate=1).negatives_per_pair == 1
    assert IPInsightsHyperparameters(random_negative_sampling_rate=250, shuffled_negative_sampling_rate=250).negatives_per_pair == 500


def test_unknown_names_are_rejected_with_the_accepted_list():
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['vectordim'\].*vector_dim"):
        IPInsightsHyperparameters.from_dict({"vectordim": "64"})


def test_frozen_and_replace_validates_again():
    hp = IPInsightsHyperparameters()
    with pytest.raises(AttributeError):
        hp.epochs = 3  # type: ignore[misc]
    assert hp.replace(epochs="3").epochs == 3
    with pytest.raises(ValueError, match="epochs"):
        hp.replace(epochs=0)
