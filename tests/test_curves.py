import numpy as np
import pytest

from explain.render.curves import downsample, ema, training_figure


def test_ema_is_tensorboards_debiased_average():
    values = np.array([1.0, 2.0, 3.0])
    out = ema(values, 0.5)
    assert out[0] == 1.0  # debiased: the first point is itself
    assert np.isclose(out[1], (0.5 * 0.5 * 1 + 0.5 * 2) / (1 - 0.25))
    assert np.array_equal(ema(values, 0.0), values)
    with pytest.raises(ValueError):
        ema(values, 1.0)


def test_downsampling_keeps_extremes_and_order():
    x = np.arange(100_000)
    y = np.sin(x / 500.0)
    y[12_345] = 50.0  # a spike
    y[77_777] = -40.0
    xs, ys = downsample(x, y, 2000)
    assert len(xs) <= 2000 and np.all(np.diff(xs) > 0)
    assert 50.0 in ys and -40.0 in ys
    assert downsample(x[:10], y[:10], 2000)[0].size == 10


def test_a_100k_step_run_is_thinned_to_2000_points_per_series():
    """The speed of this re-plot is measured by ``python -m bench.explore`` (curves_100k_steps_ms)."""
    rng = np.random.default_rng(0)
    steps = np.arange(1, 100_001)
    loss = 2.3 * np.exp(-steps / 30_000) + rng.normal(0, 0.1, steps.size)
    columns = {"step": steps, "loss": loss, "loss_main": loss * 0.8, "loss_aux1": loss * 1.1, "loss_aux2": loss * 1.05}
    epochs = [{"epoch": e, "acc_main": 0.5 + e / 300, "acc_aux1": 0.45 + e / 300, "acc_aux2": 0.47 + e / 300} for e in range(1, 101)]
    figure = training_figure(columns, epochs, smoothing=0.9, log_y=True)
    losses = [t for t in figure.data if t.name.endswith("loss")]
    assert len(losses) == 4 and all(len(t.x) <= 2000 for t in losses)
    assert figure.layout.yaxis.type == "log"
    assert len([t for t in figure.data if t.name.endswith("accuracy")]) == 3


def test_empty_run_draws_a_placeholder():
    figure = training_figure([], [])
    assert figure.layout.annotations[0].text.startswith("No steps yet")
    # no empty axes running over a meaningless range (issue 13: −1…6)
    assert figure.layout.xaxis.visible is False and figure.layout.yaxis.visible is False
