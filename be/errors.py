"""Business errors. Each carries the HTTP status of the classic contract and a
message; the API layer turns them into ``{"message": ...}`` replies."""


class BookstoreError(Exception):
    code = 500
    template = "internal error"

    def __init__(self, *args):
        self.message = self.template.format(*args)
        super().__init__(self.message)


class StartupError(Exception):
    """The server or the watcher cannot start (database unreachable, port taken):
    the entry points print the message as one line and exit with status 2."""


def _error(name, code, template):
    return type(name, (BookstoreError,), {"code": code, "template": template})


BadRequest = _error("BadRequest", 400, "{}")
AuthorizationFailed = _error("AuthorizationFailed", 401, "authorization fail.")
NoSuchUser = _error("NoSuchUser", 511, "non exist user id {}")
UserExists = _error("UserExists", 512, "exist user id {}")
NoSuchStore = _error("NoSuchStore", 513, "non exist store id {}")
StoreExists = _error("StoreExists", 514, "exist store id {}")
NoSuchBook = _error("NoSuchBook", 515, "non exist book id {}")
BookExists = _error("BookExists", 516, "exist book id {}")
StockTooLow = _error("StockTooLow", 517, "stock level low, book id {}")
NoSuchOrder = _error("NoSuchOrder", 518, "invalid order id {}")
FundsTooLow = _error("FundsTooLow", 519, "not sufficient funds: {}")
BadOrderState = _error("BadOrderState", 520, "order {} is {}: {}")
OrderExpired = _error("OrderExpired", 521, "order {} expired: its payment window has closed")
Busy = _error("Busy", 503, "order {} is being changed by another request; retry")
ListingBusy = _error("ListingBusy", 503, "the listing of book {} is being changed by other "
                                         "requests; retry")
# the embedded engine could not make a change durable before the reply (be.embedded.journal)
NotDurable = _error("NotDurable", 503, "{}")


class TooManyAttempts(BookstoreError):
    """429: too many wrong passwords for this account or from this address; the
    reply's Retry-After header says when to try again (be.model.throttle)."""
    code = 429
    template = "too many failed password attempts; retry after {} s"

    def __init__(self, retry_after):
        super().__init__(retry_after)
        self.retry_after = retry_after


# Idempotency keys (be.model.idempotency): the key was used for another request,
# or its first request has not answered yet.
KeyConflict = _error("KeyConflict", 409, "{}")
