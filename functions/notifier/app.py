"""The notifier Lambda: the SQS FIFO event source of the notifications queue, with
`ReportBatchItemFailures`. Each batch of webhook deliveries goes to
`artemis.jobs.notifier.process_batch`, which attempts each one and answers which records come
back later; that module describes the retries, the order and the dead-letter copies.
"""

from __future__ import annotations

from typing import Any

from artemis import invocation, runtime
from artemis.config import SiteWorkerSettings
from artemis.jobs.notifier import process_batch
from artemis.observability import logger


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with invocation.running(context):
        # The site worker's settings: the queues, and the GitHub App for GitHub's deployments.
        return process_batch(runtime.current(SiteWorkerSettings), event, context)
