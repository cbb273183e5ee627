"""Evaluation harness and plots."""
