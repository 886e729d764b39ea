"""``manage.py createapikey --customer NAME``: print a new API key (and only the key)."""
from django.core.management.base import BaseCommand

from marketplace.services import api_key_create, customer_get_or_create


class Command(BaseCommand):
    help = "Create an API key for a customer (made if it does not exist) and print only the key."

    def add_arguments(self, parser):
        parser.add_argument("--customer", required=True, help="customer name")
        parser.add_argument("--name", default="", help="a label for the key")

    def handle(self, *args, **options):
        customer = customer_get_or_create(name=options["customer"])
        issued = api_key_create(customer=customer, name=options["name"])
        self.stdout.write(issued.secret)
