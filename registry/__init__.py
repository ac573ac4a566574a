"""MLOps adapters: MLflow tracking and model registry, the DVC / S3 remote. Imports mednns, never the reverse."""
