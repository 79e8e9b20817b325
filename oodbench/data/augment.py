"""Training augmentation on whole batches of pixel tensors, on their device.

- :func:`random_crop_flip`: random crop with zero padding and horizontal flip, one gather for the
  whole batch;
- :func:`random_resized_crop`: torchvision's ``RandomResizedCrop`` back to the image's size, boxes
  drawn per image as torchvision draws them, resampled for the whole batch in one ``grid_sample``;
- :class:`JitterAffine`: torchvision's ``ColorJitter`` then ``RandomAffine`` with every image's own
  parameters, drawn exactly as the two transforms draw them image by image, then applied to the
  whole batch at once. A per-image loop leaves a GPU idle between dozens of tiny kernels: on an
  H100 it took 70-100% of a Multiple Input Mixup step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms._functional_tensor import _hsv2rgb, _rgb2hsv
from torchvision.transforms.functional import _get_inverse_affine_matrix

from oodbench.data.batches import to_device


def random_crop_flip(pixels: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` applied per sample to ``B x C x H x W``.

    Randomness comes from ``generator`` (on the CPU), so a seeded run is reproducible; the result
    keeps the input's memory format.
    """
    b, c, h, w = pixels.shape
    channels_last = pixels.is_contiguous(memory_format=torch.channels_last) and not pixels.is_contiguous()
    if padding > 0:
        padded = F.pad(pixels, (padding, padding, padding, padding))
        dy, dx = to_device(torch.randint(0, 2 * padding + 1, (2, b), generator=generator), pixels.device)
        rows = (dy.view(b, 1) + torch.arange(h, device=pixels.device)).view(b, 1, h, 1)
        cols = (dx.view(b, 1) + torch.arange(w, device=pixels.device)).view(b, 1, 1, w)
        batch = torch.arange(b, device=pixels.device).view(b, 1, 1, 1)
        channel = torch.arange(c, device=pixels.device).view(1, c, 1, 1)
        pixels = padded[batch, channel, rows, cols]
    if flip:
        mask = to_device(torch.rand(b, generator=generator) < 0.5, pixels.device)
        pixels = torch.where(mask.view(-1, 1, 1, 1), pixels.flip(3), pixels)
    return pixels.contiguous(memory_format=torch.channels_last) if channels_last else pixels


def _resized_crop_box(height: int, width: int, generator: torch.Generator, scale: tuple[float, float] = (0.08, 1.0),
                      ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of one crop, drawn as ``torchvision.transforms.RandomResizedCrop.get_params`` draws it:
    ten tries at an area and a log-uniform aspect ratio that fit, else the centre crop of the clamped ratio."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)).item()
        w, h = int(round((target * aspect) ** 0.5)), int(round((target / aspect) ** 0.5))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    aspect = width / height
    if aspect < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif aspect > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``RandomResizedCrop(size)`` (scale 0.08-1, aspect 3/4-4/3, bilinear) of every image of ``B x C x H x W``
    back to ``H x W``. The boxes come from ``generator`` (on the CPU); the resampling is one bilinear
    ``grid_sample`` over the batch (without the antialiasing torchvision applies when it shrinks a crop)."""
    b, _, h, w = pixels.shape
    boxes = torch.tensor([_resized_crop_box(h, w, generator) for _ in range(b)], dtype=torch.float32)
    top, left, height, width = boxes.unbind(dim=1)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = width / w, height / h  # align_corners=False: box centre and extent in [-1, 1]
    theta[:, 0, 2] = (2 * left + width) / w - 1
    theta[:, 1, 2] = (2 * top + height) / h - 1
    grid = F.affine_grid(to_device(theta, pixels.device).to(pixels.dtype), list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _blend(images: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """``ratio * images + rest * other`` in [0, 1], per image (``rest`` = 1 - ratio, computed in double as torchvision does)."""
    return (ratio * images + rest * other).clamp(0, 1)


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(dim=-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(dim=-3)


def _hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    h, s, v = _rgb2hsv(images).unbind(dim=-3)
    return _hsv2rgb(torch.stack(((h + shift.view(-1, 1, 1)) % 1.0, s, v), dim=-3))


#: ColorJitter's operations in the order of its ``fn_idx``: brightness, contrast, saturation, hue
_COLOUR_OPS = (
    lambda x, f, rest: _blend(x, torch.zeros_like(x), f, rest),
    lambda x, f, rest: _blend(x, _grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), f, rest),
    lambda x, f, rest: _blend(x, _grayscale(x), f, rest),
    lambda x, f, rest: _hue(x, f),
)


@dataclass(frozen=True)
class JitterAffine:
    """``Compose([ColorJitter(brightness, contrast, saturation, hue), RandomAffine(degrees, translate)])``
    (nearest interpolation, zero fill) of RGB float images in [0, 1], computed for a batch.

    Image ``i`` gets the parameters that torchvision would draw for it from torch's global generator
    when applied to the images one after the other: the result equals that per-image loop up to
    floating-point rounding (:meth:`reference` is that pipeline).
    """

    brightness: float
    contrast: float
    saturation: float
    hue: float
    degrees: float
    translate: float

    def reference(self) -> T.Compose:
        return T.Compose([T.ColorJitter(self.brightness, self.contrast, self.saturation, self.hue),
                          T.RandomAffine(self.degrees, translate=(self.translate, self.translate))])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(images.device.type, enabled=False):  # float32 as the reference, inside a training step too
            return self._apply(images)

    def _apply(self, images: torch.Tensor) -> torch.Tensor:
        n, _, height, width = images.shape
        if n == 0:
            return images
        jitter, affine = self.reference().transforms
        orders, factors, matrices = [], [], []
        for _ in range(n):  # the draws of the per-image loop, in its order
            order, *colour = jitter.get_params(jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
            angle, shift, scale, shear = affine.get_params(affine.degrees, affine.translate, affine.scale, affine.shear,
                                                           [width, height])
            orders.append(order)
            factors.append(colour)
            matrices.append(_get_inverse_affine_matrix([0.0, 0.0], angle, [1.0 * t for t in shift], scale, shear))
        device = images.device
        ratio = to_device(torch.tensor(factors, dtype=torch.float32), device)  # n x 4
        rest = to_device(torch.tensor([[1.0 - f for f in row] for row in factors], dtype=torch.float32), device)
        orders = torch.stack(orders)  # n x 4: the k-th operation of image i is _COLOUR_OPS[orders[i, k]]
        out = images.to(torch.float32, memory_format=torch.contiguous_format, copy=True)  # the input stays as it is
        for position in range(4):
            for op in range(4):
                chosen = (orders[:, position] == op).nonzero().flatten()
                if len(chosen):
                    index = to_device(chosen, device)
                    f, r = ratio[index, op].view(-1, 1, 1, 1), rest[index, op].view(-1, 1, 1, 1)
                    out[index] = _COLOUR_OPS[op](out[index], f, r)
        return self._warp(out, to_device(torch.tensor(matrices, dtype=torch.float32), device).view(n, 2, 3))

    @staticmethod
    def _warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``RandomAffine``'s sampling (torchvision's pixel-centred grid, nearest, zeros outside) with one inverse matrix per image."""
        n, _, height, width = images.shape
        xs = torch.linspace(-width * 0.5 + 0.5, width * 0.5 - 0.5, steps=width, device=images.device)
        ys = torch.linspace(-height * 0.5 + 0.5, height * 0.5 - 0.5, steps=height, device=images.device)
        base = torch.stack([xs.expand(height, width), ys.view(-1, 1).expand(height, width), torch.ones(height, width, device=images.device)], dim=-1)
        scale = torch.tensor([0.5 * width, 0.5 * height], device=images.device)
        grid = base.view(1, height * width, 3).expand(n, -1, -1).bmm(theta.transpose(1, 2) / scale)
        return F.grid_sample(images, grid.view(n, height, width, 2), mode=InterpolationMode.NEAREST.value, padding_mode="zeros",
                             align_corners=False)
