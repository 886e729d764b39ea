"""Where a subscription's results go: one adapter, chosen by ``SUBSCRIPTION_DELIVERER``.

On Infernet a node delivers each result to the coordinator contract on chain. There
is no chain here, so the default adapter records each delivery; an on-chain
deliverer would implement the same ``deliver`` (and may take its time: it is called
after the job's transaction has committed, outside it).
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
import json
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.module_loading import import_string

from jobs.models import Job, SubscriptionDelivery

log = logging.getLogger(__name__)


class SubscriptionDeliverer(ABC):
    """The interface: deliver one node's result for one interval of a subscription, once."""

    @abstractmethod
    def deliver(self, *, job: Job) -> None:
        """Deliver ``job.result`` (interval ``job.subscription_interval``, node ``job.node``)."""


class RecordingDeliverer(SubscriptionDeliverer):
    """Records each delivery (subscription, interval, node, job, output hash)."""

    def deliver(self, *, job: Job) -> None:
        output = json.dumps(job.result, sort_keys=True, separators=(",", ":")).encode()
        try:
            SubscriptionDelivery.objects.get_or_create(
                job=job,
                defaults=dict(subscription_id=job.subscription_id, interval=job.subscription_interval,
                              node_id=job.node_id, output_sha256=hashlib.sha256(output).hexdigest()),
            )
        except IntegrityError:
            log.info("interval %s of %s was already delivered from node %s", job.subscription_interval,
                     job.subscription_id, job.node_id)


def deliverer() -> SubscriptionDeliverer:
    return import_string(settings.SUBSCRIPTION_DELIVERER)()


def subscription_deliver_after_commit(job: Job) -> None:
    """Hand a subscription job's result to the deliverer once the job's completion is committed."""
    job_pk = job.pk

    def deliver() -> None:
        completed = Job.objects.filter(pk=job_pk).first()
        if completed is not None:
            deliverer().deliver(job=completed)

    transaction.on_commit(deliver)
