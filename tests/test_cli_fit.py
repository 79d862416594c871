"""`optimus fit speed|loss`: the JSON contract, the tables, and every kind of bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optimus import cli
from optimus.models import LossParams, SpeedParams, loss_at, predict_speed

TRUTH = SpeedParams("ps-sync", 32.0, (0.01, 0.2, 0.5, 0.02, 0.03))
TRAIN = [(p, w) for p in range(1, 9) for w in range(1, 9) if (p + 2 * w) % 3 == 0]


@pytest.fixture(autouse=True)
def _only_fit_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test `fit` through the real main() without depending on the other subcommands."""
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("optimus.cli_fit",))


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _train_csv(tmp_path: Path) -> Path:
    rows = "".join(
        f"{p},{w},{predict_speed(TRUTH, p, w)},extra\n" for p, w in TRAIN
    )
    return _write(tmp_path, "train.csv", "ps,workers,speed,note\n" + rows)


def _curve_csv(tmp_path: Path, epochs: int = 30) -> Path:
    truth = LossParams(0.05, 0.5, 0.3)
    rows = "".join(f"{k},{loss_at(truth, k)}\n" for k in range(epochs))
    return _write(tmp_path, "curve.csv", "epoch,loss\n" + rows + f"{epochs},nan\n")


def test_fit_speed_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predict = _write(tmp_path, "pred.csv", "ps,workers\n1,1\n4,8\n12,3\n")
    code, out, _ = _run(
        ["fit", "speed", "--mode", "sync", "--batch-size", "32", "--train",
         str(_train_csv(tmp_path)), "--predict", str(predict), "--json"],
        capsys,
    )
    assert code == 0
    report = json.loads(out)
    assert report["params"]["mode"] == "ps-sync"
    assert {"t0", "t1", "t2", "t3", "t4"} <= set(report["params"])
    assert [(e["ps"], e["workers"]) for e in report["predictions"]] == [(1, 1), (4, 8), (12, 3)]
    for entry in report["predictions"]:
        truth = predict_speed(TRUTH, entry["ps"], entry["workers"])
        assert entry["speed"] == pytest.approx(truth, rel=0.03)


@pytest.mark.parametrize("mode", ["async", "ps-async", "ps-sync", "allreduce"])
def test_fit_speed_accepts_every_mode_spelling(
    mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = _train_csv(tmp_path)
    if mode == "allreduce":  # no ps column needed
        train = _write(tmp_path, "ar.csv", "workers,speed\n1,5\n2,9\n3,12\n4,14\n6,16\n")
    code, out, _ = _run(
        ["fit", "speed", "--mode", mode, "--batch-size", "64", "--train", str(train), "--json"],
        capsys,
    )
    assert code == 0
    assert json.loads(out)["predictions"] == []


def test_fit_speed_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predict = _write(tmp_path, "pred.csv", "ps,workers\n2,5\n")
    code, out, _ = _run(
        ["fit", "speed", "--mode", "sync", "--batch-size", "32", "--train",
         str(_train_csv(tmp_path)), "--predict", str(predict)],
        capsys,
    )
    assert code == 0
    assert "t4" in out and "predicted speed" in out
    assert f"{predict_speed(TRUTH, 2, 5):.2f}"[:3] in out


def test_fit_loss_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["fit", "loss", "--csv", str(_curve_csv(tmp_path)), "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["params"] == pytest.approx({"b0": 0.05, "b1": 0.5, "b2": 0.3}, rel=1e-3)
    assert report["converged_epoch"] == 59  # l(k-10) - l(k) < 0.05 first at 59
    assert report["remaining_epochs"] == 59 - 30
    assert 0 < report["confidence"] < 1
    assert report["points_rejected"] == 1  # the nan


def test_fit_loss_rule_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        ["fit", "loss", "--csv", str(_curve_csv(tmp_path)), "--loss-delta", "0.2",
         "--window", "5", "--max-epochs", "20", "--json"],
        capsys,
    )
    assert code == 0
    report = json.loads(out)
    assert report["converged_epoch"] <= 20


def test_fit_loss_caps_at_max_epochs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        ["fit", "loss", "--csv", str(_curve_csv(tmp_path)), "--max-epochs", "40", "--json"],
        capsys,
    )
    assert code == 0
    assert json.loads(out)["converged_epoch"] == 40


def test_fit_loss_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["fit", "loss", "--csv", str(_curve_csv(tmp_path))], capsys)
    assert code == 0
    assert "converged at epoch" in out and "59" in out


SPEED_HEADER = "ps,workers,speed\n"
GOOD_ROWS = "".join(f"{p},{w},{1 + p / w}\n" for p, w in TRAIN[:6])


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("", 1, "empty"),
        ("\n\n", 1, "empty"),
        (SPEED_HEADER, 2, "no data rows"),
        ("ps,workers\n1,2\n", 1, "missing column(s) speed"),
        ("p,w,s\n1,2,3\n", 1, "missing column(s) ps, workers, speed"),
        (SPEED_HEADER + GOOD_ROWS + "2,3,fast\n", 8, "not a number"),
        (SPEED_HEADER + GOOD_ROWS + "2,3,\n", 8, "empty"),
        (SPEED_HEADER + GOOD_ROWS + "2,3\n", 8, "empty"),
        (SPEED_HEADER + GOOD_ROWS + "2,2.5,3\n", 8, "whole number"),
        (SPEED_HEADER + GOOD_ROWS + "0,2,3\n", 8, "parameter servers >= 1"),
        (SPEED_HEADER + GOOD_ROWS + "2,0,3\n", 8, "workers >= 1"),
        (SPEED_HEADER + GOOD_ROWS + "2,3,-4\n", 8, ">= 0"),
        (SPEED_HEADER + GOOD_ROWS + "2,3,nan\n", 8, "finite"),
    ],
)
def test_bad_train_files_exit_2_naming_file_line_and_fix(
    text: str, line: int, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = _write(tmp_path, "train.csv", text)
    code, out, err = _run(
        ["fit", "speed", "--mode", "sync", "--batch-size", "32", "--train", str(train), "--json"],
        capsys,
    )
    assert code == 2 and out == ""
    assert f"{train}:{line}:" in err
    assert needle in err and "fix:" in err


def test_zero_speed_rows_are_left_out_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """measured.csv has a real failing configuration (speed 0): filtered, never hidden."""
    train = _write(tmp_path, "train.csv", SPEED_HEADER + GOOD_ROWS + "2,3,0\n")
    code, out, err = _run(
        ["fit", "speed", "--mode", "sync", "--batch-size", "32", "--train", str(train), "--json"],
        capsys,
    )
    assert code == 0
    assert f"{train}:8: speed 0 at (ps=2, workers=3)" in err
    assert json.loads(out)["failing_left_out"] == [{"line": 8, "ps": 2, "workers": 3}]


def test_only_failing_rows_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = _write(tmp_path, "train.csv", SPEED_HEADER + "1,2,0\n2,1,0\n")
    code, _, err = _run(
        ["fit", "speed", "--mode", "sync", "--batch-size", "32", "--train", str(train)], capsys
    )
    assert code == 2 and "left out of the fit" in err and "0 distinct" in err


def test_too_few_configurations_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = _write(tmp_path, "train.csv", SPEED_HEADER + "1,2,3\n2,1,4\n")
    code, _, err = _run(
        ["fit", "speed", "--mode", "sync", "--batch-size", "32", "--train", str(train)], capsys
    )
    assert code == 2
    assert str(train) in err and "at least 5" in err


def test_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.csv"
    code, _, err = _run(
        ["fit", "speed", "--mode", "sync", "--batch-size", "32", "--train", str(missing)], capsys
    )
    assert code == 2 and str(missing) in err and "fix:" in err


def test_bad_predict_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predict = _write(tmp_path, "pred.csv", "ps,workers\n1,x\n")
    code, _, err = _run(
        ["fit", "speed", "--mode", "sync", "--batch-size", "32", "--train",
         str(_train_csv(tmp_path)), "--predict", str(predict), "--json"],
        capsys,
    )
    assert code == 2 and f"{predict}:2:" in err and "workers" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--mode", "ring", "--batch-size", "32"], "--mode"),
     (["--mode", "sync", "--batch-size", "0"], "--batch-size")],
)
def test_bad_options_exit_2(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(["fit", "speed", *args, "--train", str(_train_csv(tmp_path))], capsys)
    assert code == 2 and needle in err


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("", 1, "empty"),
        ("epoch,loss\n", 2, "no data rows"),
        ("epoch\n1\n", 1, "missing column(s) loss"),
        ("epoch,loss\n0,1.0\n1,abc\n", 3, "not a number"),
        ("epoch,loss\n0,1.0\n-1,0.5\n", 3, ">= 0"),
        ("epoch,loss\n0,1.0\ninf,0.5\n", 3, "finite"),
        ("epoch,loss\n0,1.0\n1,0.9\n", 0, "3 epochs"),
        ("epoch,loss\n0,1.0\n1,-0.9\n2,0.8\n", 0, "negative"),
    ],
)
def test_bad_curve_files_exit_2(
    text: str, line: int, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    curve = _write(tmp_path, "curve.csv", text)
    code, out, err = _run(["fit", "loss", "--csv", str(curve), "--json"], capsys)
    assert code == 2 and out == ""
    assert (f"{curve}:{line}:" if line else f"{curve}:") in err
    assert needle in err


def test_bad_rule_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(
        ["fit", "loss", "--csv", str(_curve_csv(tmp_path)), "--window", "0"], capsys
    )
    assert code == 2 and "window" in err


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_MEASURED = SHARED_DATA / "ps-speed" / "measured.csv"


@pytest.mark.skipif(not SHARED_MEASURED.is_file(), reason="needs ../shared/data (real data)")
def test_fit_speed_on_real_measurements_predicts_held_out_configurations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The outside check's use: 10 real resnet-50 configurations in, the rest predicted."""
    import csv

    with SHARED_MEASURED.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["model"] == "resnet-50"]
    speeds = {(int(r["ps"]), int(r["workers"])): float(r["samples_per_sec"]) / 32 for r in rows}
    configs = sorted(speeds)
    train = configs[::21]  # 10 configurations spread over the grid
    held_out = [c for c in configs if c not in train]
    train_csv = _write(tmp_path, "train.csv", SPEED_HEADER + "".join(
        f"{p},{w},{speeds[(p, w)]}\n" for p, w in train))
    pred_csv = _write(tmp_path, "pred.csv", "ps,workers\n" + "".join(
        f"{p},{w}\n" for p, w in held_out))
    code, out, _ = _run(
        ["fit", "speed", "--mode", "sync", "--batch-size", "32", "--train", str(train_csv),
         "--predict", str(pred_csv), "--json"],
        capsys,
    )
    assert code == 0
    predictions = json.loads(out)["predictions"]
    errors = [abs(e["speed"] / speeds[(e["ps"], e["workers"])] - 1) for e in predictions]
    assert len(errors) == len(held_out)
    assert sum(errors) / len(errors) < 0.15


# ---- optimus fit store -------------------------------------------------------------------
SPEEDS = ("model,ps,workers,samples_per_sec,batch_size\n"
          + "".join(f"resnet,{p},{w},{64 * predict_speed(TRUTH, p, w):.4f},32\n"
                    for p in (1, 2, 3) for w in (1, 2, 4))
          + "mlp,1,1,100,64\nmlp,1,2,180,64\nmlp,1,4,0,64\n")


def test_fit_store_prints_a_configmap_the_operator_reads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from optimus.kube.store import store_from_configmap
    from optimus.round import KnowledgeStore, pool_measurements

    speeds = _write(tmp_path, "speeds.csv", SPEEDS)
    code, out, err = _run(["fit", "store", "--speeds", str(speeds), "--namespace", "ops"],
                          capsys)
    assert code == 0, err
    manifest = json.loads(out)
    assert (manifest["kind"], manifest["metadata"]["namespace"],
            manifest["metadata"]["name"]) == ("ConfigMap", "ops", "optimus-knowledge")
    store = store_from_configmap(manifest)
    assert sorted(store.kinds) == ["mlp|ps-sync|64", "resnet|ps-sync|32"]
    resnet = store.get("resnet|ps-sync|32")
    assert resnet is not None and resnet.theta is not None and len(resnet.samples) == 9
    # the table's rows pooled exactly as pool_measurements pools them
    expected = pool_measurements(KnowledgeStore(), "resnet", "ps-sync", 32, [
        (p, w, round(64 * predict_speed(TRUTH, p, w), 4)) for p in (1, 2, 3) for w in (1, 2, 4)])
    assert resnet == expected.get("resnet|ps-sync|32")
    # the failing measurement is left out and said so
    mlp = store.get("mlp|ps-sync|64")
    assert mlp is not None and [(s.ps, s.workers) for s in mlp.samples] == [(1, 1), (1, 2)]
    assert "mlp at (ps=1, workers=4) left out" in err
    assert "resnet|ps-sync|32: 9 configurations, speed model fitted" in err


def test_fit_store_options_and_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from optimus.kube.store import store_from_configmap

    speeds = _write(tmp_path, "speeds.csv", SPEEDS)
    code, out, _ = _run(["fit", "store", "--speeds", str(speeds), "--model", "mlp",
                         "--mode", "async", "--batch-size", "128", "--name", "k"], capsys)
    assert code == 0
    first = _write(tmp_path, "cm.json", out)
    assert json.loads(out)["metadata"]["name"] == "k"
    assert list(store_from_configmap(json.loads(out)).kinds) == ["mlp|ps-async|128"]
    code, out, _ = _run(["fit", "store", "--speeds", str(speeds), "--model", "mlp",
                         "--mode", "async", "--batch-size", "128", "--merge", str(first)], capsys)
    assert code == 0
    (entry,) = store_from_configmap(json.loads(out)).kinds.values()
    assert [s.count for s in entry.samples] == [2, 2], "merged into the store given"


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "vgg"], "--model vgg: not in"),
    (["--mode", "sideways"], "--mode"),
    (["--batch-size", "0"], "--batch-size is 0"),
    (["--merge", "{speeds}"], "not a knowledge store ConfigMap"),
])
def test_fit_store_refuses_bad_input_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    speeds = _write(tmp_path, "speeds.csv", SPEEDS)
    args = [a.replace("{speeds}", str(speeds)) for a in args]
    code, out, err = _run(["fit", "store", "--speeds", str(speeds), *args], capsys)
    assert code == 2 and out == "" and message in err


def test_fit_store_names_the_bad_line_of_the_speed_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    speeds = _write(tmp_path, "speeds.csv", "model,ps,workers,samples_per_sec\nm,1,x,3\n")
    code, _, err = _run(["fit", "store", "--speeds", str(speeds), "--batch-size", "8"], capsys)
    assert code == 2 and "line 2" in err and "workers" in err
    no_batch = _write(tmp_path, "nobatch.csv", "model,ps,workers,samples_per_sec\nm,1,1,3\n")
    code, _, err = _run(["fit", "store", "--speeds", str(no_batch)], capsys)
    assert code == 2 and "give --batch-size" in err
