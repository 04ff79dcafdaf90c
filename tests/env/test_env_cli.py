"""`fluorecon env`: run a strategy and train/load a policy end to end; bad input is exit 2."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.env.microscope import SmartMicroscopeEnv
from fluorecon.env.policies import FixedPolicy, evaluate

runner = CliRunner()


def test_run_fixed_matches_the_library_and_writes_a_report(tmp_path):
    r = runner.invoke(app, ["env", "run", "--policy", "fixed", "--power", "3", "--exposure", "1", "--passes", "1",
                            "--episodes", "2", "--seed", "5", "--json", "--report", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    lib = evaluate(SmartMicroscopeEnv(shape=(64, 64), regions=(2, 2)), FixedPolicy(3, 1, 1), range(5, 7))
    np.testing.assert_allclose(res["mean_return"], lib["mean_return"], rtol=1e-12)
    # One pass at power 2 × exposure 1 over four tiles: dose 8.
    assert res["mean_dose"] == 8.0 and (tmp_path / "r.html").stat().st_size > 0


def test_train_then_run_the_saved_policy(tmp_path):
    r = runner.invoke(app, ["env", "train", "-o", str(tmp_path / "pol"), "--timesteps", "64", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["env", "run", "--policy", str(tmp_path / "pol"), "--episodes", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["policy"] == "ppo"


def test_bad_input_exits_2(tmp_path):
    r = runner.invoke(app, ["env", "run", "--policy", "fixed", "--power", "9"])
    assert r.exit_code == 2 and "out of range" in r.output
    r = runner.invoke(app, ["env", "run", "--budget", "0"])
    assert r.exit_code == 2 and "budget" in r.output
    r = runner.invoke(app, ["env", "run", "--policy", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "unknown policy" in r.output
