"""Sample grids: small images upscaled nearest-neighbour, a PNG marker, and grid detection."""
import json

import numpy as np
import torch
from PIL import Image

from src.callbacks.samples import GRID_KEY, is_sample_grid, save_grid


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return np.floor((x.clamp(-1, 1).numpy().astype(np.float64) + 1) / 2 * 255 + 0.5).astype(np.uint8)


def test_digit_sized_grid_is_upscaled_nearest_neighbour(tmp_path):
    # values in [-1, 1] with both ends present, so make_grid's normalize=True (range -1..1) is the identity map
    images = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    images[0, 0, 0, 0], images[0, 0, 0, 1] = -1.0, 1.0
    save_grid(images, tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as im:
        grid = np.asarray(im.convert("RGB"))
        meta = json.loads(im.info[GRID_KEY])
    # 8 x 8 images of 8 px with 2 px padding make an 82 px grid; upscaled x4 to 328 px (>= 256)
    assert grid.shape == (328, 328, 3) and meta["scale"] == 4 and meta["image_size"] == [1, 8, 8]
    expected = to_uint8(images)
    for i in (0, 9, 63):
        r, c = divmod(i, 8)
        top, left = (2 + r * 10) * 4, (2 + c * 10) * 4
        block = grid[top:top + 32, left:left + 32, 0]
        np.testing.assert_array_equal(block, np.kron(expected[i, 0], np.ones((4, 4), dtype=np.uint8)))


def test_cifar_sized_grid_keeps_its_size(tmp_path):
    images = torch.rand(64, 3, 32, 32) * 2 - 1
    save_grid(images, tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (274, 274) and json.loads(im.info[GRID_KEY])["scale"] == 1


def test_grid_detection(tmp_path):
    save_grid(torch.rand(4, 3, 8, 8) * 2 - 1, tmp_path / "anywhere.png")
    assert is_sample_grid(tmp_path / "anywhere.png")  # the marker travels with a copied grid
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "plain.png")
    assert not is_sample_grid(tmp_path / "plain.png")
    # a grid written before the marker existed: a run's samples/final.png or samples/step_*.png
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    for name in ("final.png", "step_0000100.png", "0001.png"):
        Image.fromarray(np.zeros((82, 82, 3), np.uint8)).save(run / "samples" / name)
    assert is_sample_grid(run / "samples" / "final.png") and is_sample_grid(run / "samples" / "step_0000100.png")
    assert not is_sample_grid(run / "samples" / "0001.png")
    (tmp_path / "samples").mkdir()  # a folder that happens to be called samples, outside a run
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "samples" / "final.png")
    assert not is_sample_grid(tmp_path / "samples" / "final.png")
