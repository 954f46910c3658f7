import asyncio
from dataclasses import dataclass
from typing import Any

from asignals import AsyncSignal, receiver

user_saved = AsyncSignal("user_saved", doc="Payload: user, created.")


@dataclass
class User:
    username: str
    id: int | None = None


class UserStore:
    """Stands in for your database layer."""

    def __init__(self) -> None:
        self.rows: dict[int, User] = {}

    async def save(self, user: User) -> list[tuple[Any, Any]]:
        created = user.id is None
        if user.id is None:
            user.id = len(self.rows) + 1
        self.rows[user.id] = user
        return await user_saved.send(User, user=user, created=created)


profiles: dict[int, dict[str, str]] = {}


@receiver(user_saved, sender=User)
async def create_profile(
    sender: type[User], user: User, created: bool, **kwargs: Any
) -> str:
    if not created or user.id is None:
        return "nothing to do"
    profiles[user.id] = {"display_name": user.username.title()}
    return "profile created"


async def main() -> None:
    store = UserStore()
    alice = User("alice")

    results = await store.save(alice)  # the first save creates the user
    print([(func.__name__, response) for func, response in results])

    alice.username = "alice_w"
    results = await store.save(alice)  # the second save updates it
    print([(func.__name__, response) for func, response in results])

    print(profiles)


asyncio.run(main())
