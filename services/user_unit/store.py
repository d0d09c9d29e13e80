"""The user unit's tables and queries; the only module of the unit that speaks SQLAlchemy."""

import contextlib
import datetime
import uuid
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import request_ledger, utcnow
from services.user_unit.errors import UsernameTaken

_LIVE = "deleted_at IS NULL"


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData()


metadata = Base.metadata
request_ledger(metadata)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        sa.Index("ix_users_user_id", "user_id", unique=True),
        # Usernames are unique among live users only: a deleted user's name may be taken again.
        sa.Index(
            "ix_users_live_username",
            "username",
            unique=True,
            postgresql_where=sa.text(_LIVE),
            sqlite_where=sa.text(_LIVE),
        ),
    )

    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(36))
    username: Mapped[str] = mapped_column(sa.String(30))
    display_name: Mapped[str] = mapped_column(sa.String(100))
    profile: Mapped[str] = mapped_column(sa.Text)
    record_instructions: Mapped[bool] = mapped_column(sa.Boolean)
    created_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Users:
    """The live users seen through one transaction's session (service.Users)."""

    def __init__(self, session: orm.Session):
        self._session = session

    @staticmethod
    def _live() -> sa.Select[tuple[User]]:
        return sa.select(User).where(User.deleted_at.is_(None))

    def get(self, user_id: str) -> User | None:
        return self._session.scalars(self._live().where(User.user_id == user_id)).one_or_none()

    def get_by_username(self, username: str) -> User | None:
        return self._session.scalars(self._live().where(User.username == username)).one_or_none()

    def get_many(self, user_ids: Sequence[str]) -> list[User]:
        return list(self._session.scalars(self._live().where(User.user_id.in_(user_ids))))

    def page(self, after: int | None, limit: int) -> list[User]:
        query = self._live().order_by(User.seq).limit(limit)
        if after is not None:
            query = query.where(User.seq > after)
        return list(self._session.scalars(query))

    def add(self, username: str, display_name: str, profile: str) -> User:
        now = utcnow()
        user = User(
            user_id=str(uuid.uuid4()),
            username=username,
            display_name=display_name,
            profile=profile,
            record_instructions=False,
            created_at=now,
            updated_at=now,
        )
        self._session.add(user)
        self._session.flush()
        return user

    def change(self, user: User, **fields: object) -> User:
        changed = {name: value for name, value in fields.items() if getattr(user, name) != value}
        if changed:
            for name, value in changed.items():
                setattr(user, name, value)
            user.updated_at = utcnow()
            self._session.flush()
        return user

    def delete(self, user: User) -> None:
        user.deleted_at = user.updated_at = utcnow()
        self._session.flush()


@contextlib.contextmanager
def username_race(username: str | None) -> Iterator[None]:
    """Turns a lost race on the live-username index into USERNAME_TAKEN.

    Two writers can both pass the service's check before either commits; the
    index lets only one insert, and the other fails here instead of with INTERNAL.
    """
    try:
        yield
    except sa.exc.IntegrityError as error:
        if username is None or "username" not in str(error.orig):
            raise
        raise UsernameTaken(username) from error
