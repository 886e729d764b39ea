from jobs.models import DelegatedSubscription


def subscriptions_active_count(*, customer) -> int:
    return DelegatedSubscription.objects.filter(customer=customer, status=DelegatedSubscription.Status.ACTIVE).count()
