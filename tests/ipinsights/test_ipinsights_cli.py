"""The ipinsights command group, end to end on tiny files."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from seclake_ml.ipinsights import cli


def _parse(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="group", required=True)
    cli.register(sub)
    return parser.parse_args(argv)


def test_register_adds_the_group_with_all_hyperparameters():
    args = _parse(["ipinsights", "train", "--train", "t.csv", "--out", "m", "--vector-dim", "64", "--random-negative-sampling-rate", "5"])
    assert (args.group, args.command, args.vector_dim, args.random_negative_sampling_rate) == ("ipinsights", "train", "64", "5")
    assert args.epochs is None and args.weight_decay is None and args.batch_metrics_publish_interval is None


def test_train_score_calibrate(world, tmp_path, capsys):
    train_csv = tmp_path / "train.csv"
    train_csv.write_text("".join(f"{e},{i}\n" for e, i in zip(world.train_entities[:6000], world.train_ips[:6000])))
    val_csv = tmp_path / "val.csv"
    val_csv.write_text("".join(f"{e},{i}\n" for e, i in zip(world.test_entities[:500], world.test_ips[:500])))
    model = tmp_path / "model"
    rc = cli.main(["train", "--train", str(train_csv), "--validation", str(val_csv), "--out", str(model), "--vector-dim", "16",
                   "--num-entity-vectors", "1000", "--epochs", "2", "--mini-batch-size", "512", "--learning-rate", "0.02",
                   "--ip-hash-buckets", "1024", "--threads", "1", "--interval-start", "2024-01-01", "--best-epoch", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pairs"] == 6000 and summary["validation_discriminator_auc"] > 0.9
    assert summary["epoch_kept"] in (1, 2)
    assert json.loads((model / "model.json").read_text())["training_interval"]["start"] == "2024-01-01"

    pairs = tmp_path / "score.parquet"
    pd.DataFrame({"entity": list(world.test_entities[:20]) + ["x"], "ip": list(world.test_ips[:20]) + ["::1"],
                  "source": "vpc_flow"}).to_parquet(pairs, index=False)
    out = tmp_path / "scores.parquet"
    assert cli.main(["score", "--model", str(model), "--input", str(pairs), "--output", str(out)]) == 0
    scored = pd.read_parquet(out)
    assert list(scored.columns) == ["entity", "ip", "source", "dot_product", "anomaly_score", "known_entity", "valid_ip"]
    assert scored["dot_product"].isna().tolist() == [False] * 20 + [True]
    np.testing.assert_allclose(scored["anomaly_score"][:20], -scored["dot_product"][:20])
    out_csv = tmp_path / "scores.csv"
    assert cli.main(["score", "--model", str(model), "--input", str(val_csv), "--output", str(out_csv)]) == 0
    assert pd.read_csv(out_csv).shape == (500, 6)

    later = tmp_path / "later.parquet"
    pd.DataFrame({"entity": world.test_entities, "ip": world.test_ips}).to_parquet(later, index=False)
    normal, abnormal = tmp_path / "normal.parquet", tmp_path / "abnormal.parquet"
    assert cli.main(["calibration-sets", "--train", str(train_csv), "--later", str(later), "--normal-out", str(normal),
                     "--abnormal-out", str(abnormal), "--n-normal", "900"]) == 0
    capsys.readouterr()
    report = tmp_path / "report"
    assert cli.main(["calibrate", "--model", str(model), "--normal", str(normal), "--abnormal", str(abnormal),
                     "--target-fpr", "0.05", "--report", str(report), "--model-only", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["roc_auc"] > 0.9 and metrics["threshold"]["fpr"] <= 0.05 and "components" not in metrics
    assert {p.name for p in report.iterdir()} == {"score_histogram.png", "roc_curve.png", "metrics.json", "report.html", "threshold.json"}

    # with the training pairs: the combined score, each component's AUC and combiner.json
    combined = tmp_path / "report-combined"
    assert cli.main(["calibrate", "--model", str(model), "--normal", str(normal), "--abnormal", str(abnormal),
                     "--target-fpr", "0.05", "--report", str(combined), "--train", str(train_csv), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics["components"]) == {"model", "nearest_known_ip", "combined"}
    assert all(0.5 < c["roc_auc"] <= 1.0 for c in metrics["components"].values())
    if metrics.get("combiner_declined") is None:
        assert json.loads((combined / "combiner.json").read_text())["format"] == "seclake-ipinsights-combiner"
    else:  # the model alone: no combination file to deploy
        assert not (combined / "combiner.json").exists()
    # train wrote the training pairs' profile beside the model: calibrate uses it without being told
    profile = pd.read_parquet(model / "profile.parquet")
    assert profile["events"].sum() == 6000 and profile["entity"].nunique() == len(set(world.train_entities[:6000]))
    auto = tmp_path / "report-auto"
    assert cli.main(["calibrate", "--model", str(model), "--normal", str(normal), "--abnormal", str(abnormal),
                     "--target-fpr", "0.05", "--report", str(auto), "--json"]) == 0
    auto_metrics = json.loads(capsys.readouterr().out)
    assert auto_metrics["components"] == metrics["components"]  # the same history as --train gives
    # the report folder reused for the model alone: the earlier combiner.json must not stay beside it
    (auto / "combiner.json").write_text("{}")
    assert cli.main(["calibrate", "--model", str(model), "--normal", str(normal), "--abnormal", str(abnormal),
                     "--target-fpr", "0.05", "--report", str(auto), "--model-only"]) == 0
    assert "model alone, as --model-only asks" in capsys.readouterr().out
    assert not (auto / "combiner.json").exists()
    with pytest.raises(SystemExit):  # one history source, not both
        _parse(["ipinsights", "calibrate", "--model", "m", "--normal", "n", "--abnormal", "a", "--report", "r",
                "--train", "t.csv", "--profile", "p.parquet"])


@pytest.mark.parametrize("argv, message", [
    (["train", "--train", "missing.csv", "--out", "m"], "does not exist"),
    (["train", "--train", "{csv}", "--out", "m", "--vector-dim", "2"], "vector_dim: expected an integer in [4, 4096], got '2'"),
    (["calibrate", "--model", "nowhere", "--normal", "n", "--abnormal", "a", "--report", "r"], "model.json is missing"),
])
def test_input_errors_are_one_line_with_status_2(tmp_path, capsys, argv, message):
    csv = tmp_path / "t.csv"
    csv.write_text("a,1.2.3.4\n")
    argv = [a.replace("{csv}", str(csv)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_train_profile_matches_training_for_folders_and_padded_csv(world, tmp_path, capsys):
    ents, ips = list(world.train_entities[:2000]), list(world.train_ips[:2000])
    padded = tmp_path / "padded.csv"  # spaces around the IP: training trims them, so must the profile
    padded.write_text("".join(f"{e}, {i} \n" for e, i in zip(ents, ips)))
    folder = tmp_path / "pairs"
    folder.mkdir()
    half = len(ents) // 2
    for k, part in enumerate((slice(0, half), slice(half, None))):
        pd.DataFrame({"entity": ents[part], "ip": ips[part]}).to_parquet(folder / f"part-{k}.parquet", index=False)
    small = ["--vector-dim", "8", "--num-entity-vectors", "500", "--epochs", "1", "--ip-hash-buckets", "256", "--threads", "1"]
    for source, out in ((padded, tmp_path / "m-csv"), (folder, tmp_path / "m-folder")):
        assert cli.main(["train", "--train", str(source), "--out", str(out), *small, "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["pairs"] == 2000 and summary["profile"]["rows_used"] == 2000, summary
        assert pd.read_parquet(out / "profile.parquet")["events"].sum() == 2000
    # --best-epoch without validation pairs: refused before training
    assert cli.main(["train", "--train", str(padded), "--out", str(tmp_path / "m3"), *small, "--best-epoch"]) == 2
    assert "--best-epoch needs --validation" in capsys.readouterr().err
