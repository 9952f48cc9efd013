from urllib.parse import urljoin

from fe.access.client import post


class Auth:
    def __init__(self, url_prefix):
        self.url_prefix = urljoin(url_prefix, "auth/")

    def login(self, user_id: str, password: str, terminal: str) -> (int, str):
        r = post(urljoin(self.url_prefix, "login"),
                 {"user_id": user_id, "password": password, "terminal": terminal})
        return r.status_code, r.json().get("token")

    def register(self, user_id: str, password: str) -> int:
        r = post(urljoin(self.url_prefix, "register"), {"user_id": user_id, "password": password})
        return r.status_code

    def password(self, user_id: str, old_password: str, new_password: str) -> int:
        r = post(urljoin(self.url_prefix, "password"),
                 {"user_id": user_id, "oldPassword": old_password, "newPassword": new_password})
        return r.status_code

    def logout(self, user_id: str, token: str) -> int:
        r = post(urljoin(self.url_prefix, "logout"), {"user_id": user_id}, token)
        return r.status_code

    def unregister(self, user_id: str, password: str) -> int:
        r = post(urljoin(self.url_prefix, "unregister"), {"user_id": user_id, "password": password})
        return r.status_code
