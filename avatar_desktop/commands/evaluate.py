"""`avatar-desktop eval`: score a model against ground-truth clips (placeholder until the metrics land)."""
