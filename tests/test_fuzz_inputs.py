"""A fuzzed corpus of MedMNIST-layout files, run through `mednns data check`, `data info`, `data prepare`
and `select`: each file is either accepted, and then loads and trains, or refused with one line that
names it, exit 1, no traceback, and the output folder as it was.

Hypothesis generates the files (seeded: `derandomize=True`, the same corpus on every run): valid
files with up to three mutations (a key dropped or renamed, lengths changed, every dtype, zero-sized
axes, NaN and inf, labels out of range or with gaps, wrong channel counts, non-square or too small
images, float images outside 0-255, byte order and memory layout), object arrays, truncated and
corrupted members, huge declared shapes in tiny files, and files that are no zip at all. Most cases
call the command in this process (click's CliRunner); a few go through the real console script.
"""

from __future__ import annotations

import io
import pickle
import tempfile
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy

from conftest import TINY_SPACE, error_lines, invoke_cli, run_cli, snapshot

KEYS = [f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")]
DTYPES = ["?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16", "U3", "S3",
          "M8[s]", "m8[s]", ">f4", ">i4", "<u2", [("a", "<i4"), ("b", "<f4")], ("u1", (2,))]


class Case:
    """A generated file: what it is, and its bytes (shown by size only when Hypothesis reports it)."""

    def __init__(self, description: str, data: bytes):
        self.description, self.data = description, data

    def __repr__(self) -> str:
        return f"Case({self.description!r}, {len(self.data)} bytes)"


def fuzz_settings(n: int):
    return settings(max_examples=n, derandomize=True, database=None, deadline=None, print_blob=False,
                    suppress_health_check=list(HealthCheck))


# --------------------------------------------------------------------------------------------------
# the corpus


@st.composite
def valid_arrays(draw) -> dict[str, np.ndarray]:
    task = draw(st.sampled_from(["multi-class", "binary", "multi-label"]))
    classes = 2 if task == "binary" else draw(st.integers(2, 5))
    size = draw(st.sampled_from([8, 12, 16, 28]))
    channels = draw(st.sampled_from([1, 3]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    arrays = {}
    for split, low, high in (("train", 2, 12), ("val", 1, 6), ("test", 1, 6)):
        n = draw(st.integers(low, high))
        shape = (n, size, size) if channels == 1 else (n, size, size, 3)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        if task == "multi-label":
            arrays[f"{split}_labels"] = rng.integers(0, 2, (n, classes), dtype=np.uint8)
        else:
            arrays[f"{split}_labels"] = (np.arange(n) % classes).astype(np.uint8).reshape(-1, 1)
    if task != "multi-label":  # every class somewhere, as a real dataset has them
        arrays["val_labels"][0, 0] = classes - 1
    return arrays


def _cast(a: np.ndarray, dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.fields is not None or dt.subdtype is not None:
        return np.zeros(a.shape, dtype=dt)
    try:
        return a.astype(dt)
    except (TypeError, ValueError):
        return np.zeros(a.shape, dtype=dt)


MUTATIONS = ("drop", "rename", "extra", "length", "dtype", "zero_axis", "nan_inf", "label_value", "gaps",
             "channels", "non_square", "ndim", "float_range", "layout", "multilabel_value")


@st.composite
def mutation(draw, arrays: dict[str, np.ndarray]) -> str:
    kind = draw(st.sampled_from(MUTATIONS))
    keys = [k for k in KEYS if k in arrays]
    if not keys:
        return "none"
    key = draw(st.sampled_from(keys))
    a = arrays[key]
    if kind == "drop":
        del arrays[key]
    elif kind == "rename":
        arrays[key.replace("_", "-") if draw(st.booleans()) else key.rstrip("s")] = arrays.pop(key)
    elif kind == "extra":
        arrays[draw(st.sampled_from(["notes", "meta_images"]))] = np.arange(3)
    elif kind == "length":
        arrays[key] = a[:max(0, len(a) - draw(st.integers(1, 3)))] if draw(st.booleans()) else np.concatenate([a, a[:1]])
    elif kind == "dtype":
        arrays[key] = _cast(a, draw(st.sampled_from(DTYPES)))
    elif kind == "zero_axis":
        shape = list(a.shape)
        shape[draw(st.integers(0, len(shape) - 1))] = 0
        arrays[key] = np.zeros(shape, dtype=a.dtype)
    elif kind == "nan_inf":
        f = a.astype(draw(st.sampled_from(["f2", "f4", "f8"])))
        f.flat[draw(st.integers(0, max(f.size - 1, 0)))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        arrays[key] = f
    elif kind == "label_value":
        lab_key = key.replace("images", "labels")
        if lab_key in arrays:
            lab = arrays[lab_key].astype(np.int64)
            lab.flat[0] = draw(st.sampled_from([-1, -128, 5, 9, 255, 2 ** 31, 2 ** 40]))
            arrays[lab_key] = lab
    elif kind == "gaps":
        for k in [k for k in arrays if k.endswith("_labels")]:
            arrays[k] = arrays[k].astype(np.int64) * draw(st.integers(2, 4))
    elif kind == "channels":
        img_key = key.replace("labels", "images")
        if img_key in arrays and arrays[img_key].ndim in (3, 4):
            img = arrays[img_key][..., :1] if arrays[img_key].ndim == 4 else arrays[img_key][..., None]
            arrays[img_key] = np.repeat(img, draw(st.sampled_from([0, 1, 2, 4, 5])), axis=-1)
    elif kind == "non_square":
        if a.ndim >= 3:
            arrays[key] = a[:, :, : max(1, a.shape[2] - draw(st.integers(1, 4)))]
    elif kind == "ndim":
        how = draw(st.sampled_from(["flat", "extra_axis", "scalar", "trailing"]))
        arrays[key] = {"flat": lambda: a.reshape(-1), "extra_axis": lambda: a[None],
                       "scalar": lambda: np.asarray(a.flat[0] if a.size else 0, dtype=a.dtype),
                       "trailing": lambda: a.reshape(a.shape + (1, 1))}[how]()
    elif kind == "float_range":
        f = a.astype(np.float32)
        arrays[key] = draw(st.sampled_from([f / 255.0, f - 1.0, f + 1.0, f * 2.0, f + 0.5]))
    elif kind == "layout":
        arrays[key] = np.asfortranarray(a) if draw(st.booleans()) else a.astype(a.dtype.newbyteorder(">"))
    elif kind == "multilabel_value":
        lab_key = key.replace("images", "labels")
        if lab_key in arrays and arrays[lab_key].ndim == 2 and arrays[lab_key].shape[1] > 1:
            arrays[lab_key] = arrays[lab_key].astype(np.int64) * 2
    return kind


def _npz_bytes(arrays: dict[str, np.ndarray], compressed: bool, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                npy.write_array(f, np.asanyarray(value), allow_pickle=allow_pickle)
    return buf.getvalue()


@st.composite
def corpus_file(draw, max_mutations: int = 3) -> Case:
    """A file of the corpus."""
    kind = draw(st.sampled_from(["mutated"] * 10 + ["object", "truncated", "corrupted", "huge_shape",
                                                    "short_member", "not_zip"]))
    arrays = draw(valid_arrays())
    compressed = draw(st.booleans())
    if kind == "mutated":
        done = [draw(mutation(arrays)) for _ in range(draw(st.integers(0, max_mutations)))]
        return Case("mutated: " + (", ".join(done) or "none"), _npz_bytes(arrays, compressed))
    if kind == "object":
        key = draw(st.sampled_from(KEYS))
        arrays[key] = np.array([object()] * len(arrays[key]) if draw(st.booleans()) else [{"a": 1}], dtype=object)
        return Case(f"object array {key}", _npz_bytes(arrays, compressed, allow_pickle=True))
    data = _npz_bytes(arrays, compressed)
    if kind == "truncated":
        return Case("truncated zip", data[:draw(st.integers(0, len(data) - 1))])
    if kind == "corrupted":
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return Case("corrupted bytes", bytes(data))
    if kind in ("huge_shape", "short_member"):
        key = draw(st.sampled_from(KEYS))
        a = arrays[key]
        shape = (10 ** draw(st.integers(6, 15)),) + a.shape[1:] if kind == "huge_shape" else a.shape
        header = io.BytesIO()
        npy.write_array_header_1_0(header, {"descr": npy.dtype_to_descr(a.dtype), "fortran_order": False,
                                            "shape": shape})
        body = a.tobytes()[: draw(st.integers(0, max(0, a.nbytes - 1)))] if kind == "short_member" else a.tobytes()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for k, v in arrays.items():
                if k == key:
                    zf.writestr(f"{k}.npy", header.getvalue() + body)
                else:
                    with zf.open(f"{k}.npy", "w") as f:
                        npy.write_array(f, v)
        return Case(f"{kind} {key} {shape}", buf.getvalue())
    what = draw(st.sampled_from(["empty", "random", "npy", "pickle", "text"]))
    if what == "npy":
        buf = io.BytesIO()
        np.save(buf, arrays["train_images"])
        return Case("a .npy file", buf.getvalue())
    return Case(f"not a zip: {what}", {"empty": b"", "random": draw(st.binary(min_size=1, max_size=300)),
                                  "pickle": pickle.dumps(arrays["train_labels"]),
                                  "text": b"train_images,train_labels\n1,2\n"}[what])


# --------------------------------------------------------------------------------------------------
# the contract


def refused_or_accepted(result, path: Path) -> bool:
    """True when accepted; a refusal must be one line naming the file, exit 1 (no traceback: CliRunner
    raises whatever escaped the command)."""
    if result.returncode == 0:
        return True
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert str(path) in lines[0], lines[0]
    return False


def trains(folder: Path) -> None:
    """A prepared copy loads, and a network of the search space trains an epoch on it."""
    from mednns.data import load_prepared
    from mednns.nn.space import SearchSpace
    from mednns.nn.supernet import Supernet
    from mednns.train.loop import TrainConfig, train

    ds = load_prepared(folder)
    space = SearchSpace.from_dict(TINY_SPACE)
    net = Supernet(space, ds.spec.channels, ds.spec.num_classes, ds.spec.image_size).extract(space.smallest())
    with mock.patch("mednns.train.loop.tqdm", lambda batches, **kwargs: batches):  # no progress bars
        history = train(net, ds, TrainConfig(epochs=1, batch_size=8), desc="fuzz")
    assert np.isfinite(history[0]["train_loss"])


def run_data_commands(description: str, data: bytes, name: str, tmp: Path) -> bool:
    path = tmp / name
    path.write_bytes(data)
    accepted = refused_or_accepted(invoke_cli("data", "check", str(path)), path)
    assert refused_or_accepted(invoke_cli("data", "info", str(path), "--no-download"), path) == accepted, description
    out = tmp / "out" / "prepared"
    out.mkdir(parents=True)
    (tmp / "out" / "keep.txt").write_text("not the command's")
    before = snapshot(tmp / "out")
    prepared = refused_or_accepted(invoke_cli("data", "prepare", str(path), "--out", str(out)), path)
    assert prepared == accepted, description
    if prepared:
        assert sorted(p.name for p in out.iterdir()) == ["data.npz", "manifest.json"]
        trains(out)
    else:
        assert snapshot(tmp / "out") == before and sorted(p.name for p in (tmp / "out").iterdir()) == \
            ["keep.txt", "prepared"], description
    return accepted


STATS = {"data": [0, 0], "select": [0, 0], "kinds": {}}


@fuzz_settings(300)
@given(case=corpus_file(), name=st.sampled_from(["case.npz"] * 4 + ["breastmnist.npz"]))
def test_data_commands_accept_or_refuse_every_fuzzed_file(case, name, one_thread):
    description, data = case.description, case.data
    with tempfile.TemporaryDirectory() as tmp:
        accepted = run_data_commands(description, data, name, Path(tmp))
    STATS["data"][accepted] += 1
    kind = description.split(":")[0].split(" ")[0]
    STATS["kinds"].setdefault(kind, [0, 0])[accepted] += 1


def test_the_data_corpus_holds_both_outcomes():
    """Run after the corpus: a corpus all of one kind would test one branch only."""
    refused, accepted = STATS["data"]
    if refused + accepted == 0:
        pytest.skip("run with test_data_commands_accept_or_refuse_every_fuzzed_file")
    print(f"fuzzed files: {refused} refused, {accepted} accepted; (refused, accepted) by kind: {STATS['kinds']}")
    assert accepted >= 50 and refused >= 150, STATS


@pytest.fixture(scope="module")
def select_args(selection_space):
    metaspace, supernets = selection_space
    return ["--metaspace", str(metaspace), "--supernets", str(supernets), "--k", "1", "--finetune-epochs", "1",
            "--zoo-only"]


@fuzz_settings(60)
@given(case=corpus_file(max_mutations=1))
def test_select_accepts_or_refuses_every_fuzzed_file(case, select_args, one_thread):
    """Every file `data check` accepts is selected for and fine-tuned; every other is refused in one line."""
    description, data = case.description, case.data
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.npz"
        path.write_bytes(data)
        accepted = refused_or_accepted(invoke_cli("data", "check", str(path)), path)
        out = Path(tmp) / "out"
        out.mkdir()
        result = invoke_cli("select", str(path), *select_args, "--export", str(out / "m.onnx"), "--no-register")
        assert refused_or_accepted(result, path) == accepted, (description, result.stderr[-2000:])
        assert sorted(p.name for p in out.iterdir()) == (["m.md", "m.onnx"] if accepted else []), description
    STATS["select"][accepted] += 1


def test_the_select_corpus_holds_both_outcomes():
    refused, accepted = STATS["select"]
    if refused + accepted == 0:
        pytest.skip("run with test_select_accepts_or_refuses_every_fuzzed_file")
    print(f"select on fuzzed files: {refused} refused, {accepted} selected and fine-tuned")
    assert accepted >= 15 and refused >= 15, STATS


@fuzz_settings(6)
@given(case=corpus_file())
def test_the_real_console_script_on_fuzzed_files(case):
    """A few through a real subprocess: what a user's shell sees (exit code, stderr, no traceback)."""
    description, data = case.description, case.data
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.npz"
        path.write_bytes(data)
        result = run_cli("data", "check", str(path))
        assert "Traceback" not in result.stderr, (description, result.stderr)
        refused_or_accepted(result, path)
