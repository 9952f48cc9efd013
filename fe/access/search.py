"""Client of the search calls (issue 5): no token needed."""
from urllib.parse import quote, urljoin

from fe.access.client import get


class Search:
    def __init__(self, url_prefix):
        self.root = url_prefix

    def books(self, q, fields=None, store_id=None, page=None, page_size=None) -> (int, dict):
        """GET /search/books; ``fields`` a list of names or the comma-separated text."""
        if isinstance(fields, (list, tuple)):
            fields = ",".join(fields)
        params = {"q": q, "fields": fields, "store_id": store_id, "page": page,
                  "page_size": page_size}
        r = get(urljoin(self.root, "search/books"),
                {k: v for k, v in params.items() if v is not None})
        return r.status_code, r.json()

    def book(self, book_id) -> (int, dict):
        r = get(urljoin(self.root, "books/" + quote(book_id, safe="")), {})
        return r.status_code, r.json()

    def picture(self, book_id, n) -> (int, bytes, str):
        """(status, body bytes, content type) of GET /books/<id>/pictures/<n>."""
        r = get(urljoin(self.root, f"books/{quote(book_id, safe='')}/pictures/{n}"), {})
        return r.status_code, r.content, r.headers.get("Content-Type", "")
