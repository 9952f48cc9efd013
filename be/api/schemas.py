"""Request shapes. Strict: a number sent as a string, a boolean as a count or a
float as cents is refused with 400 naming the field; unknown fields are ignored."""
from typing import Annotated, NamedTuple, Optional

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StringConstraints,
                      ValidationError, WrapValidator)
from pydantic_core import PydanticCustomError

from be.model.lifecycle import STATES
from be.model.stores import MAX_BATCH, MAX_ID_PAGE

# Ids are stored as values only (never as field names), so '.', '$' and spaces are
# harmless; control characters and absurd lengths are refused.
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
Password = Annotated[str, StringConstraints(max_length=1024)]
TEXT_CHARS = 1_000_000


def _text_length(value):
    """A long text's length limit, checked with ``len`` (constant time): pydantic's
    own ``max_length`` counts the characters of a non-ASCII string one by one, 5-7
    ms per 1,000,000 CJK characters with the interpreter held (an add_book of 11
    such texts: 84 ms of validation against 1 ms). Same error as max_length's."""
    if len(value) > TEXT_CHARS:
        raise PydanticCustomError("string_too_long",
                                  "String should have at most {max_length} characters",
                                  {"max_length": TEXT_CHARS})
    return value


Text = Optional[Annotated[str, AfterValidator(_text_length)]]


def _in_cents(value, handler):
    """Money fields: a value that is not an integer (23.5, "2350") gets a message
    that says money is counted in integer cents, not pydantic's bare "should be a
    valid integer". Range errors pass unchanged."""
    try:
        return handler(value)
    except ValidationError as exc:
        if exc.errors()[0]["type"] != "int_type":
            raise
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise PydanticCustomError(
            "cents", "money is a whole number of cents (23.50 is 2350), got {shown}",
            {"shown": shown})


def describe(exc):
    """The message of a 400 for a ValidationError: its first error, naming the field."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "body"
    if first["type"] == "missing":
        return f"missing field '{field}'"
    return f"invalid field '{field}': {first['msg']}"


Cents = Annotated[int, Field(ge=0, le=10**12), WrapValidator(_in_cents)]
Funds = Annotated[int, Field(ge=-10**12, le=10**12), WrapValidator(_in_cents)]
Count = Annotated[int, Field(ge=1, le=10**6)]


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class Credentials(Body):
    user_id: Id
    password: Password


class Login(Credentials):
    terminal: Annotated[str, StringConstraints(max_length=256)]


class ChangePassword(Body):
    user_id: Id
    oldPassword: Password
    newPassword: Password


class UserOnly(Body):
    user_id: Id


class StoreRef(Body):
    user_id: Id
    store_id: Id


class BookInfo(Body):
    id: Id
    title: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    author: Text = None
    publisher: Text = None
    original_title: Text = None
    translator: Text = None
    pub_year: Text = None
    pages: Optional[Annotated[int, Field(ge=0, le=10**7)]] = None
    price: Optional[Cents] = None
    currency_unit: Text = None
    binding: Text = None
    isbn: Text = None
    author_intro: Text = None
    book_intro: Text = None
    content: Text = None
    tags: Optional[list[Annotated[str, StringConstraints(max_length=256)]]] = None
    pictures: Optional[list[str]] = None


class AddBook(StoreRef):
    book_info: BookInfo
    stock_level: Annotated[int, Field(ge=0, le=10**9)]


class BookItem(Body):
    """One book of add_books: what add_book takes besides the user and the store."""
    book_info: BookInfo
    stock_level: Annotated[int, Field(ge=0, le=10**9)]


class Refused(NamedTuple):
    """An element of add_books' ``books`` that is not a valid BookItem: its 400
    message (fields named as add_book names them) and its book id if it has one."""
    book_id: Optional[str]
    message: str


def _item_or_refused(value, handler):
    """add_books refuses a bad element alone (a Refused in its place), not the batch."""
    if not isinstance(value, dict):
        return Refused(None, 'not an object: each element of books is '
                             '{"book_info": {...}, "stock_level": n}')
    try:
        return handler(value)
    except ValidationError as exc:
        book_id = value.get("book_info")
        book_id = book_id.get("id") if isinstance(book_id, dict) else None
        return Refused(book_id if isinstance(book_id, str) else None, describe(exc))


class AddBooks(StoreRef):
    books: Annotated[list[Annotated[BookItem, WrapValidator(_item_or_refused)]],
                     Field(min_length=1, max_length=MAX_BATCH)]


class UpdateBook(StoreRef):
    book_info: BookInfo


class ListingRef(StoreRef):
    book_id: Id


class AddStock(ListingRef):
    add_stock_level: Annotated[int, Field(ge=0, le=10**9)]


class SetStock(ListingRef):
    stock_level: Annotated[int, Field(ge=0, le=10**9)]


class SetPrice(ListingRef):
    price: Cents


class Line(Body):
    id: Id
    count: Count


class NewOrder(StoreRef):
    books: Annotated[list[Line], Field(min_length=1, max_length=1000)]


class Payment(Body):
    user_id: Id
    order_id: Id
    password: Password


class AddFunds(Body):
    user_id: Id
    password: Password
    add_value: Funds


class OrderRef(Body):
    user_id: Id
    order_id: Id


class Query(BaseModel):
    """Query-string parameters arrive as text, so numbers are parsed from it."""
    model_config = ConfigDict(extra="ignore")


class PageQuery(Query):
    page: Annotated[int, Field(ge=1, le=10**6)] = 1
    page_size: Annotated[int, Field(ge=1, le=100)] = 20


class UserQuery(Query):
    user_id: Id


def _cursor(value):
    """A list's ``after``: empty means absent (the first page)."""
    return value or None


class CursorQuery(PageQuery):
    """A list paged by cursor (``after``: a reply's ``next``) or, over its first
    rows, by page number (be.model.paging)."""
    after: Annotated[Optional[Annotated[str, StringConstraints(max_length=1024)]],
                     AfterValidator(_cursor)] = None


def _state(value):
    """An order list's state filter: empty means all; else one of the lifecycle's."""
    if value in (None, ""):
        return None
    if value not in STATES:
        raise PydanticCustomError("state", "must be one of {states}",
                                  {"states": ", ".join(STATES)})
    return value


class OrdersQuery(CursorQuery, UserQuery):
    state: Annotated[Optional[str], AfterValidator(_state)] = None
    store_id: Optional[Id] = None


class BooksQuery(CursorQuery, UserQuery):
    store_id: Id
    on_sale: Optional[bool] = None  # "true"/"false": only listings on (off) sale


class BookIdsQuery(UserQuery):
    store_id: Id
    page_size: Annotated[int, Field(ge=1, le=MAX_ID_PAGE)] = 1000
    after: Annotated[Optional[Annotated[str, StringConstraints(max_length=1024)]],
                     AfterValidator(_cursor)] = None


class ListingQuery(Query):
    """``?store_id=`` on the book reads: that store's listing of the book."""
    store_id: Optional[Id] = None
