"""Prefect flows for newsdedup: wiring only; every stage lives in `pipeline`."""
