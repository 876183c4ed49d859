"""PyTorch twins of lasres's legacy pre-activation nets (the same layers in
the same order), with weight transfer from a lasres network, for side-by-side
speed and accuracy comparisons. PyTorch is never a dependency of lasres.

Conversions: lasres/Lasagne convolutions correlate (Conv2DDNNLayer), as
PyTorch's do; Lasagne's DenseLayer W is (in, out), PyTorch's Linear weight
(out, in); BatchNormLayer stores ``inv_std`` where PyTorch stores
``running_var = 1 / inv_std**2 - eps``.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-4


def _bn(c):
    return nn.BatchNorm2d(c, eps=EPS, momentum=0.1)


class Block(nn.Module):
    """Pre-activation block; ``first`` has no BN-ReLU of its own."""

    def __init__(self, cin, cout, stride, first, projection, bottleneck):
        super().__init__()
        self.first = first
        if not first:
            self.bn_pre = _bn(cin)
        mid = cout // 4 if bottleneck else cout
        if bottleneck:
            self.convs = nn.ModuleList([nn.Conv2d(cin, mid, 1, bias=False),
                                        nn.Conv2d(mid, mid, 3, stride, 1, bias=False),
                                        nn.Conv2d(mid, cout, 1, bias=True)])
            self.bns = nn.ModuleList([_bn(mid), _bn(mid)])
        else:
            self.convs = nn.ModuleList([nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                                        nn.Conv2d(cout, cout, 3, 1, 1, bias=True)])
            self.bns = nn.ModuleList([_bn(cout)])
        self.proj = nn.Conv2d(cin, cout, 1, stride, bias=False) if projection else None

    def forward(self, x):
        pre = x if self.first else F.relu(self.bn_pre(x))
        h = pre
        for conv, bn in zip(self.convs[:-1], self.bns):
            h = F.relu(bn(conv(h)))
        h = self.convs[-1](h)
        return h + (self.proj(pre) if self.proj is not None else x)


class PreActResNet(nn.Module):
    """``normal`` (6n+2), ``bottleneck`` (9n+2) or ``wide`` (n, n+2, n+2 blocks)."""

    def __init__(self, kind="normal", n=3, k=1, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.stem_bn = _bn(16)
        if kind == "normal":
            widths, counts, bott, first_proj = (16, 32, 64), (n, n, n), False, False
        elif kind == "bottleneck":
            widths, counts, bott, first_proj = (64, 128, 256), (n, n, n), True, True
        else:
            widths, counts, bott, first_proj = (16 * k, 32 * k, 64 * k), (n, n + 2, n + 2), \
                False, True
        blocks, cin = [], 16
        for s, (w, c) in enumerate(zip(widths, counts)):
            for i in range(c):
                first = s == 0 and i == 0
                stride = 2 if s > 0 and i == 0 else 1
                proj = (s > 0 and i == 0) or (first and first_proj)
                blocks.append(Block(cin, w, stride, first, proj, bott))
                cin = w
        self.blocks = nn.ModuleList(blocks)
        self.bn_post = _bn(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        for b in self.blocks:
            x = b(x)
        x = F.relu(self.bn_post(x))
        return self.fc(x.mean(dim=(2, 3)))  # logits; softmax in the loss

    def lasagne_order(self):
        """(module, kind) pairs in lasres/Lasagne parameter order."""
        order = [(self.stem, "conv"), (self.stem_bn, "bn")]
        for b in self.blocks:
            if not b.first:
                order.append((b.bn_pre, "bn"))
            for conv, bn in zip(b.convs[:-1], b.bns):
                order += [(conv, "conv"), (bn, "bn")]
            order.append((b.convs[-1], "conv"))
            if b.proj is not None:
                order.append((b.proj, "conv"))
        order += [(self.bn_post, "bn"), (self.fc, "dense")]
        return order

    @torch.no_grad()
    def load_lasagne_values(self, values):
        """Copy a lasres ``get_all_param_values`` list into this model."""
        it = iter(values)
        for module, kind in self.lasagne_order():
            if kind == "conv":
                module.weight.copy_(torch.from_numpy(np.asarray(next(it))))
                if module.bias is not None:
                    module.bias.copy_(torch.from_numpy(np.asarray(next(it))))
            elif kind == "bn":
                beta, gamma, mean, inv_std = (np.asarray(next(it)) for _ in range(4))
                module.bias.copy_(torch.from_numpy(beta))
                module.weight.copy_(torch.from_numpy(gamma))
                module.running_mean.copy_(torch.from_numpy(mean))
                module.running_var.copy_(torch.from_numpy(1.0 / inv_std.astype(np.float64) ** 2
                                                          - EPS).float())
            else:
                module.weight.copy_(torch.from_numpy(np.asarray(next(it)).T.copy()))
                module.bias.copy_(torch.from_numpy(np.asarray(next(it))))
        rest = list(it)
        if rest:
            raise ValueError(f"{len(rest)} values left over")

    def legacy_optimizer(self, lr=0.01, momentum=0.9, l2=1e-4):
        """SGD with Nesterov momentum and the legacy L2 (1e-4·Σp² over conv and
        dense weights and BN gammas, i.e. weight decay 2e-4 on those)."""
        decay, plain = [], []
        for module, kind in self.lasagne_order():
            if kind in ("conv", "dense"):
                decay.append(module.weight)
                if module.bias is not None:
                    plain.append(module.bias)
            else:
                decay.append(module.weight)
                plain.append(module.bias)
        return torch.optim.SGD([{"params": decay, "weight_decay": 2 * l2},
                                {"params": plain, "weight_decay": 0.0}],
                               lr=lr, momentum=momentum, nesterov=True)
