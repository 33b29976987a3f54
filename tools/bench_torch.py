#!/usr/bin/python3
"""PyTorch (CPU) mirror of swavgpu's default SwAV training step, for `npm run bench`.

Same model (small ResNet of width 8, blocks [1, 1, 1], head 32 -> 64 -> BN -> ReLU -> 32,
100 prototypes without bias), same crops (2 x 28 px and 4 x 14 px per image, resized crops
with flip and brightness/contrast jitter, normalised), batch 64, Sinkhorn codes (eps 0.05,
3 iterations) of the two global crops, the swapped cross-entropy at temperature 0.1, and
LARS (apex's LARC around SGD with momentum 0.9, weight decay 1e-6, trust 0.001) with the
warm-up + cosine rate and prototypes frozen for the first 40 steps. Config values mirror
src/swav/config.ts's defaultConfig; change both together.

Usage:
  /usr/bin/python3 tools/bench_torch.py --steps 10 [--threads N]
                                                      one JSON line: images/s over the steps
  /usr/bin/python3 tools/bench_torch.py --serve       JSON requests on stdin (the bench's
                                                      worker protocol: info, prepare,
                                                      sample, finish, quit)
"""

import argparse
import gzip
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# src/swav/config.ts defaultConfig
CFG = dict(
    batch_size=64,
    crops=[dict(count=2, size=28, scale=(0.4, 1.0)), dict(count=4, size=14, scale=(0.15, 0.4))],
    assign=[0, 1],
    flip=0.5,
    jitter_strength=0.4,
    jitter_p=0.8,
    width=8,
    blocks=[1, 1, 1],
    hidden=64,
    feat_dim=32,
    prototypes=100,
    temperature=0.1,
    epsilon=0.05,
    sinkhorn_iterations=3,
    base_lr=2.4,
    final_lr=0.0024,
    warmup_epochs=0.05,
    weight_decay=1e-6,
    momentum=0.9,
    lars_trust=0.001,
    lars_eps=1e-8,
    freeze_prototypes_steps=40,
    mean=0.286,
    std=0.353,
    epochs=1,
)

FASHION_DIR = '/usr/share/datasets/fashion-mnist'


# ---- data ----------------------------------------------------------------------------------

def load_images(count, data_dir):
    """The first `count` Fashion-MNIST training images as [count, 28, 28] uint8, or the
    bench's seeded noise (the same LCG as tools/bench/ours.ts) where the file is missing."""
    path = os.path.join(data_dir, 'train-images-idx3-ubyte.gz') if data_dir else ''
    if path and os.path.exists(path):
        with gzip.open(path, 'rb') as f:
            header = f.read(16)
            n, rows, cols = (int.from_bytes(header[i:i + 4], 'big') for i in (4, 8, 12))
            count = min(count, n)
            raw = f.read(count * rows * cols)
        images = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(count, rows, cols)
        return images, f'the first {count} Fashion-MNIST training images'
    out = bytearray(count * 28 * 28)
    s = 12345
    for i in range(len(out)):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = s >> 24
    return torch.frombuffer(out, dtype=torch.uint8).view(count, 28, 28), f'{count} synthetic images'


def crop_boxes(n, height, width, scale, gen):
    """torchvision's RandomResizedCrop boxes, ratio (3/4, 4/3), 10 tries then the centre."""
    area = height * width
    log_lo, log_hi = math.log(3 / 4), math.log(4 / 3)
    r = torch.rand(n, 10, 4, generator=gen).tolist()
    boxes = []
    for tries in r:
        for t in tries:
            target = area * (scale[0] + (scale[1] - scale[0]) * t[0])
            aspect = math.exp(log_lo + (log_hi - log_lo) * t[1])
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                y0 = int(t[2] * (height - h + 1))
                x0 = int(t[3] * (width - w + 1))
                boxes.append((x0, y0, w, h))
                break
        else:
            boxes.append((0, 0, width, height))
    return torch.tensor(boxes, dtype=torch.float32)


def multi_crop(images, size, boxes, gen):
    """Resized crops (bilinear), flip, brightness/contrast jitter in a random order, then
    normalisation: one batched grid_sample, as our GPU kernel makes all crops at once."""
    n = boxes.shape[0]
    _, height, width = images.shape
    x0, y0, w, h = boxes.unbind(1)
    flip = torch.rand(n, generator=gen) < CFG['flip']
    # Affine map from output coordinates in [-1, 1] to source coordinates in [-1, 1].
    sx = w / width
    sy = h / height
    cx = (2 * x0 + w) / width - 1
    cy = (2 * y0 + h) / height - 1
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -sx, sx)
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    v = F.grid_sample(images.unsqueeze(1), grid, mode='bilinear', padding_mode='border',
                      align_corners=False)
    s = CFG['jitter_strength']
    apply = torch.rand(n, 1, 1, 1, generator=gen) < CFG['jitter_p']
    lo, hi = max(0.0, 1 - s), 1 + s
    b = torch.where(apply, lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=gen), torch.ones(1))
    c = torch.where(apply, lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=gen), torch.ones(1))
    contrast_first = torch.rand(n, 1, 1, 1, generator=gen) < 0.5

    def bright(x):
        return (x * b).clamp(0, 1)

    def contrast(x):
        m = x.mean(dim=(2, 3), keepdim=True)
        return ((x - m) * c + m).clamp(0, 1)

    v = torch.where(contrast_first, bright(contrast(v)), contrast(bright(v)))
    return (v - CFG['mean']) / CFG['std']


# ---- model ---------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, in_c, out_c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, out_c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_c)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_c)
        self.downsample = None
        if stride != 1 or in_c != out_c:
            self.downsample = nn.Sequential(nn.Conv2d(in_c, out_c, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_c))

    def forward(self, x):
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        s = x if self.downsample is None else self.downsample(x)
        return F.relu(h + s)


class ResNet(nn.Module):
    def __init__(self, width, blocks):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, c = [], width
        for s, n in enumerate(blocks):
            out_c = width * 2 ** s
            stage = []
            for b in range(n):
                stage.append(BasicBlock(c, out_c, (1 if s == 0 else 2) if b == 0 else 1))
                c = out_c
            layers.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*layers)
        self.out_channels = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x):
        h = self.layers(F.relu(self.bn1(self.conv1(x))))
        return h.mean(dim=(2, 3))


class SwavModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = ResNet(CFG['width'], CFG['blocks'])
        c = self.backbone.out_channels
        self.projection_head = nn.Sequential(nn.Linear(c, CFG['hidden']),
                                             nn.BatchNorm1d(CFG['hidden']), nn.ReLU(),
                                             nn.Linear(CFG['hidden'], CFG['feat_dim']))
        self.prototypes = nn.Linear(CFG['feat_dim'], CFG['prototypes'], bias=False)

    def forward(self, groups):
        # The backbone once per resolution, the head once over every crop (one BN batch).
        feats = torch.cat([self.backbone(g) for g in groups])
        z = F.normalize(self.projection_head(feats), dim=1, p=2)
        return z, self.prototypes(z)


@torch.no_grad()
def sinkhorn(scores):
    """The official distributed_sinkhorn on one process; the max is subtracted first, as
    src/reference/sinkhorn.ts does (a constant factor the first normalisation removes)."""
    q = torch.exp((scores - scores.max()) / CFG['epsilon']).t()
    b, k = q.shape[1], q.shape[0]
    q /= q.sum()
    for _ in range(CFG['sinkhorn_iterations']):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t()


def swav_loss(scores, batch, crops):
    loss = 0
    for crop in CFG['assign']:
        q = sinkhorn(scores[batch * crop:batch * (crop + 1)].detach())
        sub = 0
        for v in range(crops):
            if v == crop:
                continue
            x = scores[batch * v:batch * (v + 1)] / CFG['temperature']
            sub -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
        loss += sub / (crops - 1)
    return loss / len(CFG['assign']), q


def warmup_cosine(step, warmup, total, base, final):
    if step < warmup:
        return 0.0 if warmup == 1 else base * step / (warmup - 1)
    t = step - warmup
    cosine = total - warmup
    if t >= cosine:
        return final
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * t / cosine))


@torch.no_grad()
def lars_step(params, bufs, lr):
    """apex LARC (clip off) then SGD with momentum: a = trust |p| / (|g| + wd |p| + eps),
    g' = (g + wd p) a where both norms are nonzero; buf = m buf + g'; p -= lr buf."""
    wd, m = CFG['weight_decay'], CFG['momentum']
    for i, p in enumerate(params):
        if p.grad is None:
            continue
        g = p.grad
        pn, gn = torch.norm(p), torch.norm(g)
        if pn != 0 and gn != 0:
            a = CFG['lars_trust'] * pn / (gn + pn * wd + CFG['lars_eps'])
            g = (g + wd * p) * a
        if bufs[i] is None:
            bufs[i] = g.clone()
        else:
            bufs[i].mul_(m).add_(g)
        p.sub_(lr * bufs[i])


class Trainer:
    def __init__(self, images, seed=0):
        torch.manual_seed(seed)
        self.images = images
        self.model = SwavModel()
        self.params = list(self.model.parameters())
        self.bufs = [None] * len(self.params)
        self.gen = torch.Generator().manual_seed(seed)
        b = CFG['batch_size']
        self.steps_per_epoch = images.shape[0] // b
        self.total = max(1, round(CFG['epochs'] * self.steps_per_epoch))
        self.warmup = min(self.total, round(CFG['warmup_epochs'] * self.steps_per_epoch))
        self.step = 0
        self.order = torch.randperm(images.shape[0], generator=self.gen)

    def run_step(self):
        b = CFG['batch_size']
        k = self.step % self.steps_per_epoch
        if k == 0 and self.step > 0:
            self.order = torch.randperm(self.images.shape[0], generator=self.gen)
        idx = self.order[k * b:(k + 1) * b]
        imgs = self.images[idx].float() / 255
        lr = warmup_cosine(self.step, self.warmup, self.total, CFG['base_lr'], CFG['final_lr'])
        self.model.train()
        with torch.no_grad():
            w = self.model.prototypes.weight
            w.copy_(F.normalize(w, dim=1, p=2))
        groups = []
        for g in CFG['crops']:
            boxes = crop_boxes(b * g['count'], 28, 28, g['scale'], self.gen)
            src = imgs.repeat(g['count'], 1, 1)  # crop-major: crop c of image i at c * b + i
            groups.append(multi_crop(src, g['size'], boxes, self.gen))
        crops = sum(g['count'] for g in CFG['crops'])
        _, scores = self.model(groups)
        loss, _ = swav_loss(scores, b, crops)
        for p in self.params:
            p.grad = None
        loss.backward()
        if self.step < CFG['freeze_prototypes_steps']:
            self.model.prototypes.weight.grad = None
        lars_step(self.params, self.bufs, lr)
        self.step += 1
        return loss.item()


def choose_threads(trainer, forced):
    """PyTorch's thread count picked by timing: 1 and every core, the faster of two steps
    each (its own default here was 1; under load, OpenMP's waiting threads can make 2 slower
    than 1, on an idle machine 2 is faster), unless `forced` names one."""
    if forced:
        torch.set_num_threads(forced)
        return forced, 'forced'
    times = {}
    for n in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(n)
        best = math.inf
        for _ in range(2):
            t0 = time.perf_counter()
            trainer.run_step()
            best = min(best, time.perf_counter() - t0)
        times[n] = best
    n = min(times, key=times.get)
    torch.set_num_threads(n)
    tried = ', '.join(f'{k}: {v * 1000:.0f} ms/step' for k, v in times.items())
    return n, f'chosen by timing: {tried}'


def serve(args):
    """The bench's worker protocol, one JSON request per stdin line, one reply per line."""
    trainer = None
    inner = 1

    def reply(obj):
        sys.stdout.write(json.dumps(obj) + '\n')
        sys.stdout.flush()

    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        rid, cmd = req['id'], req['cmd']
        try:
            if cmd == 'info':
                value = dict(contestant='torch',
                             adapter='CPU',
                             version=f'torch {torch.__version__}')
            elif cmd == 'prepare':
                spec = req['spec']
                if spec['kind'] != 'swav-step':
                    raise ValueError(f"torch mirrors only the SwAV step, not {spec['kind']}")
                images, source = load_images(spec['images'], spec.get('data') or '')
                trainer = Trainer(images)
                t0 = time.perf_counter()
                trainer.run_step()
                first = (time.perf_counter() - t0) * 1000
                threads, tried = choose_threads(trainer, spec.get('threads') or 0)
                t0 = time.perf_counter()
                trainer.run_step()
                ms = (time.perf_counter() - t0) * 1000
                inner = max(1, min(req['maxInner'], math.ceil(req['targetMs'] / max(ms, 1e-3))))
                plural = 's' if threads != 1 else ''
                value = dict(inner=inner, firstMs=first,
                             note=f'{source}; {threads} intra-op thread{plural} ({tried})')
            elif cmd == 'sample':
                t0 = time.perf_counter()
                for _ in range(inner):
                    trainer.run_step()
                value = dict(ms=(time.perf_counter() - t0) * 1000 / inner)
            elif cmd == 'finish':
                trainer = None
                value = {}
            elif cmd == 'quit':
                reply(dict(id=rid, ok=True, value=None))
                return
            else:
                raise ValueError(f'unknown command {cmd}')
            reply(dict(id=rid, ok=True, value=value))
        except Exception as e:  # the parent shows the message in the table
            reply(dict(id=rid, ok=False, error=f'{type(e).__name__}: {e}'))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--serve', action='store_true')
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--images', type=int, default=2048)
    ap.add_argument('--data', default=FASHION_DIR)
    ap.add_argument('--threads', type=int, default=0, help='intra-op threads (0: PyTorch default)')
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.serve:
        serve(args)
        return
    images, source = load_images(args.images, args.data)
    trainer = Trainer(images)
    trainer.run_step()
    t0 = time.perf_counter()
    losses = [trainer.run_step() for _ in range(args.steps)]
    s = time.perf_counter() - t0
    print(json.dumps(dict(images_per_s=CFG['batch_size'] * args.steps / s, steps=args.steps,
                          seconds=s, last_loss=losses[-1], images=source,
                          threads=torch.get_num_threads(), torch=torch.__version__)))


if __name__ == '__main__':
    main()
