"""Users: the username and the scrypt hash string; hashing and verification are the API's job."""

from __future__ import annotations

from dataclasses import replace

from leoflow.domain.records import User
from leoflow.store.repos.base import Versioned
from leoflow.store.repos.entities import EntityRepository


class UserRepository(EntityRepository[User]):
    kind = "users"
    record_type = User
    id_field = "username"
    noun = "user"

    def set_password_hash(self, username: str, password_hash: str) -> Versioned[User]:
        """Replace the stored hash by compare-and-set (NotFound if the user does not exist)."""
        old = self.require(username)
        return self.update(old, replace(old.record, password_hash=password_hash))
