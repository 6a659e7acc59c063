"""One channel, in both vocabularies.

This project names channels as the paper does, by branch: ``inception4c.branch3:63``. Lucid,
lucent and OpenAI Microscope name them by module with an index into the module's concatenated
output: ``mixed4c:447`` (inception4c's branches have 128, 256, 64 and 64 channels, so index 447 is
the 64th channel of the third). Lucid also names a branch's own output ``mixed4c_5x5``.
:func:`parse_channel` reads any of these against a live network's :class:`~googlenet.spec.NetworkSpec`
(the split depends on the layout: 4a has 204 3×3 channels in InceptionV1, 208 in torchvision's), and
:class:`ChannelAddress` writes each spelling back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .inceptionv1 import BRANCH_SUFFIX
from .spec import NetworkSpec

__all__ = ["ChannelAddress", "parse_channel", "mixed_name", "module_from_mixed", "branch_from_suffix"]

_SUFFIX_BRANCH = {suffix: branch for branch, suffix in BRANCH_SUFFIX.items()}
_ADDRESS = re.compile(
    r"^\s*(?P<module>(?:inception|mixed)\d[a-e])"
    r"(?:(?:\.(?P<branch>branch\d))|(?:_(?P<suffix>1x1|3x3|5x5|pool_reduce)(?:_pre_relu)?(?:_conv)?))?"
    r"\s*(?::|\s+ch(?:annel)?\s*)(?P<index>\d{1,5})\s*$",
    re.IGNORECASE,
)
EXAMPLES = "'mixed4c:447', 'inception4c.branch3:63', 'mixed4c_5x5:63' or 'inception4c:447'"


def mixed_name(module: str) -> str:
    """``inception4c`` → ``mixed4c`` (Lucid's name)."""
    return "mixed" + module.removeprefix("inception")


def module_from_mixed(name: str) -> str:
    """``mixed4c`` → ``inception4c``; our own names pass through."""
    return "inception" + name.lower().removeprefix("mixed").removeprefix("inception")


def branch_from_suffix(suffix: str) -> str:
    """Lucid's ``1x1 / 3x3 / 5x5 / pool_reduce`` → ``branch1 … branch4``."""
    return _SUFFIX_BRANCH[suffix.lower()]


@dataclass(frozen=True)
class ChannelAddress:
    """One output channel of one Inception module.

    Attributes:
        module: ``"inception4c"``.
        branch: ``"branch3"``.
        channel: index within the branch's output (``63``).
        index: index within the module's concatenated output (``447``), Microscope's number.
        kernel: what the branch computes (``"1×1→5×5"``).
    """

    module: str
    branch: str
    channel: int
    index: int
    kernel: str

    @property
    def branch_name(self) -> str:
        return f"{self.module}.{self.branch}"

    @property
    def ours(self) -> str:
        """``inception4c.branch3:63``."""
        return f"{self.branch_name}:{self.channel}"

    @property
    def microscope(self) -> str:
        """``mixed4c:447``: Lucid's / Microscope's / lucent's ``model.mixed4c`` channel."""
        return f"{mixed_name(self.module)}:{self.index}"

    @property
    def lucid_branch(self) -> str:
        """``mixed4c_5x5:63``: the branch's own output in Lucid's names."""
        return f"{mixed_name(self.module)}_{BRANCH_SUFFIX.get(self.branch, self.branch)}:{self.channel}"


def parse_channel(address: str, spec: NetworkSpec) -> ChannelAddress:
    """Any spelling of a channel → its :class:`ChannelAddress` on the network ``spec`` describes.

    A module-level index (``mixed4c:447`` or ``inception4c:447``) is split into branch and
    channel by the branches' widths; a branch-level one (``inception4c.branch3:63``,
    ``mixed4c_5x5:63``) is checked against the branch's width. ValueError says what is wrong.
    """
    if not isinstance(address, str) or len(address) > 80:
        raise ValueError(f"not a channel address: expected e.g. {EXAMPLES}")
    match = _ADDRESS.match(address)
    if match is None:
        raise ValueError(f"not a channel address: {address.strip()[:80]!r}; expected e.g. {EXAMPLES}")
    module = spec.module(module_from_mixed(match["module"]))
    index = int(match["index"])
    branch_kind = match["branch"] or (branch_from_suffix(match["suffix"]) if match["suffix"] else None)
    if branch_kind is None:
        if index >= module.channels:
            raise ValueError(f"{address.strip()}: {module.name} has {module.channels} channels (0 … {module.channels - 1})")
        branch = next(b for b in module.branches if b.start <= index < b.stop)
        return ChannelAddress(module.name, branch.branch, index - branch.start, index, branch.kernel)
    branch = spec.branch(f"{module.name}.{branch_kind.lower()}")
    if index >= branch.width:
        raise ValueError(f"{address.strip()}: {branch.name} has {branch.width} channels (0 … {branch.width - 1})")
    return ChannelAddress(module.name, branch.branch, index, branch.start + index, branch.kernel)


def all_channels(spec: NetworkSpec) -> list[ChannelAddress]:
    """Every channel of every module, in Microscope's order."""
    return [ChannelAddress(m.name, b.branch, c, b.start + c, b.kernel) for m in spec.modules for b in m.branches for c in range(b.width)]


def layout_spec(source: str = "inceptionv1") -> NetworkSpec:
    """The spec of a model source without loading its weights: addresses depend on the layout
    only. ``inceptionv1`` (Lucid's), ``imagenet`` (torchvision's), ``paper``, ``bundled``, ``random``
    or a ``.safetensors`` checkpoint (its config is read, not its tensors)."""
    from dataclasses import asdict

    from .inceptionv1 import inceptionv1
    from .model import GoogLeNet
    from .spec import describe
    from .weights import BUNDLED_MODEL, read_meta

    if source == "inceptionv1":
        return describe(inceptionv1())
    if source in ("imagenet", "random"):
        return describe(GoogLeNet())
    if source == "paper":
        return describe(GoogLeNet(batch_norm=False))
    config, _ = read_meta(BUNDLED_MODEL if source == "bundled" else source)
    return describe(GoogLeNet(**asdict(config)))
