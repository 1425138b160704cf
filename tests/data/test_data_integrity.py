"""Hostile and odd data (issue 12, items 1, 8, 9): no code runs from a data file, no silently wrong pixels,
no stale or corrupted cache used as training data, one-line errors for data values that would crash later."""
import logging
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import make_cifar10, make_image_folder, run_cli, train_in_process
from src.data import GANDataModule
from src.data.image_folder import _decode, list_images
from src.errors import ConfigError, DataError

FAST = ["steps=2", "metrics=none", "callbacks=none", "logger=none", "samples.every=0", "checkpoint.every=0",
        "trainer.enable_progress_bar=false"]


def folder_dm(root, **kw):
    args = dict(name="image_folder", root=str(root), resolution=16, channels=3, batch_size=4)
    args.update(kw)
    return GANDataModule(**args)


def one_line(exc_info, *needles):
    message = str(exc_info.value)
    assert "\n" not in message and "Traceback" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


# ---- item 1: a crafted CIFAR-10 batch must not run code ----------------------------------------------------

class _Payload:
    """Unpickling this calls ``func(*args)``: what a hostile data_batch_1 would do."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path):
    import builtins
    import subprocess

    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.open": _Payload(builtins.open, str(marker), "w"),
        "builtins.exec": _Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.call": _Payload(subprocess.call, ["touch", str(marker)]),
        "pathlib.Path.touch": _Payload(Path.touch, marker),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.open", "builtins.exec", "subprocess.call", "pathlib.Path.touch"])
@pytest.mark.parametrize("where", ["whole file", "inside the data entry"])
def test_crafted_cifar_batch_runs_no_code_and_is_refused(tmp_path, kind, where):
    root = make_cifar10(tmp_path / "cifar", n_per_batch=4)
    marker = tmp_path / "PWNED"
    payload = _payloads(marker)[kind]
    obj = payload if where == "whole file" else {"batch_label": "x", "labels": [0] * 4, "data": payload, "filenames": []}
    bad = root / "cifar-10-batches-py" / "data_batch_1"
    bad.write_bytes(pickle.dumps(obj, protocol=2))
    dm = GANDataModule(name="cifar10", root=str(root), resolution=32, channels=3, batch_size=4, download=False)
    with pytest.raises(DataError) as info:
        dm.load()
    one_line(info, str(bad))
    assert not marker.exists(), "unpickling the batch ran the payload"


def test_crafted_cifar_batch_fails_the_run_as_a_user_error(tmp_path):
    root = make_cifar10(tmp_path / "cifar", n_per_batch=4)
    marker = tmp_path / "PWNED"
    bad = root / "cifar-10-batches-py" / "data_batch_1"
    bad.write_bytes(pickle.dumps(_payloads(marker)["os.system"]))
    summary = train_in_process(["data=cifar10", f"data.root={root}", "data.download=false", *FAST], tmp_path / "run")
    assert not marker.exists()
    assert summary["status"] == "failed" and summary["error_kind"] == "user"  # the CLI: exit 2, this line on stderr
    error = summary["error"]
    assert "\n" not in error and str(bad) in error and "not a CIFAR-10 batch" in error and "posix.system" in error, error
    assert not (tmp_path / "run" / "checkpoints").exists()


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (BINSTRING), as the official cifar-10-python.tar.gz (pickled by Python 2) does."""
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_str(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_str


def _py2_batch(entry) -> bytes:
    import io

    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(entry)
    # Python 2's numpy named its reconstructor numpy.core.multiarray
    return buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


@pytest.mark.parametrize("fmt", ["python2 (official)", "protocol 2", "protocol 4", "protocol 5"])
def test_legitimate_cifar_pickles_still_load(tmp_path, fmt):
    from src.data.cifar10 import load_cifar10

    rng = np.random.default_rng(1)
    folder = tmp_path / "c" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    expected = []
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        expected.append(data.reshape(-1, 3, 32, 32))
        entry = {"batch_label": f"training batch {name}", "labels": [1, 2, 3], "data": data, "filenames": ["a.png"] * 3}
        blob = _py2_batch(entry) if fmt.startswith("python2") else pickle.dumps(entry, protocol=int(fmt.split()[-1]))
        (folder / name).write_bytes(blob)
    images = load_cifar10(str(tmp_path / "c"), "train", download=False)
    assert torch.equal(images, torch.from_numpy(np.concatenate(expected)))


@pytest.mark.parametrize("entry,needle", [
    ({"labels": [1]}, "no 'data'"),
    ({"data": np.zeros((2, 3072), dtype=np.float32)}, "uint8"),
    ({"data": np.zeros((2, 100), dtype=np.uint8)}, "3072"),
    ({"data": np.zeros(3, dtype=object)}, "uint8"),
    ([1, 2, 3], "not a dict"),
])
def test_cifar_batch_with_the_wrong_content_is_refused(tmp_path, entry, needle):
    root = make_cifar10(tmp_path / "cifar", n_per_batch=4)
    bad = root / "cifar-10-batches-py" / "data_batch_2"
    bad.write_bytes(pickle.dumps(entry))
    from src.data.cifar10 import load_cifar10

    with pytest.raises(DataError) as info:
        load_cifar10(str(root), "train", download=False)
    one_line(info, str(bad), needle)


def test_files_that_differ_from_the_official_md5s_are_named_in_a_warning(tmp_path, caplog, monkeypatch):
    import hashlib

    from src.data import cifar10

    assert cifar10.official_md5s()["data_batch_1"] == "c99cafc152244af753f735de768cd75f"  # torchvision's table
    root = make_cifar10(tmp_path / "cifar", n_per_batch=4)
    with caplog.at_level(logging.WARNING, logger="src.data.cifar10"):
        cifar10.load_cifar10(str(root), "test", download=False)
    assert any("test_batch" in r.getMessage() and "official" in r.getMessage() for r in caplog.records), caplog.text
    caplog.clear()
    folder = root / "cifar-10-batches-py"
    md5s = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(cifar10, "official_md5s", lambda: md5s)  # as if these were the official files
    with caplog.at_level(logging.WARNING, logger="src.data.cifar10"):
        cifar10.load_cifar10(str(root), "train", download=False)
    assert not caplog.records


# ---- item 8: 16-bit images -----------------------------------------------------------------------------

GRADIENT16 = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (64, 1))


@pytest.mark.parametrize("fmt", ["png", "tiff", "pgm"])  # PIL modes I;16 (PNG, TIFF) and I (PGM)
@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_gray_images_decode_to_their_high_byte(tmp_path, fmt, channels):
    path = tmp_path / f"g.{fmt}"
    Image.fromarray(GRADIENT16).save(path)
    with Image.open(path) as im:
        assert im.mode in ("I;16", "I")
    arr = _decode(path, 64, channels)
    assert arr.shape == (channels, 64, 64) and arr.dtype == np.uint8
    want = (GRADIENT16 >> 8).astype(np.uint8)
    for c in range(channels):
        assert np.array_equal(arr[c], want)
    assert abs(arr.mean() - 127.5) < 0.6  # not 247-254 (clipped)


def test_float_images_in_unit_range_are_scaled_and_others_refused(tmp_path):
    good = tmp_path / "f.tiff"
    values = GRADIENT16.astype(np.float32) / 65535
    Image.fromarray(values).save(good)
    assert np.array_equal(_decode(good, 64, 1)[0], np.round(values * 255).astype(np.uint8))
    bad = tmp_path / "f255.tiff"
    Image.fromarray(values * 255).save(bad)
    with pytest.raises(DataError) as info:
        _decode(bad, 64, 1)
    one_line(info, str(bad), "[0, 1]")


def test_32bit_integer_image_beyond_16_bits_is_refused(tmp_path):
    bad = tmp_path / "i32.tiff"
    Image.fromarray(np.full((8, 8), 70000, dtype=np.int32)).save(bad)
    with pytest.raises(DataError) as info:
        _decode(bad, 8, 1)
    one_line(info, str(bad), "65535")


# ---- item 8: the decoded-folder cache ------------------------------------------------------------------

def test_image_replaced_by_an_older_copy_is_redecoded(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n=6, size=16)
    first = folder_dm(root).load().data.clone()
    target = list_images(str(root))[2]
    newest = max(f.stat().st_mtime_ns for f in list_images(str(root)))
    Image.fromarray(np.zeros((16, 22, 3), dtype=np.uint8)).save(target)  # same count, different content
    os.utime(target, ns=(newest - 10**9, newest - 10**9))  # an older copy: the newest mtime is unchanged
    second = folder_dm(root).load().data
    assert torch.equal(second, folder_dm(root, cache=False).load().data)
    assert not torch.equal(second, first) and int(second[2].max()) == 0


def _cache_files(cache_dir):
    return sorted((Path(cache_dir) / "data").glob("folder-*.pt"))


@pytest.mark.parametrize("damage", ["flipped pixels", "truncated file"])
def test_corrupted_cache_is_redecoded_with_a_warning(tmp_path, monkeypatch, caplog, damage):
    monkeypatch.setenv("GANLAB_CACHE", str(tmp_path / "cache"))
    root = make_image_folder(tmp_path / "imgs", n=6, size=16)
    truth = folder_dm(root).load().data.clone()
    (entry,) = _cache_files(tmp_path / "cache")
    if damage == "flipped pixels":  # a readable file whose tensor no longer matches its checksum
        stored = torch.load(entry, weights_only=True)
        stored["images"][0, 0, 0, 0] ^= 0xFF
        torch.save(stored, entry)
    else:
        entry.write_bytes(entry.read_bytes()[:200])
    with caplog.at_level(logging.WARNING, logger="src.data.datamodule"):
        again = folder_dm(root).load().data
    assert torch.equal(again, truth)
    assert any("re-decod" in r.getMessage() and str(entry) in r.getMessage() for r in caplog.records), caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="src.data.datamodule"):  # rewritten: the next load is a clean hit
        assert torch.equal(folder_dm(root).load().data, truth)
    assert not caplog.records


def test_cache_without_checksum_is_not_trusted(tmp_path, monkeypatch):
    """A cache entry in the old format (a bare tensor) at the right name is re-decoded, not used."""
    monkeypatch.setenv("GANLAB_CACHE", str(tmp_path / "cache"))
    root = make_image_folder(tmp_path / "imgs", n=4, size=16)
    truth = folder_dm(root).load().data.clone()
    (entry,) = _cache_files(tmp_path / "cache")
    torch.save(torch.zeros_like(truth), entry)
    assert torch.equal(folder_dm(root).load().data, truth)


# ---- item 8 / 9: values that used to pass and then misbehave --------------------------------------------

@pytest.mark.parametrize("name,channels,valid", [
    ("image_folder", 4, "valid: 1 (grayscale) or 3 (RGB)"), ("image_folder", 0, "valid: 1 (grayscale) or 3 (RGB)"),
    ("image_folder", 2, "valid: 1 (grayscale) or 3 (RGB)"), ("image_folder", -3, "valid: 1 (grayscale) or 3 (RGB)"),
    ("image_folder", 2.5, "valid: 1 (grayscale) or 3 (RGB)"), ("image_folder", "rgb", "valid: 1 (grayscale) or 3 (RGB)"),
    ("image_folder", 3.0, "write 3, not 3.0"),
    ("cifar10", 1, "valid: 3"), ("stl10", 4, "valid: 3"), ("digits", 3, "valid: 1"),
])
def test_bad_channels_are_refused(tmp_path, name, channels, valid):
    with pytest.raises(ConfigError) as info:
        GANDataModule(name=name, root=str(tmp_path), resolution=16, channels=channels, batch_size=4)
    one_line(info, f"data.channels={channels!r}", valid)


@pytest.mark.parametrize("value", [-5, 0, 2.5, "all", True, 4.0])
def test_bad_max_images_is_refused(tmp_path, value):
    with pytest.raises(ConfigError) as info:
        folder_dm(tmp_path, max_images=value)
    one_line(info, f"data.max_images={value!r}", "positive integer or null")


def test_max_images_keeps_that_many(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n=6, size=16)
    assert folder_dm(root, max_images=4).load().data.shape[0] == 4
    assert folder_dm(root, max_images=None).load().data.shape[0] == 6
    assert len(folder_dm(root, max_images=4, in_memory=False).load().data) == 4


@pytest.mark.parametrize("value", [0, -16, 16.5, 16.0, None])
def test_bad_resolution_is_refused(tmp_path, value):
    with pytest.raises(ConfigError) as info:
        folder_dm(tmp_path, resolution=value)
    one_line(info, f"data.resolution={value!r}", "positive integer")


@pytest.mark.parametrize("in_memory", [True, False])
def test_resolution_too_big_for_memory_is_refused_before_decoding(tmp_path, in_memory):
    root = make_image_folder(tmp_path / "imgs", n=4, size=16)
    with pytest.raises(DataError) as info:
        folder_dm(root, resolution=1_000_000, in_memory=in_memory).load()
    one_line(info, "data.resolution=1000000", "GiB")


def test_cifar_resolution_too_big_for_memory_is_refused(tmp_path):
    root = make_cifar10(tmp_path / "cifar", n_per_batch=4)
    with pytest.raises(DataError) as info:
        GANDataModule(name="cifar10", root=str(root), resolution=200_000, channels=3, batch_size=4, download=False).load()
    one_line(info, "data.resolution=200000", "GiB")


def test_batch_larger_than_the_dataset_is_drawn_with_repeats(tmp_path):
    """Documented: batches are sampled with replacement (in memory) or run over pass boundaries (streaming)."""
    from src.data.stream import RealBatches, ShuffledStream

    root = make_image_folder(tmp_path / "imgs", n=3, size=16)
    dm = folder_dm(root, batch_size=8).load()
    assert dm.sample(8, torch.Generator().manual_seed(0)).shape == (8, 3, 16, 16)
    stream = folder_dm(root, batch_size=8, in_memory=False).load()
    batch = RealBatches(stream.data, ShuffledStream(3, seed=0), 8).batch(0)["real"]
    assert batch.shape == (8, 3, 16, 16)
    assert all(sum(torch.equal(b, dm.data[i]) for b in batch) in (2, 3) for i in range(3))  # every image 2-3 times


# ---- item 9: decompression bombs, bad files in streaming workers, non-UTF-8 roots ------------------------

def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims width x height 1-bit pixels (a few bytes on disk): what a decompression bomb looks like to PIL."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 20_000])  # PIL: a warning above MAX_IMAGE_PIXELS, an error above twice that
def test_decompression_bomb_is_refused(tmp_path, side):
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, side, side)
    assert side * side > Image.MAX_IMAGE_PIXELS
    with pytest.raises(DataError) as info:
        _decode(bomb, 16, 3)
    one_line(info, str(bomb), "PIL's pixel limit")


def test_decompression_bomb_fails_the_run_as_a_user_error(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n=3, size=16)
    _png_header_only(root / "bomb.png", 20_000, 20_000)
    summary = train_in_process(["data=image_folder", f"data.root={root}", "data.resolution=16", "data.batch_size=2",
                                "data.cache=false", *FAST], tmp_path / "run")
    assert summary["status"] == "failed" and summary["error_kind"] == "user"
    assert "\n" not in summary["error"] and "bomb.png" in summary["error"] and "pixel limit" in summary["error"]


def test_bad_image_inside_a_streaming_worker_is_one_line(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n=12, size=16)
    files = list_images(str(root))
    # build_run decodes two images for an example batch in the main process: break one it does not draw
    drawn = set(torch.randint(0, len(files), (2,), generator=torch.Generator().manual_seed(0)).tolist())
    victim = files[min(set(range(len(files))) - drawn)]
    victim.write_bytes(victim.read_bytes()[:60])  # truncated
    summary = train_in_process(["data=image_folder", f"data.root={root}", "data.resolution=16", "data.batch_size=4",
                                "data.in_memory=false", "data.num_workers=1", *FAST, "steps=3"], tmp_path / "run")
    assert summary["status"] == "failed"
    error = summary["error"]
    assert "\n" not in error and "Traceback" not in error and "worker" not in error, error
    assert str(victim) in error and "cannot decode" in error, error


def test_non_utf8_data_root_works(tmp_path):
    root = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/imgs\xff"))  # surrogate-escaped, as sys.argv gives it
    make_image_folder(root, n=4, size=16)
    data = folder_dm(root).load().data  # through the on-disk cache
    assert data.shape == (4, 3, 16, 16)
    assert torch.equal(folder_dm(root).load().data, data)


def test_missing_non_utf8_data_root_is_one_printable_line(tmp_path):
    root = os.fsdecode(os.fsencode(str(tmp_path)) + b"/nowhere\xff")
    with pytest.raises(DataError) as info:
        folder_dm(root).load()
    message = one_line(info, "nowhere\\xff", "does not exist")
    message.encode("utf-8")  # no surrogates left: loggable and printable


def test_non_utf8_data_root_trains(tmp_path):
    root = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/imgs\xff"))
    make_image_folder(root, n=4, size=16)
    summary = train_in_process(["data=image_folder", f"data.root='{root}'", "data.resolution=16", "data.batch_size=2", *FAST],
                               tmp_path / "run")
    assert summary["status"] == "completed", summary["error"]


@pytest.mark.slow
def test_non_utf8_data_root_through_the_cli(tmp_path):
    root = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/imgs\xff"))
    make_image_folder(root, n=4, size=16)
    result = run_cli("src.train", "data=image_folder", f"data.root='{root}'", "data.resolution=16", "data.batch_size=2",
                     *FAST, run_dir=tmp_path / "run")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.summary["status"] == "completed"


@pytest.mark.parametrize("override,needle", [("data.channels=4", "data.channels=4"), ("data.channels=0", "data.channels=0"),
                                             ("data.max_images=-5", "data.max_images=-5")])
def test_bad_data_values_fail_the_run_before_training(tmp_path, override, needle):
    root = make_image_folder(tmp_path / "imgs", n=6, size=16)
    summary = train_in_process(["data=image_folder", f"data.root={root}", "data.resolution=16", "data.batch_size=2", *FAST,
                                override], tmp_path / "run")
    assert summary["status"] == "failed" and summary["error_kind"] == "user", summary  # the CLI: exit 2, one line
    assert needle in summary["error"] and "\n" not in summary["error"]
    assert summary["steps"] == 0 and not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("kw,needle", [({"n_points": -5}, "data.n_points=-5"), ({"n_points": 0}, "data.n_points=0"),
                                       ({"n_points": 2.5}, "data.n_points=2.5"), ({"std": float("inf")}, "data.std=inf"),
                                       ({"std": float("nan")}, "data.std=nan")])
def test_bad_toy_values_are_refused(kw, needle):
    with pytest.raises(ConfigError) as info:
        GANDataModule(name="toy2d", batch_size=4, **kw)
    one_line(info, needle, "positive")
