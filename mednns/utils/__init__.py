"""Small shared pieces: user errors, atomic file output, logging, and the params.yaml config reader."""
