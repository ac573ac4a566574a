"""The meta-space: datasets and zoo models in one space, where a dataset lands near the models that
transfer best to it.

Public API (stable: the selector, `mednns select`, and the MLflow pyfunc build on it)
-------------------------------------------------------------------------------------
``MetaSpace.load(folder) -> MetaSpace``
    Read `models/metaspace/` (weights.pt: a plain state dict, loadable with
    `torch.load(weights_only=True)`; config.json; candidates.parquet). MedNNSError when missing/damaged.
``MetaSpace.save(folder) -> Path``
    Write the folder atomically (a temporary folder renamed into place).
``MetaSpace.query(images_or_npz, k=5, constraints=None) -> pandas.DataFrame``
    The (at most) `k` zoo models predicted to transfer best to the query dataset, best first. Input: uint8
    images (N, H, W) or (N, H, W, 3) as in MedMNIST npz files (a train split: a seeded sample of
    `query_images` of them is embedded), a path to a MedMNIST-layout npz (only its `train_images` are
    read), a path to a `features/<dataset>.npz` of the same extractor, a `MedDataset` (its train split)
    or a `DatasetFeatures`. `constraints`: dict with optional `max_params`, `max_macs`,
    `max_latency_ms` (None values are ignored). Columns: rank, source_dataset, arch_id, arch_json,
    predicted_score (predicted transfer accuracy, z-scored among the zoo's models: higher is better),
    similarity (cosine of the dataset and model embeddings), params, macs, latency_ms,
    source_val_acc (the subnet's own head on its source's val split). Raises MedNNSError with one
    line when no candidate meets the constraints, on an unknown constraint key, on k < 1 or bad images.
``MetaSpace.rank(images_or_npz, constraints=None)``
    The same table with every candidate that meets the constraints.
``MetaSpace.embed_dataset(images_or_npz) -> np.ndarray``, ``MetaSpace.candidates`` (DataFrame).

Library pieces: `features` (the fixed extractor and `features/<dataset>.npz`), `fid` (Fréchet
distances), `encoders`, `losses`, `train` (`train_metaspace`, `MetaSpaceConfig`), `logme` (LogME,
You et al. 2021), `evaluate` (leave-one-dataset-out evaluation against baselines), `mapping` (2-D map).
"""

from mednns.metaspace.features import DatasetFeatures, FeatureConfig
from mednns.metaspace.model import MetaSpace
from mednns.metaspace.train import MetaSpaceConfig, train_metaspace

__all__ = ["DatasetFeatures", "FeatureConfig", "MetaSpace", "MetaSpaceConfig", "train_metaspace"]
