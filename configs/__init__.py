"""Experiment configs (ml_collections): `--config=configs/NAME.py`."""
