"""Helpers every view uses: parse the request into a schema, reach the Backend,
shape the JSON reply."""
from flask import current_app, jsonify, request
from pydantic import ValidationError

from be import errors


def backend():
    return current_app.extensions["bookstore"]


def token():
    return request.headers.get("token", "")


def _bad(exc):
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "body"
    if first["type"] == "missing":
        return errors.BadRequest(f"missing field '{field}'")
    return errors.BadRequest(f"invalid field '{field}': {first['msg']}")


def body(schema):
    try:
        data = request.get_json(force=True, silent=True)
    except RecursionError:  # json.loads of a body nested thousands deep: not a 500
        raise errors.BadRequest("request body is nested too deeply")
    if not isinstance(data, dict):
        raise errors.BadRequest("request body must be a JSON object")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise _bad(exc)


def query(schema):
    try:
        return schema.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise _bad(exc)


def ok(**fields):
    return jsonify(message="ok", **fields), 200
