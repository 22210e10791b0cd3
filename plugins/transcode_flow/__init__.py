"""Airflow-facing adapters for Transcode Flow (the domain code lives in include/)."""
