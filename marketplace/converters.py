"""URL parts that name things: ids, hashes. A NUL or a slash never names anything here."""
from django.urls import register_converter


class IdConverter:
    regex = r"[^/\x00]{1,200}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(IdConverter, "id")
