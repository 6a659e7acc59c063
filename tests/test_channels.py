"""Channel addresses in both vocabularies: Microscope's mixed4c:447 ↔ inception4c.branch3:63."""

from __future__ import annotations

import pytest

from googlenet.channels import all_channels, layout_spec, parse_channel
from googlenet.inceptionv1 import inceptionv1
from googlenet.model import GoogLeNet
from googlenet.spec import describe

LAYOUTS = {
    "inceptionv1": lambda: inceptionv1(),
    "torchvision": lambda: GoogLeNet(),
    "paper": lambda: GoogLeNet(batch_norm=False),
    "cifar-narrow": lambda: GoogLeNet(num_classes=10, stem="cifar", width=0.25, aux_logits=False),
}


def test_the_microscope_example():
    spec = layout_spec("inceptionv1")
    channel = parse_channel("mixed4c:447", spec)
    assert (channel.ours, channel.microscope, channel.lucid_branch) == ("inception4c.branch3:63", "mixed4c:447", "mixed4c_5x5:63")
    assert parse_channel("inception4c.branch3:63", spec) == channel
    assert parse_channel("mixed4c_5x5_pre_relu_conv:63", spec) == channel
    assert parse_channel("inception4c.branch3 ch 63", spec) == channel


def test_split_follows_the_layout():
    """4a's 3×3 has 204 channels in InceptionV1 and 208 in torchvision's: index 400 differs."""
    assert parse_channel("mixed4a:400", layout_spec("inceptionv1")).ours == "inception4a.branch3:4"
    assert parse_channel("mixed4a:400", layout_spec("imagenet")).ours == "inception4a.branch3:0"


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_mapping_is_a_bijection(layout):
    spec = describe(LAYOUTS[layout]())
    channels = all_channels(spec)
    assert len(channels) == sum(m.channels for m in spec.modules)
    seen_ours, seen_microscope = set(), set()
    for channel in channels:
        there = parse_channel(channel.microscope, spec)
        back = parse_channel(there.ours, spec)
        assert there == back == channel
        assert parse_channel(channel.lucid_branch, spec) == channel
        seen_ours.add(channel.ours)
        seen_microscope.add(channel.microscope)
    assert len(seen_ours) == len(seen_microscope) == len(channels)  # injective both ways, so a bijection
    for module in spec.modules:
        with pytest.raises(ValueError, match=f"has {module.channels} channels"):
            parse_channel(f"mixed{module.short}:{module.channels}", spec)


@pytest.mark.parametrize("bad", ["", "mixed4c", "mixed4c:-1", "mixed9z:3", "inception4c.branch7:1", "mixed4c:12:3", "x" * 200])
def test_bad_addresses_say_why(bad):
    with pytest.raises(ValueError, match="channel address|unknown|channels"):
        parse_channel(bad, layout_spec("inceptionv1"))


def test_cli_prints_the_other_spelling(capsys):
    from googlenet.__main__ import main

    assert main(["channel", "mixed4c:447"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "inception4c.branch3:63"
    assert main(["channel", "inception4c.branch3:63", "--model", "inceptionv1"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "mixed4c:447"
    assert main(["channel", "mixed4c:9999"]) == 1
    assert "512 channels" in capsys.readouterr().err
    assert main(["channel", "mixed4c:3", "--model", "bundled"]) == 0
