from googlenet.model import GoogLeNet
from googlenet.summary import summarize


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
