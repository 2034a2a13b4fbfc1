"""A student's class as the tests of issue 18 write it: functional ops, batch norm without affine, `classes`."""

import torch
from torch import nn
from torch.nn import functional as F


class Net(nn.Module):
    def __init__(self, in_channels=1, classes=10, width=8):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width, affine=False)
        self.conv2 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.fc = nn.Linear(width * 7 * 7, classes)

    def forward(self, x):
        a = F.max_pool2d(F.elu(self.bn(self.conv1(x))), 2)
        b = F.interpolate(F.max_pool2d(a, 2), scale_factor=2)
        a = F.max_pool2d(F.elu(self.conv2(torch.cat([a, b], dim=1))), 2)
        return self.fc(a.view(a.size(0), -1))


def make_net(width=8, classes=10):
    return Net(1, classes, width)
