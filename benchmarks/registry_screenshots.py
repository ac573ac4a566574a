"""Screenshots of the MLflow model registry UI for the README: a zoo subnet's and a selected model's
version page (description = model card, rendered; the signature under "Schema").

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.registry_screenshots [--out docs] [--keep]`
(about a minute on 2 cores). Needs headless Chromium from Debian's packages (`apt-get install -y
chromium`). It starts an `mlflow server` on 127.0.0.1 in a temporary folder, registers a synthetic zoo
(`tests.synthetic`: a random-weight supernet of the demo search space on a dataset `synthblood` shaped
like BloodMNIST, three subnets with random scores) with `registry.models.ZooRegistrar`, and one
"selected" model for a dataset `synthderma` shaped like DermaMNIST through the selector's own
`deliver` + `register_selection` (a subnet of that supernet with a new random head; its candidates'
scores are random, its val/test scores are measured on synthetic images). Nothing is trained: every
number in the pictures is synthetic, the layout is what they show. Then it points headless Chromium at
`<server>/#/models/<name>/versions/<v>` and writes `registry_subnet.png` and `registry_selected.png`.
`--keep` leaves the server running (Ctrl-C stops it) to browse the same registry by hand.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SUBNET_DATASET, SELECTED_DATASET = "synthblood", "synthderma"
WINDOW = {"subnet": (1400, 1560), "selected": (1400, 1900)}  # tall enough for the Schema


def medmnist_labels(flag: str) -> tuple[str, ...]:
    import medmnist

    labels = medmnist.INFO[flag]["label"]
    return tuple(labels[str(i)] for i in range(len(labels)))


def register_zoo(root: Path, uri: str) -> tuple[str, str]:
    """A synthetic zoo of 3 subnets registered in `uri`; returns (subnet name, version) of the best one."""
    from mednns.data.spec import DatasetSpec
    from mednns.nn.space import SearchSpace
    from registry.client import Registry
    from registry.models import ZooRegistrar, subnet_name
    from tests.synthetic import random_supernet, synthetic_zoo

    spec = DatasetSpec.from_dict({"name": SUBNET_DATASET, "task": "multi-class", "channels": 3, "num_classes": 8,
                                  "image_size": 28, "splits": {"train": 64, "val": 32, "test": 32},
                                  "label_names": list(medmnist_labels("bloodmnist")), "source": "synthetic"})
    ckpt = random_supernet(root / "models" / "supernets" / f"{SUBNET_DATASET}.pt", spec, SearchSpace())
    table = synthetic_zoo(ckpt, 3, root / "zoo" / f"{SUBNET_DATASET}.parquet")
    (root / "dvc.yaml").write_text("stages: {}\n")
    ZooRegistrar(Registry(uri), repo=root, workers=2).sync(root / "zoo", root / "models" / "supernets",
                                                           progress=False)
    best = table.sort_values("val_acc", ascending=False).iloc[0]
    return subnet_name(SUBNET_DATASET, best.arch_id), "1"


def register_selected(root: Path, uri: str) -> tuple[str, str]:
    """One selected model delivered and registered as `mednns select` does; returns (name, version)."""
    from torch import nn

    from mednns.data.npz import build_dataset
    from mednns.nn.checkpoint import load_supernet
    from mednns.nn.space import Arch
    from mednns.selector.deliver import deliver
    from mednns.selector.finetune import FinetuneConfig
    from mednns.selector.selection import Selection
    from mednns.train.loop import score_split
    from registry.selected import register_selection
    from tests.conftest import synthetic_arrays

    names = medmnist_labels("dermamnist")
    arrays = synthetic_arrays(classes=len(names), channels=3, size=28, sizes={"train": 32, "val": 32, "test": 32})
    ds = build_dataset(arrays, "synthetic", SELECTED_DATASET, "synthetic", label_names=names)
    supernet, _ = load_supernet(root / "models" / "supernets" / f"{SUBNET_DATASET}.pt")
    zoo = pd.read_parquet(root / "zoo" / f"{SUBNET_DATASET}.parquet")
    rng = np.random.default_rng(0)
    candidates = zoo[["source_dataset", "arch_id", "params", "macs", "latency_ms"]].assign(
        predicted_score=rng.random(len(zoo)))
    candidates = candidates.sort_values("predicted_score", ascending=False, ignore_index=True)
    chosen_at = int(rng.integers(len(candidates)))
    net = supernet.extract(Arch.from_json(zoo.set_index("arch_id").arch_json[candidates.arch_id[chosen_at]]))
    net.classifier = nn.Linear(net.classifier.in_features, len(names))
    net.cfg = net.cfg.with_head(ds.spec.task.value, len(names), names)
    val = score_split(net.eval(), ds, "val")
    # With no fine-tuning the selection's val score is the chosen candidate's probe score, the best one.
    candidates["probe_val_acc"] = np.where(candidates.index == chosen_at, val["acc"],
                                           rng.random(len(candidates)) * val["acc"])
    sel = Selection(dataset=SELECTED_DATASET, candidates=candidates, chosen=candidates.loc[chosen_at], net=net,
                    history=[], val=val, test=score_split(net, ds, "test"),
                    finetune=FinetuneConfig(epochs=0))  # nothing is trained here
    os.environ["MLFLOW_TRACKING_URI"] = uri
    onnx = root / "models" / "selected" / f"{SELECTED_DATASET}.onnx"
    onnx.parent.mkdir(parents=True, exist_ok=True)
    delivery = deliver(sel, ds, onnx, register=lambda d: register_selection(sel, ds, d))
    name, version = delivery.registered.removeprefix("models:/").rsplit("/", 1)
    return name, version


# Run in the page once it has rendered: close the assistant panel, unfold the schema's inputs and outputs.
UNFOLD = """(() => {
  const close = document.querySelector('button[data-component-id="mlflow.assistant.chat_panel.close"]');
  if (close) close.click();
  const fold = el => /^(Inputs|Outputs) \\(\\d+\\)$/.test(el.textContent);
  for (const el of document.querySelectorAll('div[role=cell] div'))
    if (fold(el) && ![...el.children].some(fold)) el.click();
})()"""


class Browser:
    """Headless Chromium driven over its DevTools pipe (`--remote-debugging-pipe`: NUL-ended JSON on
    fds 3 and 4), so a page can be clicked before the screenshot; the standard library is enough."""

    def __init__(self, exe: str, profile: str):
        self.to_r, self.to_w = os.pipe()
        self.from_r, self.from_w = os.pipe()
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--remote-debugging-pipe",
                f"--user-data-dir={profile}", "about:blank"]
        self.proc = subprocess.Popen(["bash", "-c", f'exec "$0" "$@" 3<&{self.to_r} 4>&{self.from_w}', exe, *args],
                                     pass_fds=(self.to_r, self.from_w), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(self.to_r), os.close(self.from_w)
        self.buf, self.next_id, self.session = b"", 0, None

    def send(self, method: str, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self.to_w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self.buf:
                chunk = os.read(self.from_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(line)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, url: str, size: tuple[int, int]) -> None:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1,
                  mobile=False)
        self.send("Page.navigate", url=url)

    def text(self) -> str:
        return self.send("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                         returnByValue=True)["result"].get("value", "")

    def screenshot(self, url: str, png: Path, size: tuple[int, int], wait_for: str, timeout: float = 90) -> None:
        self.open(url, size)
        deadline = time.time() + timeout
        while not all(w in self.text() for w in (wait_for, "Load it", "Schema", "Inputs (")):
            if time.time() > deadline:
                raise RuntimeError(f"{url}: the page did not render {wait_for!r} within {timeout:.0f} s")
            time.sleep(1)
        self.send("Runtime.evaluate", expression=UNFOLD)
        time.sleep(2)
        data = self.send("Page.captureScreenshot", format="png")["data"]
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(base64.b64decode(data))
        print(f"{png}: {png.stat().st_size / 1024:.0f} KB  <- {url}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        os.close(self.to_w), os.close(self.from_r)


def main() -> None:
    from tests.servers import MlflowServer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs", help="folder for the two PNG files")
    ap.add_argument("--keep", action="store_true", help="leave the server running to browse it")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("chromium not found: install it with `apt-get install -y chromium`")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        os.environ["MEDNNS_CACHE"] = str(Path(tmp) / "cache")
        with MlflowServer(Path(tmp) / "server", workers=1) as server:
            pages = {"subnet": register_zoo(root, server.uri), "selected": register_selected(root, server.uri)}
            browser = Browser(chromium, str(Path(tmp) / "chromium"))
            try:
                for what, (name, version) in pages.items():
                    browser.screenshot(f"{server.uri}/#/models/{name}/versions/{version}",
                                       Path(args.out) / f"registry_{what}.png", WINDOW[what], wait_for=name)
            finally:
                browser.close()
            if args.keep:
                print(f"MLflow UI: {server.uri} (Ctrl-C stops it)")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass


if __name__ == "__main__":
    main()
