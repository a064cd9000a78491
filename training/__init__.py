"""The training pipeline: one module per DVC stage (prepare, train, evaluate)."""
