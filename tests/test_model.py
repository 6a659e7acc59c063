import pytest
import torch
import torchvision
from torch import nn

from googlenet.model import (
    BRANCH_NAMES,
    BRANCHES,
    INCEPTION_MODULES,
    GoogLeNet,
    GoogLeNetConfig,
    GoogLeNetOutputs,
    fold_batchnorm,
)
from googlenet.spec import describe
from tests.conftest import randomize_bn


def torchvision_googlenet(aux_logits=True):
    return torchvision.models.googlenet(weights=None, aux_logits=aux_logits, init_weights=True, transform_input=False)


def test_names_of_the_36_branches():
    assert len(INCEPTION_MODULES) == 9 and len(BRANCHES) == 4
    assert BRANCH_NAMES[0] == "inception3a.branch1" and BRANCH_NAMES[-1] == "inception5b.branch4"
    model = GoogLeNet(width=0.25)
    for name in BRANCH_NAMES:
        model.get_submodule(name)  # raises if missing


def test_torchvision_state_dict_loads_strict_and_outputs_match():
    torch.manual_seed(0)
    reference = randomize_bn(torchvision_googlenet()).eval()
    model = GoogLeNet()
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference(x)
        assert (model(x) - expected).abs().max() <= 1e-5
        assert (fold_batchnorm(model)(x) - expected).abs().max() <= 1e-4
        folded_cl = fold_batchnorm(model).to(memory_format=torch.channels_last)
        assert (folded_cl(x.contiguous(memory_format=torch.channels_last)) - expected).abs().max() <= 1e-4


def test_aux_heads_match_torchvision_in_training_mode():
    torch.manual_seed(0)
    reference = torchvision_googlenet()
    model = GoogLeNet(dropout=0.2)
    model.load_state_dict(reference.state_dict())
    reference.eval()
    model.eval()
    # torchvision returns aux only in training mode; its dropout is identity in eval, so compare
    # the aux heads by running them on the same inception4a / inception4d outputs.
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = model(x, aux=True)
        feats = {}
        hooks = [
            getattr(reference, n).register_forward_hook(lambda m, i, o, n=n: feats.__setitem__(n, o))
            for n in ("inception4a", "inception4d")
        ]
        reference(x)
        for h in hooks:
            h.remove()
        assert torch.allclose(out.aux1, reference.aux1(feats["inception4a"]), atol=1e-5)
        assert torch.allclose(out.aux2, reference.aux2(feats["inception4d"]), atol=1e-5)


def test_parameter_counts_equal_torchvision():
    assert sum(p.numel() for p in GoogLeNet().parameters()) == 13_004_888
    assert sum(p.numel() for p in GoogLeNet(aux_logits=False).parameters()) == 6_624_904


@pytest.mark.parametrize("stem,size", [("imagenet", 224), ("cifar", 32)])
@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("width", [0.125, 0.25, 0.5])
def test_output_shapes(stem, size, batch_norm, width):
    model = GoogLeNet(num_classes=10, stem=stem, width=width, batch_norm=batch_norm)
    x = torch.randn(2, 3, size, size)
    model.train()
    out = model(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert [t.shape for t in out] == [torch.Size([2, 10])] * 3
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 10)
        eval_out = model(x, aux=True)
        assert eval_out.aux1.shape == (2, 10) and eval_out.aux2.shape == (2, 10)


def test_without_aux_heads():
    model = GoogLeNet(num_classes=10, stem="cifar", width=0.125, aux_logits=False)
    out = model.train()(torch.randn(2, 3, 32, 32))
    assert out.aux1 is None and out.aux2 is None and out.logits.shape == (2, 10)


def test_cifar_stem_keeps_32x32_until_inception3a():
    model = GoogLeNet(num_classes=10, stem="cifar", width=0.25).eval()
    sizes = {}
    for name in ("inception3a", "inception4a", "inception5b"):
        getattr(model, name).register_forward_hook(lambda m, i, o, n=name: sizes.__setitem__(n, o.shape[-1]))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert sizes == {"inception3a": 32, "inception4a": 16, "inception5b": 8}


def test_width_025_with_aux_is_about_063M_parameters():
    n = sum(p.numel() for p in GoogLeNet(num_classes=10, stem="cifar", width=0.25).parameters())
    assert 600_000 < n < 660_000


def test_branch3_kernel_follows_the_layout():
    assert describe(GoogLeNet(width=0.25)).branch("inception4c.branch3").kernel == "1×1→3×3"
    assert describe(GoogLeNet(width=0.25, batch_norm=False)).branch("inception4c.branch3").kernel == "1×1→5×5"
    assert describe(GoogLeNet(width=0.25, branch3_kernel=5)).branch("inception4c.branch3").kernel == "1×1→5×5"
    assert describe(GoogLeNet(width=0.25)).branch("inception4c.branch4").kernel == "pool→1×1"


def test_bad_config_is_rejected_with_a_message():
    with pytest.raises(ValueError, match="stem"):
        GoogLeNet(stem="mnist")
    with pytest.raises(ValueError, match="width"):
        GoogLeNet(width=0)
    with pytest.raises(ValueError, match="unknown model config keys"):
        GoogLeNetConfig.from_dict({"num_classes": 10, "depth": 3})


# -- the guide's network (README, Training: the paper's plain network, 5×5 branch3, no BN), transcribed


class GuideInception(nn.Module):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = nn.Sequential(nn.Conv2d(in_channels, ch1x1, kernel_size=1), nn.ReLU(inplace=True))
        self.branch2 = nn.Sequential(
            nn.Conv2d(in_channels, ch3x3red, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.branch3 = nn.Sequential(
            nn.Conv2d(in_channels, ch5x5red, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch5x5red, ch5x5, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1), nn.Conv2d(in_channels, pool_proj, kernel_size=1), nn.ReLU(inplace=True)
        )

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GuideAux(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.avgpool = nn.AvgPool2d(kernel_size=5, stride=3)
        self.conv = nn.Conv2d(in_channels, 128, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.relu(self.conv(self.avgpool(x)))
        x = self.dropout(self.relu(self.fc1(x.view(x.size(0), -1))))
        return self.fc2(x)


class GuideGoogLeNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.pre_layers = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(64, 64, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 192, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.a3, self.b3 = GuideInception(192, 64, 96, 128, 16, 32, 32), GuideInception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.a4, self.b4 = GuideInception(480, 192, 96, 208, 16, 48, 64), GuideInception(512, 160, 112, 224, 24, 64, 64)
        self.c4, self.d4 = GuideInception(512, 128, 128, 256, 24, 64, 64), GuideInception(512, 112, 144, 288, 32, 64, 64)
        self.e4 = GuideInception(528, 256, 160, 320, 32, 128, 128)
        self.a5, self.b5 = GuideInception(832, 256, 160, 320, 32, 128, 128), GuideInception(832, 384, 192, 384, 48, 128, 128)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(1024, num_classes)
        self.aux1, self.aux2 = GuideAux(512, num_classes), GuideAux(528, num_classes)

    def forward(self, x):
        x = self.pre_layers(x)
        x = self.maxpool(self.b3(self.a3(x)))
        x = self.a4(x)
        aux1 = self.aux1(x)
        x = self.d4(self.c4(self.b4(x)))
        aux2 = self.aux2(x)
        x = self.b5(self.a5(self.maxpool(self.e4(x))))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1))), aux1, aux2


def _guide_to_ours(guide_state: dict) -> dict:
    """Map the guide's parameter names onto torchvision's (conv1.conv.weight, …)."""
    stem = {"pre_layers.0": "conv1.conv", "pre_layers.3": "conv2.conv", "pre_layers.5": "conv3.conv"}
    modules = {
        "a3": "inception3a",
        "b3": "inception3b",
        "a4": "inception4a",
        "b4": "inception4b",
        "c4": "inception4c",
        "d4": "inception4d",
        "e4": "inception4e",
        "a5": "inception5a",
        "b5": "inception5b",
    }
    seq = {
        "branch1.0": "branch1.conv",
        "branch2.0": "branch2.0.conv",
        "branch2.2": "branch2.1.conv",
        "branch3.0": "branch3.0.conv",
        "branch3.2": "branch3.1.conv",
        "branch4.1": "branch4.1.conv",
    }
    out = {}
    for key, value in guide_state.items():
        prefix, _, param = key.rpartition(".")
        if prefix in stem:
            name = f"{stem[prefix]}.{param}"
        elif prefix.split(".")[0] in modules:
            head, _, rest = prefix.partition(".")
            name = f"{modules[head]}.{seq[rest]}.{param}"
        elif prefix in ("aux1.conv", "aux2.conv"):
            name = f"{prefix}.conv.{param}"
        else:
            name = key
        out[name] = value
    return out


def test_plain_network_reproduces_the_guide():
    torch.manual_seed(0)
    guide = GuideGoogLeNet(num_classes=10).eval()
    ours = GoogLeNet(num_classes=10, batch_norm=False).eval()
    ours.load_state_dict(_guide_to_ours(guide.state_dict()), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = guide(x)
        got = ours(x, aux=True)
    for a, b in zip(got, expected):
        assert (a - b).abs().max() <= 1e-5
