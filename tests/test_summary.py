from googlenet.analysis.summary import summarize
from googlenet.model import GoogLeNet


def test_totals_equal_the_model_and_the_paper():
    model = GoogLeNet()
    summary = summarize(model)
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    assert sum(r.params for r in summary.rows) == summary.total_params
    assert abs(summary.main_macs / 1.5e9 - 1) < 0.05
    assert {r.name for r in summary.rows} >= {"conv1", "inception3a", "inception5b", "aux1", "aux2", "fc"}
    by_name = {r.name: r for r in summary.rows}
    assert by_name["inception4c"].output_shape == (512, 14, 14)
    assert by_name["inception5b"].output_shape == (1024, 7, 7)
    assert by_name["inception4a"].paper_params == 364_000
    # conv2 + conv3 are one row in the paper: 114,688 conv weights + BN against 112K
    assert abs(by_name["conv3"].params_diff) < 0.05


def test_cifar_summary_and_table_text():
    model = GoogLeNet(num_classes=10, stem="cifar", width=0.25)
    summary = summarize(model)
    assert summary.input_size == 32
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    text = summary.table()
    assert "inception4e" in text and "paper" in text and "3×3 kernel where the paper has 5×5" in text


def test_plain_network_is_close_to_the_papers_parameter_count():
    # The paper's 6.8 M counts the main path with biases and 5×5 branch3 kernels.
    model = GoogLeNet(batch_norm=False, aux_logits=False)
    total = summarize(model).total_params
    assert abs(total / 6.8e6 - 1) < 0.05


def test_paper_figures_are_scaled_to_the_live_network():
    # The bundled layout (width 0.25, CIFAR stem, 10 classes) against the paper scaled to it:
    # the differences left are BN, rounding of channel counts and 3×3 for 5×5, all within 15 %.
    summary = summarize(GoogLeNet(num_classes=10, stem="cifar", width=0.25))
    rows = {r.name: r for r in summary.rows}
    assert rows["conv1"].paper_params is None  # 3×3/1 stem: no paper counterpart
    assert rows["inception3a"].paper_params == round(159_000 * 0.25**2)
    assert rows["inception3a"].paper_macs == round(128_000_000 * 0.25**2 * (32 / 28) ** 2)
    for name in ("conv3", "inception3a", "inception4e", "inception5b", "fc"):
        assert abs(rows[name].params_diff) < 0.15 and abs(rows[name].macs_diff) < 0.15, name
    full = {r.name: r for r in summarize(GoogLeNet()).rows}
    assert full["inception4e"].paper_macs == 170_000_000  # the paper's own network: unscaled


def test_multiply_adds_are_right_while_another_thread_runs_the_model():
    # The counter's per-module table used process-wide hooks: a forward pass in another thread
    # moved multiply-adds between rows (inception4e showed 0 in the app). Rows must not move.
    import threading

    import torch

    model = GoogLeNet(num_classes=10, stem="cifar", width=0.125).eval()
    expected = {r.name: r.macs for r in summarize(model).rows}
    other = GoogLeNet(num_classes=10, stem="cifar", width=0.125).eval()
    stop, passes = threading.Event(), []

    def busy():
        x = torch.randn(1, 3, 32, 32, requires_grad=True)
        while not stop.is_set():
            other(x).sum().backward()
            passes.append(1)

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        while not passes:  # the other thread is really running passes
            threading.Event().wait(0.01)
        results = [{r.name: r.macs for r in summarize(model).rows} for _ in range(4)]
    finally:
        stop.set()
        thread.join()
    assert len(passes) > 1
    assert all(result == expected for result in results)
