"""The networks tools/train.py trains jointly (the vision, signal and
decision modules of a package, docs/model.md), the focal loss, and torch's
forward pass over a set of parts.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

VISION_EMBED = 16
SIGNAL_EMBED = 8


class Vision(nn.Module):
    """Small CNN; global max and mean pooling so that one small defect
    anywhere in the image still reaches the head."""

    def __init__(self):
        super().__init__()
        chans = [1, 8, 16, 32, 32, 32]
        layers = []
        for i in range(5):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                       nn.BatchNorm2d(chans[i + 1]), nn.ReLU()]
            if i < 4:
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(64, 1 + VISION_EMBED)

    def forward(self, x):
        h = self.body(x)
        h = torch.cat([self.max_pool(h), self.avg_pool(h)], dim=1)
        return self.head(torch.flatten(h, 1))


class VisionSeg(nn.Module):
    """Segmentation + decision (the surface-defect literature's design):
    a convolutional encoder makes a defect map at a quarter of the input
    resolution, trained against the masks; the vision head sees the map's
    global max and mean and the encoder features' global max and mean, so
    one small defect anywhere reaches it. Dilated convolutions widen the
    view at the map's resolution (about 60 input pixels) for large
    defects (fray, uneven) without upsampling layers OpenCV 4.6 might not
    import."""

    MAP_STRIDE = 4

    def __init__(self, dilations=(2, 4)):
        super().__init__()

        def block(cin, cout, dilation=1):
            return [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
                    nn.BatchNorm2d(cout), nn.ReLU()]

        dilated = [layer for d in dilations for layer in block(48, 48, d)]
        self.body = nn.Sequential(*block(1, 16), nn.MaxPool2d(2),
                                  *block(16, 32), nn.MaxPool2d(2),
                                  *block(32, 48), *dilated)
        self.seg = nn.Conv2d(48, 1, 1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(48 * 2 + 2, 1 + VISION_EMBED)

    def features(self, x):
        h = self.body(x)
        m = self.seg(h)
        pooled = torch.cat([self.max_pool(h), self.avg_pool(h),
                            self.max_pool(m), self.avg_pool(m)], dim=1)
        return self.head(torch.flatten(pooled, 1)), m

    def forward(self, x):
        return self.features(x)[0]


class VisionWithMap(nn.Module):
    """The exported vision module of a segmentation network: two outputs,
    the vision head's [logit, embedding] and the defect map as
    probabilities (sigmoid), the package's heatmap."""

    def __init__(self, vision):
        super().__init__()
        self.vision = vision

    def forward(self, x):
        v, m = self.vision.features(x)
        return v, torch.sigmoid(m)


class Signal(nn.Module):
    """MLP over the vigil-sigfeat-v1 vector; the training set's feature mean
    and std are part of the model (folded into the first layer on export)."""

    def __init__(self, dim, mean, std):
        super().__init__()
        self.register_buffer("feat_mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("feat_std", torch.tensor(std, dtype=torch.float32))
        self.fc1 = nn.Linear(dim, 64)
        self.fc2 = nn.Linear(64, 32)
        self.out = nn.Linear(32, 1 + SIGNAL_EMBED)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        h = (x - self.feat_mean) / self.feat_std
        h = self.drop(F.relu(self.fc1(h)))
        h = F.relu(self.fc2(h))
        return self.out(h)

    def folded(self):
        """The same function with the normalisation inside fc1."""
        g = SignalExport(self.fc1.in_features)
        with torch.no_grad():
            w = self.fc1.weight / self.feat_std
            g.fc1.weight.copy_(w)
            g.fc1.bias.copy_(self.fc1.bias - w @ self.feat_mean)
            g.fc2.load_state_dict(self.fc2.state_dict())
            g.out.load_state_dict(self.out.state_dict())
        return g.eval()


class SignalExport(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, 64)
        self.fc2 = nn.Linear(64, 32)
        self.out = nn.Linear(32, 1 + SIGNAL_EMBED)

    def forward(self, x):
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Decision(nn.Module):
    """Fuses the two modules' outputs. Dropout on its input keeps it from
    leaning on single embedding components the heads do not back."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.3)
        self.fc1 = nn.Linear(2 + VISION_EMBED + SIGNAL_EMBED, 16)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, vs):
        return self.fc2(F.relu(self.fc1(self.drop(vs))))


def focal_bce(logit, target, gamma):
    """Binary cross-entropy, mean over the batch; gamma > 0: each part's
    term weighted by (1 - p_true)^gamma (focal loss, Lin et al. 2017), so
    parts already classified with confidence weigh little and the hard
    ones (a good surface scored high, a faint break) decide the gradient."""
    if gamma <= 0:
        return F.binary_cross_entropy_with_logits(logit, target)
    ce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    p_true = torch.exp(-ce)
    return ((1 - p_true) ** gamma * ce).mean()


def predict(vision, signal, decision, images, signals, batch=256):
    vision.eval(), signal.eval(), decision.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            v = vision(torch.from_numpy(images[i:i + batch]))
            s = signal(torch.from_numpy(signals[i:i + batch]))
            d = decision(torch.cat([v, s], dim=1))
            outs.append(torch.cat([v[:, :1], s[:, :1], d], dim=1))
    return torch.cat(outs).numpy()
