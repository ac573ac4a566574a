"""Supernet training: it learns, it writes a safe checkpoint, and an interrupted run resumes exactly."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config, tiny_dataset
from mednns.nn.checkpoint import load_supernet, read_checkpoint
from mednns.train.supernet import SupernetTrainer


class Interrupt(Exception):
    pass


def test_training_learns_and_writes_a_weights_only_checkpoint(tmp_path):
    ds = tiny_dataset()
    seen = []
    summary = SupernetTrainer(ds, tiny_config(epochs=4)).fit(tmp_path / "toy.pt",
                                                             on_epoch=lambda e, m: seen.append(m))
    assert len(seen) == 4 and all("val_acc_largest" in m and "val_acc_smallest" in m for m in seen)
    assert seen[-1]["train_loss"] < seen[0]["train_loss"]
    assert summary["final"]["test_acc_largest"] >= 0.6  # 4 brightness-coded classes; chance is 0.25
    assert not (tmp_path / "toy.resume.pt").exists()

    payload = read_checkpoint(tmp_path / "toy.pt")  # torch.load(weights_only=True) inside
    assert payload["spec"]["name"] == "toy" and payload["summary"]["final"] == summary["final"]
    net, meta = load_supernet(tmp_path / "toy.pt")
    x = torch.randn(5, 1, 16, 16)
    arch = net.space.largest()
    ref = SupernetTrainer(ds, tiny_config(epochs=4))  # fresh weights differ from the trained ones
    assert not torch.allclose(ref.net.extract(arch).eval()(x), net.extract(arch).eval()(x))


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    ds = tiny_dataset()
    full = SupernetTrainer(ds, tiny_config())
    full.fit(tmp_path / "a.pt")

    def stop_after_second_epoch(epoch, metrics):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        SupernetTrainer(ds, tiny_config()).fit(tmp_path / "b.pt", on_epoch=stop_after_second_epoch)
    assert (tmp_path / "b.resume.pt").exists() and not (tmp_path / "b.pt").exists()
    summary = SupernetTrainer(ds, tiny_config()).fit(tmp_path / "b.pt")
    assert summary["resumed_from_epoch"] == 2 and len(summary["history"]) == 3

    a = read_checkpoint(tmp_path / "a.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "b.pt")["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_resume_state_for_other_settings_is_not_reused(tmp_path):
    ds = tiny_dataset()

    def stop(epoch, metrics):
        raise Interrupt

    with pytest.raises(Interrupt):
        SupernetTrainer(ds, tiny_config()).fit(tmp_path / "c.pt", on_epoch=stop)
    summary = SupernetTrainer(ds, tiny_config(lr=0.02)).fit(tmp_path / "c.pt")
    assert summary["resumed_from_epoch"] == 0


def test_multi_label_task_trains_with_bce(tmp_path):
    ds = tiny_dataset(task="multi-label", classes=3, channels=3)
    summary = SupernetTrainer(ds, tiny_config(epochs=2)).fit(tmp_path / "ml.pt")
    final = summary["final"]
    assert 0.0 <= final["val_acc_largest"] <= 1.0 and 0.0 <= final["val_auc_smallest"] <= 1.0
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in summary["history"])


def test_cuda_without_a_gpu_falls_back_to_the_cpu():
    from mednns.train.device import resolve_device

    assert resolve_device("cuda").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"


def test_per_epoch_monitoring_on_subsets_leaves_the_trained_weights_and_final_scores_alone(tmp_path):
    """The demo scores each epoch on small subsets to save minutes; what is trained and reported at the
    end must be exactly what scoring whole splits every epoch gives."""
    ds = tiny_dataset()
    whole = SupernetTrainer(ds, tiny_config(monitor_images=0)).fit(tmp_path / "whole.pt")
    sub = SupernetTrainer(ds, tiny_config(monitor_images=8)).fit(tmp_path / "sub.pt")
    assert sub["final"] == whole["final"]
    a = read_checkpoint(tmp_path / "whole.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "sub.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # 8 val images: every per-epoch accuracy is a multiple of 1/8
    assert all((m["val_acc_largest"] * 8) % 1 == 0 for m in sub["history"])
