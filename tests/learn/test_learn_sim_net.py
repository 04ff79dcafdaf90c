"""Learned SIM: training on simulated raw frames reduces the error; prediction keeps the recording's units."""

from __future__ import annotations

import numpy as np

from fluorecon.learn.sim_net import predict_sim, simulate_training_pair, train_sim_net


def test_training_pairs_are_normalised_and_on_the_fine_grid():
    x, y = simulate_training_pair(np.random.default_rng(0), n_angles=3, n_phases=3, pixel_size=0.08, na=1.2,
                                  wavelength=0.52, patch=32)
    assert x.shape == (9, 32, 32) and y.shape == (32, 32)
    assert abs(float(x.mean()) - 1.0) < 0.05 and abs(float(y.mean()) - 1.0) < 1e-5


def test_training_lowers_the_loss_and_prediction_scales_with_exposure():
    model, info = train_sim_net(n_angles=3, n_phases=3, pixel_size=0.08, na=1.2, wavelength=0.52, steps=60,
                                patch=32, batch_size=4, width=8, depth=2, lr=3e-3, seed=0)
    assert info["steps"] == 60
    assert np.mean(info["loss_last"]) < 0.8 * np.mean(info["loss_first"])
    frames = np.random.default_rng(1).poisson(50, (9, 16, 16)).astype(np.float32)
    a = predict_sim(model, frames)
    b = predict_sim(model, 3 * frames)
    np.testing.assert_allclose(b, 3 * a, rtol=1e-4, atol=1e-3)    # normalised input: output follows exposure


def test_correction_net_starts_as_the_classical_reconstruction_and_learns():
    from fluorecon.classical.sim import estimate_parameters, reconstruct_sim
    from fluorecon.learn.sim_net import SIMCorrectionNet, train_sim_correction
    from fluorecon.physics import phantoms
    from fluorecon.physics.sim import SIMPattern, simulate_sim

    optics = {"n_angles": 3, "n_phases": 3, "pixel_size": 0.065, "na": 1.3, "wavelength": 0.52, "wiener": 0.05,
              "upsample": 2}
    truth = phantoms.filaments((128, 128), seed=2)
    raw, _ = simulate_sim(truth, SIMPattern.regular(k=0.27, modulation=0.8, angle0=0.3), pixel_size=0.065, na=1.3,
                          wavelength=0.52)
    raw = 50 * raw.astype(np.float64) + 5
    # Untrained (zero last layer): exactly the classical reconstruction, computed here independently.
    net = SIMCorrectionNet(optics, width=8, depth=2)
    est = estimate_parameters(raw - 5, 3, 3, pixel_size=0.065, na=1.3, wavelength=0.52)
    ref, _ = reconstruct_sim(raw - 5, est, pixel_size=0.065, na=1.3, wavelength=0.52, wiener=0.05)
    np.testing.assert_allclose(predict_sim(net, raw, offset=5), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    model, info = train_sim_correction(n_angles=3, n_phases=3, pixel_size=0.065, na=1.3, wavelength=0.52, steps=40,
                                       scene=64, crop=32, pool=8, batch_size=4, width=8, depth=2, lr=3e-3, seed=0)
    assert info["steps"] == 40
    assert np.mean(info["loss_last"]) < np.mean(info["loss_first"])
    a = predict_sim(model, raw - 5)
    np.testing.assert_allclose(predict_sim(model, 3 * (raw - 5)), 3 * a, rtol=1e-3, atol=1e-3 * np.abs(a).max())
