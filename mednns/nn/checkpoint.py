"""Supernet checkpoints: weights plus everything needed to rebuild and trust them, loadable with
`torch.load(weights_only=True)` (plain dicts, lists, numbers, strings and tensors only)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from mednns.data.spec import DatasetSpec
from mednns.utils.errors import MedNNSError
from mednns.utils.io import atomic_path
from mednns.nn.supernet import Supernet

FORMAT = "mednns.supernet/1"


def save_supernet(path: str | Path, net: Supernet, spec: DatasetSpec, summary: dict) -> None:
    payload = {
        "format": FORMAT,
        "config": net.config(),
        "spec": spec.to_dict(),
        "summary": summary,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MedNNSError(f"{path}: checkpoint not found; run `dvc repro train_supernet` or `dvc pull`")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before it refuses them
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged or foreign file
        # Not torch's message: it advises weights_only=False, which would run the file's code.
        raise MedNNSError(f"{path}: not a readable MedNNS checkpoint ({type(e).__name__}: damaged, or a "
                          "pickled object that is not plain tensors, which MedNNS never loads); re-run "
                          "`dvc repro train_supernet` or `dvc checkout` it") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MedNNSError(f"{path}: not a MedNNS supernet checkpoint (expected format {FORMAT})")
    return payload


def load_supernet(path: str | Path, device: str | torch.device = "cpu") -> tuple[Supernet, dict]:
    """The supernet of a checkpoint (eval mode) and the checkpoint's metadata."""
    payload = read_checkpoint(path)
    try:
        net = Supernet.from_config(payload["config"])
        net.load_state_dict(payload["state_dict"])
        meta = {k: v for k, v in payload.items() if k != "state_dict"}
        meta["spec"] = spec = DatasetSpec.from_dict(meta["spec"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # RuntimeError: load_state_dict's mismatch
        detail = " ".join(str(e).split()).replace("Error(s) in loading state_dict for Supernet: ", "")
        raise MedNNSError(f"{path}: its weights do not fit the supernet its config describes ({type(e).__name__}: "
                          f"{detail[:160]}); a checkpoint of another search space or a damaged one: re-run "
                          "`dvc repro train_supernet` or `dvc checkout` it") from None
    net.dataset = dataset_info(spec)
    return net.to(device).eval(), meta


def subnet_config(payload: dict, arch) -> "ModelConfig":
    """The config of `arch` extracted from the supernet of a checkpoint (`read_checkpoint`), without
    building the network."""
    from mednns.nn.config import ModelConfig

    cfg, spec = payload["config"], DatasetSpec.from_dict(payload["spec"])
    return ModelConfig(architecture="mbconv", in_channels=cfg["in_channels"], image_size=cfg["image_size"],
                       num_classes=cfg["num_classes"], source=spec.name, **{k: v for k, v in dataset_info(spec).items()
                                                                            if k != "source"},
                       arch=arch.to_json(), space=cfg["space"])


def dataset_info(spec: DatasetSpec) -> dict:
    """What a supernet's subnets carry of the dataset they were trained on (see `ModelConfig`)."""
    return {"source": spec.name, "task": spec.task.value, "class_names": list(spec.label_names)}


NETWORK_FORMAT = "mednns.network/1"


def save_network(path: str | Path, net: "torch.nn.Module", summary: dict) -> None:
    """A static network (its `cfg` and weights) and how it was trained, loadable with `weights_only=True`."""
    payload = {"format": NETWORK_FORMAT, "config": net.cfg.to_dict(), "summary": summary,
               "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_network(path: str | Path) -> tuple["torch.nn.Module", dict]:
    """The network of a `save_network` file (eval mode, CPU) and its summary."""
    from mednns.nn.config import ModelConfig
    from mednns.nn.factory import create_model

    path = Path(path)
    if not path.is_file():
        raise MedNNSError(f"{path}: network not found; run `dvc repro pretrain` or `dvc pull`")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged or foreign file
        raise MedNNSError(f"{path}: not a readable MedNNS network ({type(e).__name__}: damaged, or not plain "
                          "tensors); re-run `dvc repro pretrain` or `dvc checkout` it") from None
    if not isinstance(payload, dict) or payload.get("format") != NETWORK_FORMAT:
        raise MedNNSError(f"{path}: not a MedNNS network file (expected format {NETWORK_FORMAT})")
    try:
        return create_model(ModelConfig.from_dict(payload["config"]), payload["state_dict"]), payload["summary"]
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise MedNNSError(f"{path}: its weights do not fit the network its config describes "
                          f"({type(e).__name__}); re-run `dvc repro pretrain` or `dvc checkout` it") from None
