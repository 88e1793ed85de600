"""One module per task: decode (model output → record fields), draw, and the training pieces."""
