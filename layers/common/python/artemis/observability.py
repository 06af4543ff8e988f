"""One place for logging and metrics: Powertools Logger (JSON) and Metrics (EMF)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

SERVICE = "artemis"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="Artemis", service=SERVICE)
