"""The nodes a job's quote and reservation answer for (read on every submit, in hand-written SQL)."""
import pytest

from nodes.models import Node
from nodes.selectors import node_offers_fitting
from tests import factories

pytestmark = pytest.mark.django_db


def offers(**job):
    spec = {"model": "echo", "containers": [], "gpu_type": "", "gpu_count": 0, "min_vram_gb": 0.0, **job}
    return sorted(node_offers_fitting(**spec))


def test_the_offers_are_the_approved_nodes_that_serve_the_job_and_meet_its_hardware():
    factories.node(models=("echo",), gpu_type="h100", gpu_count=2, vram_gb=80, price_per_second_wei=7)
    factories.node(models=("echo", "embed"), gpu_type="a100", gpu_count=1, vram_gb=40, online=False,
                   price_per_second_wei=5)  # offline: still counted (the reservation answers for it)
    factories.node(models=("embed",), gpu_type="h100", gpu_count=8, vram_gb=80)  # another model
    factories.node(models=("echo",), gpu_type="h100", gpu_count=4, unavailable_models={"echo": "not installed"})
    suspended = factories.node(models=("echo",), gpu_type="h100", gpu_count=4)
    Node.objects.filter(pk=suspended.pk).update(approval=Node.Approval.SUSPENDED)
    factories.node(models=('we"ird',), gpu_type="l4", gpu_count=1, price_per_second_wei=3)

    assert offers() == [("a100", 1, 5), ("h100", 2, 7)]
    assert offers(gpu_type="h100") == [("h100", 2, 7)]
    assert offers(gpu_count=2) == [("h100", 2, 7)]
    assert offers(min_vram_gb=50) == [("h100", 2, 7)]
    assert offers(gpu_count=3) == []
    assert offers(model="embed") == [("a100", 1, 5), ("h100", 8, 0)]
    assert offers(model='we"ird') == [("l4", 1, 3)]  # a key that needs quoting in a JSON path
    assert offers(model="nobody-runs-this") == []
    # a chain of containers: every container on the node
    assert offers(model="", containers=["echo", "embed"]) == [("a100", 1, 5)]
