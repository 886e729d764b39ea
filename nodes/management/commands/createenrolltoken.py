"""``manage.py createenrolltoken --miner NAME``: print a one-time node enrolment token."""
from django.core.management.base import BaseCommand

from marketplace.services import miner_get_or_create
from nodes.services import enrollment_token_create


class Command(BaseCommand):
    help = "Create an enrolment token for a miner (made if it does not exist) and print only the token."

    def add_arguments(self, parser):
        parser.add_argument("--miner", required=True, help="miner name")

    def handle(self, *args, **options):
        issued = enrollment_token_create(miner=miner_get_or_create(name=options["miner"]))
        self.stdout.write(issued.secret)
