"""SimpleConvNet: a small plain CNN, the example of a backbone given by ``class_path``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class SimpleConvNet(nn.Module):
    """A small plain CNN: conv-BN-ReLU blocks of stride 2, returning its last feature map.

    An example of a backbone given by ``class_path`` in a config
    (docs/guides/backbones.md), small enough to train the demo in seconds. It returns a
    (B, widths[-1], H', W') map, which ``SPMLModule`` averages over H' and W'.

    Args:
        widths: output channels of each block (its number of blocks).
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be one or more positive channel counts, got {widths}.")
        self.widths = [int(w) for w in widths]
        layers: list[nn.Module] = []
        channels = 3
        for width in self.widths:
            layers += [
                nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.num_features = channels

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) -> feature map (B, widths[-1], H / 2^blocks, W / 2^blocks)."""
        return self.features(images)
