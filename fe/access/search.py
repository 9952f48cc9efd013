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

    def book(self, book_id, store_id=None) -> (int, dict):
        """GET /books/<id>: the book as most stores show it, or as ``store_id`` does."""
        r = get(urljoin(self.root, "books/" + quote(book_id, safe="")), _store(store_id))
        return r.status_code, r.json()

    def picture(self, book_id, n, store_id=None) -> (int, bytes, str):
        """(status, body bytes, content type) of GET /books/<id>/pictures/<n>."""
        r = get(urljoin(self.root, f"books/{quote(book_id, safe='')}/pictures/{n}"),
                _store(store_id))
        return r.status_code, r.content, r.headers.get("Content-Type", "")


def _store(store_id):
    return {} if store_id is None else {"store_id": store_id}
