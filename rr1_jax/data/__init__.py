"""QA records, loaders and the synthetic routing task."""
