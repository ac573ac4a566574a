"""The pyfunc loader artifact behind registry entries: what it holds, its signature, its input example.

One artifact per supernet checkpoint (and zoo BatchNorm statistics file) is shared by the supernet, every
subnet and the champion sliced from it; one per meta-space folder. It is an MLflow pyfunc model folder:

    MLmodel                       loader_module registry.flavor, signature, input example, metadata
    input_example.json            a few uint8 images in the layout the signature states
    data/loader/pointer.json      repo-relative paths and md5s of the files (what the version tags say too)
    data/loader/files/<name>      the checkpoint and the statistics file (or the meta-space folder) themselves

The files inside make a registered model loadable from anywhere that reaches the MLflow server: the
pyfunc uses its own copy, `registry.load_model` downloads just the file it needs into the md5-keyed
download cache (registry.artifacts). They are copied once per checkpoint, never per subnet.

Every entry sliced from one checkpoint takes the same input (the source dataset's uint8 images, as its
npz stores them) and gives the same output (logits over its classes), so the signature is per artifact,
derived from the checkpoint's config (the `config` tag of each subnet says the same).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path, PurePosixPath

import numpy as np

DATA = "loader"   # the folder MLflow copies `data_path` to, under the model's data/
FILES = "files"


def artifact_file(rel: str) -> str:
    """Where the file registered at repo path `rel` sits inside a loader artifact."""
    return f"data/{DATA}/{FILES}/{PurePosixPath(rel).name}"


def raw_shape(cfg) -> tuple[int, ...]:
    """The images a network of `cfg` takes as its npz stores them: (N, H, W) or (N, H, W, 3)."""
    hw = (cfg.image_size, cfg.image_size)
    return (-1, *hw) if cfg.in_channels == 1 else (-1, *hw, cfg.in_channels)


def image_signature(cfg):
    """uint8 images in, float32 logits over `cfg.num_classes` out (`mlflow models predict` checks the input)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), raw_shape(cfg))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, cfg.num_classes))]))


def example_images(shape: tuple[int, ...], n: int = 2) -> np.ndarray:
    """`n` deterministic uint8 images of `shape` (a grey ramp): the input example shows the layout, not data."""
    size = shape[1:]
    ramp = np.linspace(0, 255, size[1], dtype=np.float64)
    img = np.broadcast_to(ramp.reshape((1, size[1]) + (1,) * (len(size) - 2)), size)
    return np.stack([np.clip(img * (i + 1) / n, 0, 255) for i in range(n)]).astype(np.uint8)


def image_metadata(cfg) -> dict:
    names = list(cfg.class_names) or [str(i) for i in range(cfg.num_classes)]
    layout = "(N, H, W) greyscale" if cfg.in_channels == 1 else f"(N, H, W, {cfg.in_channels}) RGB"
    return {"mednns_input": f"uint8 images as the npz stores them: {layout}, {cfg.image_size} px",
            "mednns_output": f"float32 logits (N, {cfg.num_classes}), column i = class i "
                             f"(softmax for {cfg.task}; sigmoid per label for multi-label)",
            "class_names": names, "task": cfg.task, "source_dataset": cfg.source}


METASPACE_OUTPUT = (("rank", "long"), ("source_dataset", "string"), ("arch_id", "string"), ("arch_json", "string"),
                    ("predicted_score", "double"), ("similarity", "double"), ("params", "long"), ("macs", "long"),
                    ("latency_ms", "double"), ("source_val_acc", "double"))


def metaspace_signature():
    """uint8 images (N, H, W, C) of a dataset in, its ranked zoo candidates out; query settings as params."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, -1))]),
        outputs=Schema([ColSpec(t, name) for name, t in METASPACE_OUTPUT]),
        params=ParamSchema([ParamSpec("k", "long", 5), ParamSpec("max_params", "long", None),
                            ParamSpec("max_macs", "long", None), ParamSpec("max_latency_ms", "double", None)]))


METASPACE_METADATA = {
    "mednns_input": "uint8 images (N, H, W, C) of one dataset, C = 1 or 3, any size, N >= 2 (a greyscale "
                    "npz's (N, H, W) array as images[..., None])",
    "mednns_output": "the k zoo models predicted to transfer best, best first: " + ", ".join(n for n, _ in METASPACE_OUTPUT),
}


def write_loader(model_dir: Path, pointer: dict, files: dict[str, Path] | None = None, signature=None,
                 input_example=None, metadata: dict | None = None) -> None:
    """A pyfunc model folder whose loader (registry.flavor) rebuilds the network from `pointer` and the
    `files` copied into it (name in pointer -> file or folder)."""
    import mlflow
    import torch

    files = files or {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / DATA
        (data / FILES).mkdir(parents=True)
        placed = {}
        for key, path in files.items():
            path = Path(path)
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, data / FILES / path.name)
            placed[key] = f"{FILES}/{path.name}"
        (data / "pointer.json").write_text(json.dumps({**pointer, "files": placed}, sort_keys=True, indent=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            mlflow.pyfunc.save_model(str(model_dir), loader_module="registry.flavor", data_path=str(data),
                                     signature=signature, input_example=input_example, metadata=metadata,
                                     pip_requirements=[f"torch=={torch.__version__}", f"mlflow=={mlflow.__version__}"])


def loader_size(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.is_file())
