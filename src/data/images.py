"""Decoding and resizing images into uint8 tensors (N, C, H, W)."""
import torch
import torch.nn.functional as F


def resize_uint8(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Area-resize (anti-aliased) uint8 NCHW images to resolution x resolution (center-cropped to square)."""
    n, c, h, w = images.shape
    side = min(h, w)
    if h != w:
        top, left = (h - side) // 2, (w - side) // 2
        images = images[:, :, top:top + side, left:left + side]
    if side == resolution:
        return images.contiguous()
    out = []
    for chunk in images.split(2048):
        x = F.interpolate(chunk.float(), size=(resolution, resolution), mode="area" if side > resolution else "bilinear",
                          **({} if side > resolution else {"align_corners": False}))
        out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)
