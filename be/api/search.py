"""Book search and book details (issue 5): no token needed. ``?store_id=`` on
the book reads shows that store's listing (issue 12)."""
from typing import Annotated, Optional

from flask import Blueprint, abort
from pydantic import StringConstraints

from be.api.common import backend, ok, parsed, query, searching
from be.api.schemas import Id, ListingQuery, PageQuery
from be.model import search

bp = Blueprint("search", __name__)


class SearchQuery(PageQuery):
    q: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                        max_length=search.MAX_QUERY_CHARS)]
    fields: Optional[str] = None  # comma-separated; checked by search.parse_fields
    store_id: Optional[Id] = None


@bp.get("/search/books")
@searching
@parsed(SearchQuery, query)
def search_books(a):
    hits, total, capped = search.search(backend(), a.q, a.fields, a.store_id, a.page,
                                        a.page_size)
    return ok(books=hits, total=total, total_is_lower_bound=capped, page=a.page,
              page_size=a.page_size)


@bp.get("/books/<book_id>")
@parsed(ListingQuery, query)
def get_book(a, book_id):
    return ok(book=search.get_book(backend(), book_id, a.store_id))


@bp.get("/books/<book_id>/pictures/<int:n>")
@parsed(ListingQuery, query)
def get_picture(a, book_id, n):
    picture = search.get_picture(backend(), book_id, n, a.store_id)
    if picture is None:
        where = f" in store {a.store_id}" if a.store_id is not None else ""
        abort(404, description=f"book {book_id}{where} has no picture {n}")
    data, content_type = picture
    return data, 200, {"Content-Type": content_type}
