"""Image ZIP ingest on archives generated here with Pillow: the cache it writes, and its refusals
(pure numpy + Pillow, no Django)."""

from __future__ import annotations

import io
import json
import stat
import struct
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from tests import datagen
from models_zoo import archive
from workers.datasets import images as images_mod
from workers.datasets.images import ingest_image_zip
from workers.datasets.common import IngestError

ARRAYS = ("X_train", "X_val", "y_train", "y_val")


# -- building archives ------------------------------------------------------------------------


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def pattern(size=(16, 16), mode="RGB", seed=0) -> Image.Image:
    """A small image with some structure (so formats and resizing have something to do)."""
    rng = np.random.default_rng(seed)
    w, h = size
    a = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    return Image.fromarray(a).convert(mode)


def png(size=(16, 16), mode="RGB", seed=0) -> bytes:
    return encode(pattern(size, mode, seed), "PNG")


def write_zip(path, entries, compression=zipfile.ZIP_DEFLATED):
    """entries: {name: bytes} or [(name or ZipInfo, bytes)] (a list allows duplicates)."""
    items = entries.items() if isinstance(entries, dict) else entries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in items:
                zf.writestr(name, data)
    return path


def two_classes(n=3, prefix="", size=(12, 12)) -> dict[str, bytes]:
    return {f"{prefix}{cls}/{i:03d}.png": png(size, seed=k * 100 + i)
            for k, cls in enumerate(["cat", "dog"]) for i in range(n)}


def load(out):
    return {name: np.load(out / f"{name}.npy", allow_pickle=False) for name in ARRAYS}


def ingest(tmp_path, entries, **kw):
    src = write_zip(tmp_path / "d.zip", entries) if not isinstance(entries, (bytes, bytearray)) else None
    if src is None:
        src = tmp_path / "d.zip"
        src.write_bytes(entries)
    return ingest_image_zip(src, tmp_path / "out", **kw)


def assert_nothing_left(tmp_path, out_name="out"):
    assert not (tmp_path / out_name).exists()
    assert not (tmp_path / f"{out_name}.partial").exists()
    leftovers = {p.name for p in tmp_path.iterdir()} - {"d.zip"}
    assert leftovers == set(), leftovers


def refused(tmp_path, entries, words, **kw):
    with pytest.raises(IngestError) as exc:
        ingest(tmp_path, entries, **kw)
    msg = str(exc.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert_nothing_left(tmp_path)
    return msg


def big_png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width × height (the pixel data is for 1×1): a decompression bomb
    that costs nothing to build."""
    data = bytearray(png((1, 1), "L"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def central_records(data: bytes) -> list[int]:
    out, i = [], data.find(b"PK\x01\x02")
    while i >= 0:
        out.append(i)
        i = data.find(b"PK\x01\x02", i + 4)
    return out


# -- good archives ----------------------------------------------------------------------------


def test_mixed_formats_sizes_and_modes(tmp_path):
    entries = {
        # cat: PNG in several modes and sizes (most images have a longest side of 32)
        "cat/a.png": encode(pattern((32, 32), "RGB", 1)),
        "cat/b.png": encode(pattern((32, 20), "RGBA", 2)),
        "cat/c.png": encode(pattern((20, 32), "L", 3)),
        "cat/d.png": encode(pattern((32, 32), "RGB", 4).convert("P", palette=Image.Palette.ADAPTIVE)),
        # dog: JPEG (RGB, L, CMYK) and WebP
        "dog/a.jpg": encode(pattern((32, 32), "RGB", 5), "JPEG", quality=90),
        "dog/b.JPEG": encode(pattern((40, 30), "L", 6), "JPEG"),
        "dog/c.jpg": encode(pattern((32, 32), "CMYK", 7), "JPEG"),
        "dog/d.webp": encode(pattern((32, 24), "RGB", 8), "WEBP", quality=90),
        "dog/e.webp": encode(pattern((16, 16), "RGBA", 9), "WEBP", lossless=True),
        # bird: BMP (RGB, 1-bit, L)
        "bird/a.bmp": encode(pattern((32, 32), "RGB", 10), "BMP"),
        "bird/b.bmp": encode(pattern((32, 16), "1", 11), "BMP"),
        "bird/c.bmp": encode(pattern((64, 64), "L", 12), "BMP"),
        # clear: fully transparent images must come out white
        "clear/a.png": encode(Image.new("RGBA", (32, 32), (255, 0, 0, 0))),
        "clear/b.webp": encode(Image.new("RGBA", (32, 32), (0, 0, 255, 0)), "WEBP", lossless=True),
    }
    pal = Image.new("P", (32, 32), 0)
    pal.putpalette([0, 255, 0] + [0, 0, 0] * 255)
    entries["clear/c.png"] = encode(pal, transparency=0)  # palette index 0 is transparent
    info = ingest(tmp_path, entries, val_fraction=0.3)
    out = tmp_path / "out"

    assert info["kind"] == "image" and info["task"] == "classification"
    assert info["classes"] == ["bird", "cat", "clear", "dog"]
    assert info["num_classes"] == info["num_outputs"] == 4
    assert info["class_counts"] == {"bird": 3, "cat": 4, "clear": 3, "dog": 5}
    assert info["channels"] == "RGB"
    assert info["image_size"] == 32 and info["input_shape"] == [3, 32, 32]
    assert info["num_rows"] == 15 and info["num_train"] + info["num_val"] == 15
    assert info["split"] == "seeded" and info["val_fraction"] == 0.3 and info["split_seed"] == 0
    assert info["formats"] == {"BMP": 3, "JPEG": 3, "PNG": 6, "WEBP": 3}
    assert info["skipped"] == [] and info["ignored"] == []

    arrays = load(out)
    assert arrays["X_train"].dtype == np.uint8 and arrays["X_val"].dtype == np.uint8
    assert arrays["X_train"].shape == (info["num_train"], 3, 32, 32)
    assert arrays["X_val"].shape == (info["num_val"], 3, 32, 32)
    assert arrays["y_train"].dtype == np.int64 and arrays["y_val"].dtype == np.int64
    y = np.concatenate([arrays["y_train"], arrays["y_val"]])
    assert np.bincount(y).tolist() == [3, 4, 3, 5]
    # Stratified: every class is in both splits.
    assert set(arrays["y_train"].tolist()) == set(arrays["y_val"].tolist()) == {0, 1, 2, 3}
    # Transparent images are composited on white.
    X = np.concatenate([arrays["X_train"], arrays["X_val"]])
    assert (X[y == 2] == 255).all()
    assert not (X[y != 2] == 255).all()

    # Normalisation: per channel, from the training split, in 0..1.
    norm = info["normalization"]
    Xt = arrays["X_train"].astype(np.float64) / 255
    assert np.allclose(norm["mean"], Xt.mean(axis=(0, 2, 3)), atol=1e-5)
    assert np.allclose(norm["std"], Xt.std(axis=(0, 2, 3)), atol=1e-5)

    # Previews: generated names, 64 px PNGs, listed per class.
    assert info["previews"] == {"bird": ["0_0.png", "0_1.png", "0_2.png"],
                                "cat": [f"1_{k}.png" for k in range(4)],
                                "clear": ["2_0.png", "2_1.png", "2_2.png"],
                                "dog": [f"3_{k}.png" for k in range(5)]}
    for files in info["previews"].values():
        for name in files:
            with Image.open(out / "previews" / name) as im:
                assert im.format == "PNG" and im.size == (64, 64)
    assert json.loads((out / "info.json").read_text()) == json.loads(json.dumps(info))
    assert {p.name for p in out.iterdir()} == {f"{a}.npy" for a in ARRAYS} | {"info.json", "previews"}
    assert not (tmp_path / "out.partial").exists()


def test_grayscale_images_give_one_channel(tmp_path):
    sixteen = Image.fromarray(np.full((10, 10), 0x8000, dtype=np.uint16))  # I;16 → 128
    assert sixteen.mode.startswith("I;16")
    entries = {
        "a/1.png": encode(pattern((10, 10), "L", 1)),
        "a/2.png": encode(sixteen),
        "a/3.jpg": encode(pattern((10, 10), "L", 2), "JPEG"),
        "b/1.bmp": encode(pattern((10, 10), "1", 3), "BMP"),
        "b/2.png": encode(pattern((10, 10), "LA", 4)),
        "b/3.png": encode(pattern((10, 10), "L", 5)),
    }
    info = ingest(tmp_path, entries, val_fraction=0.34)
    assert info["channels"] == "L" and info["input_shape"] == [1, 10, 10]
    arrays = load(tmp_path / "out")
    X = np.concatenate([arrays["X_train"], arrays["X_val"]])
    assert X.shape == (6, 1, 10, 10)
    assert any((x == 128).all() for x in X)  # the 16-bit image, scaled to 8 bits
    assert len(info["normalization"]["mean"]) == 1

    # Forced to RGB: three identical planes.
    info = ingest_image_zip(tmp_path / "d.zip", tmp_path / "rgb", channels="RGB", val_fraction=0.34)
    assert info["channels"] == "RGB" and info["input_shape"] == [3, 10, 10]
    X = load(tmp_path / "rgb")["X_train"]
    assert (X[:, 0] == X[:, 1]).all() and (X[:, 1] == X[:, 2]).all()


def test_colour_images_forced_to_grayscale(tmp_path):
    info = ingest(tmp_path, two_classes(4, size=(12, 12)), channels="L", image_size=20)
    assert info["channels"] == "L" and info["input_shape"] == [1, 20, 20]
    assert load(tmp_path / "out")["X_train"].shape == (6, 1, 20, 20)


def test_provided_train_val_split(tmp_path):
    entries = {}
    for split, n in (("train", 5), ("val", 2)):
        for cls in ("cat", "dog", "eel"):
            for i in range(n):
                entries[f"{split}/{cls}/{i}.png"] = png((8, 8), seed=i)
    info = ingest(tmp_path, entries, seed=7)
    assert info["split"] == "provided" and info["val_fraction"] is None and info["split_seed"] is None
    assert info["classes"] == ["cat", "dog", "eel"]
    assert info["num_train"] == 15 and info["num_val"] == 6
    assert info["class_counts"] == {"cat": 7, "dog": 7, "eel": 7}
    arrays = load(tmp_path / "out")
    assert arrays["y_train"].tolist() == [0] * 5 + [1] * 5 + [2] * 5  # ordered by class, then name
    assert arrays["y_val"].tolist() == [0, 0, 1, 1, 2, 2]


def test_wrapper_folder_junk_and_other_files(tmp_path):
    entries = two_classes(3, prefix="My Pets/")
    entries.update({
        "__MACOSX/My Pets/cat/._000.png": b"\x00\x05\x16\x07 apple double",
        "My Pets/.DS_Store": b"junk",
        "My Pets/cat/Thumbs.db": b"junk",
        "My Pets/dog/desktop.ini": b"[junk]",
        "My Pets/.hidden/x.png": b"not even an image",
        "My Pets/README.txt": b"about these pets",
        "My Pets/cat/notes.txt": b"a note",
        "My Pets/dog/anim.gif": encode(pattern((8, 8), "RGB"), "GIF"),
    })
    info = ingest(tmp_path, entries)
    assert info["classes"] == ["cat", "dog"]
    assert info["num_rows"] == 6
    assert sorted(info["ignored"]) == ["My Pets/README.txt", "My Pets/cat/notes.txt", "My Pets/dog/anim.gif"]
    assert info["ignored_count"] == 3
    assert info["skipped"] == []


def test_wrapper_folder_around_a_provided_split(tmp_path):
    entries = {f"export/{split}/{cls}/{i}.png": png((8, 8), seed=i)
               for split in ("Train", "Validation") for cls in ("a", "b") for i in range(3)}
    entries["export/"] = b""
    info = ingest(tmp_path, entries)
    assert info["split"] == "provided" and info["classes"] == ["a", "b"]
    assert info["num_train"] == 6 and info["num_val"] == 6


def test_scikit_learn_digits(tmp_path):
    sklearn = pytest.importorskip("sklearn.datasets")
    datagen.digits_png_zip(tmp_path / "d.zip")
    info = ingest_image_zip(tmp_path / "d.zip", tmp_path / "out")
    assert info["num_rows"] == 1797 and info["num_classes"] == 10
    assert info["classes"] == [str(d) for d in range(10)]
    assert info["channels"] == "L" and info["image_size"] == 8 and info["input_shape"] == [1, 8, 8]
    assert info["num_val"] == pytest.approx(1797 * 0.2, abs=10)
    arrays = load(tmp_path / "out")
    X = np.concatenate([arrays["X_train"], arrays["X_val"]])[:, 0]
    y = np.concatenate([arrays["y_train"], arrays["y_val"]])
    # The pixels are exactly the bundled images (no resize at 8×8), each under its own label.
    digits = sklearn.load_digits()
    expected = (digits.images * 255 / 16).astype(np.uint8)
    for d in range(10):
        got = sorted(x.tobytes() for x in X[y == d])
        want = sorted(x.tobytes() for x in expected[digits.target == d])
        assert got == want
    assert info["class_counts"] == {str(d): int((digits.target == d).sum()) for d in range(10)}
    assert all(len(files) == 8 for files in info["previews"].values())


def test_the_cache_loads_for_training(tmp_path):
    torch = pytest.importorskip("torch")
    from workers.training.data import load_cache

    info = ingest(tmp_path, two_classes(5, size=(10, 10)))
    data = load_cache(tmp_path / "out", torch.device("cpu"))
    assert data.kind == "image" and data.X_train.dtype == torch.uint8
    assert tuple(data.X_train.shape[1:]) == tuple(info["input_shape"])
    x = data.prepare(data.X_train)
    assert x.dtype == torch.float32
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2


def test_default_size_is_the_most_common_longest_side_capped(tmp_path):
    entries = {"a/1.png": png((20, 10)), "a/2.png": png((10, 20)), "b/1.png": png((30, 30)),
               "b/2.png": png((12, 12)), "b/3.png": png((20, 5))}
    assert ingest(tmp_path, entries)["image_size"] == 20
    big = {f"{c}/{i}.png": encode(Image.new("L", (300, 200), 100 + i)) for c in "ab" for i in range(2)}
    info = ingest_image_zip(write_zip(tmp_path / "big.zip", big), tmp_path / "big")
    assert info["image_size"] == 224 and info["input_shape"] == [1, 224, 224]
    small = {f"{c}/{i}.png": png((4, 3)) for c in "ab" for i in range(2)}
    info = ingest_image_zip(write_zip(tmp_path / "small.zip", small), tmp_path / "small")
    assert info["image_size"] == 8
    info = ingest_image_zip(tmp_path / "big.zip", tmp_path / "forced", image_size=32)
    assert load(tmp_path / "forced")["X_train"].shape[1:] == (1, 32, 32)


def test_squash_keeps_the_whole_image(tmp_path):
    # Left half black, right half white, 40×10: squashed to 10×10 the halves stay halves.
    a = np.zeros((10, 40), dtype=np.uint8)
    a[:, 20:] = 255
    entries = {"a/1.png": encode(Image.fromarray(a)), "a/2.png": encode(Image.fromarray(a)),
               "b/1.png": encode(Image.fromarray(a)), "b/2.png": encode(Image.fromarray(a))}
    ingest(tmp_path, entries, image_size=10)
    x = load(tmp_path / "out")["X_train"][0, 0]
    assert (x[:, :4] < 20).all() and (x[:, 6:] > 235).all()


def test_exif_orientation_is_applied(tmp_path):
    # Stored 20 wide × 10 high, left half black; EXIF orientation 6 (rotate 90° clockwise to
    # display) makes it 10 wide × 20 high with the black half on top.
    a = np.zeros((10, 20), dtype=np.uint8)
    a[:, 10:] = 255
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = encode(im, "JPEG", quality=95, exif=exif.tobytes())
    ingest(tmp_path, {"a/1.jpg": photo, "a/2.jpg": photo, "b/1.jpg": photo, "b/2.jpg": photo}, image_size=10)
    x = load(tmp_path / "out")["X_train"][0, 0].astype(int)
    assert x[:4].mean() < 30 and x[6:].mean() > 225


def test_seeded_split_is_reproducible(tmp_path):
    write_zip(tmp_path / "d.zip", two_classes(10, size=(8, 8)))
    a = ingest_image_zip(tmp_path / "d.zip", tmp_path / "a", seed=1)
    ingest_image_zip(tmp_path / "d.zip", tmp_path / "b", seed=1)
    ingest_image_zip(tmp_path / "d.zip", tmp_path / "c", seed=2)
    A, B, C = load(tmp_path / "a"), load(tmp_path / "b"), load(tmp_path / "c")
    assert a["num_val"] == 4 and a["num_train"] == 16
    assert np.array_equal(A["X_val"], B["X_val"]) and np.array_equal(A["X_train"], B["X_train"])
    assert not np.array_equal(A["X_val"], C["X_val"])
    assert A["y_val"].tolist() == [0, 0, 1, 1]


def test_class_names_stay_names_and_files_get_ids(tmp_path):
    entries = {"chat & <noir> ✓/1.png": png(), "chat & <noir> ✓/2.png": png(seed=1),
               "dog's/1.png": png(seed=2), "dog's/2.png": png(seed=3)}
    info = ingest(tmp_path, entries)
    assert info["classes"] == ["chat & <noir> ✓", "dog's"]
    assert info["previews"] == {"chat & <noir> ✓": ["0_0.png", "0_1.png"], "dog's": ["1_0.png", "1_1.png"]}


def test_a_few_unreadable_images_are_skipped(tmp_path):
    entries = two_classes(100, size=(8, 8))
    good = png((8, 8))
    entries["cat/truncated.png"] = good[: len(good) - 30]  # the header reads, the pixels do not
    entries["dog/text.jpg"] = b"this is not a JPEG at all"
    info = ingest(tmp_path, entries)
    assert info["num_rows"] == 200 and info["class_counts"] == {"cat": 100, "dog": 100}
    reasons = {s["file"]: s["reason"] for s in info["skipped"]}
    assert set(reasons) == {"cat/truncated.png", "dog/text.jpg"}
    assert "not a PNG, JPEG, BMP or WebP" in reasons["dog/text.jpg"]
    assert "cannot be decoded" in reasons["cat/truncated.png"]
    arrays = load(tmp_path / "out")
    assert len(arrays["X_train"]) + len(arrays["X_val"]) == 200
    assert len(arrays["y_train"]) == len(arrays["X_train"]) and len(arrays["y_val"]) == len(arrays["X_val"])
    assert not any(p.name.endswith(".compact.npy") for p in (tmp_path / "out").iterdir())


def test_a_gif_named_png_is_unreadable(tmp_path):
    entries = two_classes(3)
    entries["cat/really.png"] = encode(pattern((8, 8)), "GIF")
    refused(tmp_path, entries, ["cat/really.png", "not a PNG, JPEG, BMP or WebP", "unreadable"])


def test_progress_is_reported(tmp_path, monkeypatch):
    calls = []
    ingest(tmp_path, two_classes(4), progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 16) and calls[-1] == (16, 16)  # two passes over 8 images
    assert len(calls) <= 3  # throttled: a fast ingest reports the start and the end

    monkeypatch.setattr(images_mod, "PROGRESS_EVERY", 0.0)
    calls.clear()
    ingest_image_zip(tmp_path / "d.zip", tmp_path / "again", image_size=8, channels="RGB",
                     progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 8) and calls[-1] == (8, 8)  # one pass when size and channels are given
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) >= 9


def test_a_progress_callback_that_raises_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(images_mod, "PROGRESS_EVERY", 0.0)

    def cancel(done, total):
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest(tmp_path, two_classes(4), progress=cancel)
    assert_nothing_left(tmp_path)


def test_a_stale_partial_dir_is_replaced(tmp_path):
    (tmp_path / "out.partial").mkdir()
    (tmp_path / "out.partial" / "junk").write_text("old")
    ingest(tmp_path, two_classes(3))
    assert not (tmp_path / "out.partial").exists()
    assert not (tmp_path / "out" / "junk").exists()


# -- refused archives: a clear message, and nothing left behind --------------------------------


def test_not_a_zip(tmp_path):
    refused(tmp_path, b"cat,dog\n1,2\n", ["not a valid ZIP"])


def test_corrupt_zip(tmp_path):
    write_zip(tmp_path / "whole.zip", two_classes(3))
    data = (tmp_path / "whole.zip").read_bytes()
    (tmp_path / "whole.zip").unlink()
    refused(tmp_path, data[: len(data) - 40], ["not a valid ZIP"])


def test_damaged_entry_data(tmp_path):
    write_zip(tmp_path / "d.zip", two_classes(3), compression=zipfile.ZIP_STORED)
    data = bytearray((tmp_path / "d.zip").read_bytes())
    i = data.find(b"IDAT")  # inside the first image's pixel data: the CRC-32 no longer matches
    data[i + 8] ^= 0xFF
    refused(tmp_path, bytes(data), ["damaged", "cat/000.png"])


def test_empty_zip(tmp_path):
    refused(tmp_path, {}, ["empty"])


def test_no_images(tmp_path):
    refused(tmp_path, {"cat/readme.txt": b"hi", "dog/": b""}, ["no images", "cat/readme.txt"])


def test_only_directories(tmp_path):
    refused(tmp_path, {"cat/": b"", "dog/": b""}, ["no images"])


@pytest.mark.parametrize(("bad", "words"), [
    ("../evil.png", ["'..'"]),
    ("cat/../../evil.png", ["'..'"]),
    ("/etc/cat/x.png", ["absolute"]),
    ("C:/cat/x.png", ["drive letter"]),
    ("c:evil/x.png", ["drive letter"]),
    ("cat\\x.png", ["backslash"]),
    ("cat/x\x01.png", ["control characters"]),
])
def test_zip_slip_refuses_the_whole_archive(tmp_path, bad, words):
    entries = list(two_classes(3).items()) + [(bad, png())]
    msg = refused(tmp_path, entries, ["refusing the archive", *words])
    assert repr(bad) in msg


def test_nul_in_a_name(tmp_path):
    write_zip(tmp_path / "d.zip", {"cat/1.png": png(), "dog/1.png": png(), "dog/x.png": png()})
    data = (tmp_path / "d.zip").read_bytes().replace(b"dog/x.png", b"dog/\x00.png")
    refused(tmp_path, data, ["control characters"])


def special_entry(name: str, mode: int, data: bytes = b"") -> tuple[zipfile.ZipInfo, bytes]:
    zi = zipfile.ZipInfo(name)
    zi.create_system = 3  # Unix
    zi.external_attr = mode << 16
    return zi, data


@pytest.mark.parametrize(("mode", "words"), [
    (stat.S_IFLNK | 0o777, ["symbolic link"]),
    (stat.S_IFCHR | 0o644, ["not a regular file"]),
    (stat.S_IFIFO | 0o644, ["not a regular file"]),
    (stat.S_IFBLK | 0o644, ["not a regular file"]),
])
def test_links_and_special_files(tmp_path, mode, words):
    entries = list(two_classes(3).items()) + [special_entry("cat/link.png", mode, b"../../../etc/passwd")]
    refused(tmp_path, entries, ["'cat/link.png'", *words])


def test_a_regular_unix_file_mode_is_fine(tmp_path):
    entries = list(two_classes(3).items()) + [special_entry("cat/normal.png", stat.S_IFREG | 0o644, png())]
    assert ingest(tmp_path, entries)["num_rows"] == 7


@pytest.mark.parametrize("name", ["cat/more.zip", "dog/x.tar.gz", "x.7z", "cat/y.rar", "d/e.tar"])
def test_nested_archives(tmp_path, name):
    entries = list(two_classes(3).items()) + [(name, b"PK\x03\x04 whatever")]
    refused(tmp_path, entries, [repr(name), "nested archives"])


def test_duplicate_entries(tmp_path):
    entries = list(two_classes(3).items()) + [("cat/001.png", png(seed=9))]
    refused(tmp_path, entries, ["'cat/001.png'", "more than once"])


def test_duplicates_after_normalising_the_name(tmp_path):
    entries = list(two_classes(3).items()) + [("./cat//001.png", png(seed=9))]
    refused(tmp_path, entries, ["more than once"])


def test_overlapping_entries(tmp_path):
    write_zip(tmp_path / "d.zip", two_classes(3), compression=zipfile.ZIP_STORED)
    data = bytearray((tmp_path / "d.zip").read_bytes())
    records = central_records(bytes(data))
    first_offset = struct.unpack("<I", data[records[0] + 42 : records[0] + 46])[0]
    data[records[1] + 42 : records[1] + 46] = struct.pack("<I", first_offset)  # two names, one body
    refused(tmp_path, bytes(data), ["overlap"])


def test_encrypted_entries(tmp_path):
    entries = two_classes(3)
    entries["cat/secret.png"] = png()
    write_zip(tmp_path / "d.zip", entries)
    data = bytearray((tmp_path / "d.zip").read_bytes())
    record = next(r for r in central_records(bytes(data)) if data[r + 46 : r + 60] == b"cat/secret.png")
    data[record + 8] |= 0x1  # general purpose flag bit 0: encrypted
    refused(tmp_path, bytes(data), ["'cat/secret.png'", "encrypted"])


def test_only_one_class(tmp_path):
    refused(tmp_path, {f"cat/{i}.png": png(seed=i) for i in range(5)}, ["only one class", "'cat'"])


@pytest.mark.parametrize(("extra", "words"), [
    ({"bird/": b""}, ["'bird'", "no PNG, JPEG, BMP or WebP", "empty"]),
    ({"bird/notes.txt": b"x", "bird/pic.gif": b"GIF89a"}, ["'bird'", "no PNG", "bird/"]),
])
def test_a_class_without_images(tmp_path, extra, words):
    entries = two_classes(3)
    entries.update(extra)
    refused(tmp_path, entries, words)


def test_a_class_whose_images_are_all_unreadable(tmp_path):
    entries = two_classes(100, size=(8, 8))
    entries["bird/1.png"] = b"garbage"
    refused(tmp_path, entries, ["'bird'", "no readable images"])


def test_images_at_the_top_level(tmp_path):
    entries = two_classes(3)
    entries["loose.png"] = png()
    refused(tmp_path, entries, ["'loose.png'", "inside class folders"])


def test_loose_images_next_to_class_folders_in_a_wrapper(tmp_path):
    entries = two_classes(3, prefix="pets/")
    entries["pets/cover.jpg"] = encode(pattern((8, 8)), "JPEG")
    refused(tmp_path, entries, ["'pets/cover.jpg'", "directly in pets/", "pets/cat/001.png"])


def test_a_class_folder_with_a_directory_entry_and_other_files(tmp_path):
    entries = two_classes(3)
    entries.update({"bird/": b"", "bird/readme.md": b"x"})
    refused(tmp_path, entries, ["'bird'", "other files", "'bird/readme.md'"])


def test_images_directly_in_train(tmp_path):
    entries = {f"{s}/{c}/1.png": png() for s in ("train", "val") for c in "ab"}
    entries["train/loose.png"] = png()
    refused(tmp_path, entries, ["'train/loose.png'", "train/", "class folders"])


def test_provided_split_with_mismatched_classes(tmp_path):
    entries = {f"{s}/{c}/1.png": png() for s in ("train", "val") for c in "ab"}
    entries["train/c/1.png"] = png()
    refused(tmp_path, entries, ["'c'", "train/", "none in val/"])


def test_provided_split_with_a_foreign_folder(tmp_path):
    # test/ is the third split (tests/workers/test_splits.py); anything else beside them is refused.
    entries = {f"{s}/{c}/1.png": png() for s in ("train", "val", "extra") for c in "ab"}
    refused(tmp_path, entries, ["'extra'", "train/, val/ (and test/)"])


def test_too_many_unreadable_images(tmp_path):
    entries = two_classes(20, size=(8, 8))
    entries["cat/bad1.png"] = b"\x89PNG\r\n\x1a\n garbage"
    entries["dog/bad2.webp"] = b"RIFF0000WEBPgarbage"
    refused(tmp_path, entries, ["too many unreadable", "1 of 42", "cat/bad1.png", "at most 50 and at most 1%"])


def test_too_few_images_to_split(tmp_path):
    refused(tmp_path, {"cat/1.png": png(), "dog/1.png": png()}, ["too few"])


@pytest.mark.parametrize(("kw", "words"), [
    ({"image_size": 4}, ["image size", "8", "512"]),
    ({"image_size": 10_000}, ["image size"]),
    ({"image_size": 16.5}, ["image size"]),
    ({"channels": "RGBA"}, ["channels", "'RGBA'"]),
    ({"val_fraction": 0.0}, ["validation fraction"]),
    ({"val_fraction": 1.0}, ["validation fraction"]),
])
def test_bad_options(tmp_path, kw, words):
    refused(tmp_path, two_classes(3), words, **kw)


# -- zip bombs: lowered limits on small archives, and one real high-ratio entry ------------------


def test_too_many_entries(tmp_path):
    refused(tmp_path, two_classes(3), ["6 entries", "at most 5"], max_entries=5)


def test_too_many_entries_counts_junk_and_directories(tmp_path):
    entries = two_classes(2)
    entries.update({f"__MACOSX/{i}": b"" for i in range(3)})
    refused(tmp_path, entries, ["7 entries", "at most 6"], max_entries=6)


def test_entry_too_large(tmp_path):
    entries = two_classes(3)
    entries["dog/big.bmp"] = encode(pattern((40, 40)), "BMP")  # 4.9 KB
    refused(tmp_path, entries, ["'dog/big.bmp'", "at most 2.0 KiB per file"], max_entry_bytes=2000)


def test_total_too_large(tmp_path):
    refused(tmp_path, two_classes(5, size=(20, 20)), ["add up to", "at most 3.0 KiB"], max_total_bytes=3072)


def test_high_ratio_with_lowered_limits(tmp_path):
    entries = two_classes(3)
    entries["cat/flat.bmp"] = encode(Image.new("RGB", (40, 40), (7, 7, 7)), "BMP")  # ~4.9 KB → ~60 bytes
    refused(tmp_path, entries, ["'cat/flat.bmp'", "expands", "at most 5:1"], max_ratio=5, ratio_min_bytes=1000)


def test_a_real_high_ratio_entry_with_the_default_limits(tmp_path):
    entries = two_classes(3)
    entries["cat/zeros.bmp"] = bytes(20 * 1024**2)  # 20 MiB of zeros deflate to about 20 KiB
    with zipfile.ZipFile(tmp_path / "check.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("z", entries["cat/zeros.bmp"])
        assert zf.getinfo("z").compress_size < 100 * 1024
    (tmp_path / "check.zip").unlink()
    refused(tmp_path, entries, ["'cat/zeros.bmp'", "expands", "at most 100:1", "zip bomb"])


def test_streaming_counts_the_bytes_actually_produced():
    """Header sizes can lie: the reader counts what the stream really yields and stops at the caps
    even when the declared size is small."""

    class Endless:
        def read(self, n):
            return b"\0" * n

    info = zipfile.ZipInfo("cat/liar.png")
    info.file_size, info.compress_size = 10, 10
    entry = images_mod._Entry(info, info.filename)
    limits = {"max_entry_bytes": 10_000, "max_ratio": 1e9, "ratio_min_bytes": 1}
    stream = archive.CountedStream(Endless(), entry, archive.Budget(10**9), limits)
    with pytest.raises(IngestError, match="'cat/liar.png' expands to more than 9.8 KiB"):
        while stream.read(4096):
            pass
    budget = archive.Budget(5_000)
    stream = archive.CountedStream(Endless(), entry, budget, {**limits, "max_entry_bytes": 10**9})
    with pytest.raises(IngestError, match="more than 4.9 KiB"):
        while stream.read(1000):
            pass
    assert budget.used == 6_000
    stream = archive.CountedStream(Endless(), entry, archive.Budget(10**9),
                                       {**limits, "max_entry_bytes": 10**9, "max_ratio": 100,
                                        "ratio_min_bytes": 500})
    with pytest.raises(IngestError, match="more than 100:1"):
        stream.read(1001)


def test_the_streaming_total_applies_in_the_archive(tmp_path, monkeypatch):
    """With the declared-size check out of the way, the streamed count alone stops the ingest."""
    write_zip(tmp_path / "d.zip", two_classes(5, size=(20, 20)))
    real_scan = images_mod._scan

    def scan_without_total(zf, limits):
        return real_scan(zf, {**limits, "max_total_bytes": 10**12})

    monkeypatch.setattr(images_mod, "_scan", scan_without_total)
    with pytest.raises(IngestError, match="expand to more than 3.0 KiB"):
        ingest_image_zip(tmp_path / "d.zip", tmp_path / "out", max_total_bytes=3072)
    assert_nothing_left(tmp_path)


def test_too_many_entries_from_the_end_record(tmp_path):
    """The entry count in the end-of-central-directory record is checked before zipfile parses the
    directory (a huge directory would otherwise cost memory first)."""
    write_zip(tmp_path / "d.zip", two_classes(3))
    data = bytearray((tmp_path / "d.zip").read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    data[eocd + 10 : eocd + 12] = struct.pack("<H", 60_000)  # claims 60,000 entries
    refused(tmp_path, bytes(data), ["60000 entries", "at most 100"], max_entries=100)


@pytest.mark.parametrize("options", [{}, {"image_size": 8, "channels": "L"}], ids=["probe", "decode-only"])
@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (10_000, 9_000)])
def test_decompression_bombs(tmp_path, width, height, options):
    # 10^10 pixels: DecompressionBombError; 9×10^7 (just above MAX_IMAGE_PIXELS, below twice it):
    # DecompressionBombWarning, turned into an error. Refused whether the header pass runs or not.
    assert Image.MAX_IMAGE_PIXELS < width * height
    entries = two_classes(3)
    entries["dog/bomb.png"] = big_png_header(width, height)
    refused(tmp_path, entries, ["'dog/bomb.png'", "too large to decode safely", "decompression bomb"], **options)


def test_bomb_warning_does_not_leak_into_the_callers_filters(tmp_path):
    before = list(warnings.filters)
    ingest(tmp_path, two_classes(3))
    assert warnings.filters == before


# -- decoding over a process pool -----------------------------------------------------------------
def _many(n: int, bad: tuple[int, ...] = ()) -> dict[str, bytes]:
    entries = {f"{cls}/{i:04d}.png": png((10, 10), seed=k * 10_000 + i)
               for k, cls in enumerate(["cat", "dog", "owl"]) for i in range(n)}
    names = sorted(entries)
    for i in bad:
        entries[names[i]] = b"\x89PNG\r\n\x1a\n" + b"broken" * 10  # a PNG signature, then garbage
    return entries


def test_two_processes_write_the_same_cache_and_skip_the_same_images(tmp_path, monkeypatch):
    monkeypatch.setattr(images_mod, "PARALLEL_MIN_IMAGES", 100)
    entries = _many(200, bad=(3, 250, 599))
    write_zip(tmp_path / "d.zip", entries)
    one = ingest_image_zip(tmp_path / "d.zip", tmp_path / "one", processes=1)
    two = ingest_image_zip(tmp_path / "d.zip", tmp_path / "two", processes=2)
    assert one == two and len(one["skipped"]) == 3 and one["num_rows"] == 597
    for name in ARRAYS:
        assert np.array_equal(np.load(tmp_path / "one" / f"{name}.npy"), np.load(tmp_path / "two" / f"{name}.npy"))


def test_a_bomb_found_by_a_decoding_process_refuses_the_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(images_mod, "PARALLEL_MIN_IMAGES", 100)
    entries = _many(100)
    entries["owl/9999.png"] = big_png_header(10_000, 9_000)  # the warning-level bomb: an error there too
    refused(tmp_path, entries, ["'owl/9999.png'", "too large to decode safely"], image_size=8, channels="L",
            processes=2)


def test_decode_processes_default_to_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(images_mod.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert images_mod.decode_processes() == 3 and images_mod.decode_processes(1) == 1
    monkeypatch.setattr(images_mod.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert images_mod.decode_processes() == images_mod.MAX_PROCESSES
