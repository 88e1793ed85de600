"""Architectures. Importing this package must not import torch: `catalog` (stdlib only) is loaded by
`cnntool models` and `shape-calc`; each builder module imports torch itself when a model is built."""
