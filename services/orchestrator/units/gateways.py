"""The four units as the orchestrator's handlers and pipeline see them: one gateway each, built once."""

from __future__ import annotations

import dataclasses

from services.orchestrator.units.channels import UnitChannels
from services.orchestrator.units.chats import ChatGateway
from services.orchestrator.units.deadlined import DeadlinedStub
from services.orchestrator.units.keys import KEY_TTL_S, KeyGateway
from services.orchestrator.units.ledger import Ledger
from services.orchestrator.units.models import MODEL_TTL_S, ModelGateway
from services.orchestrator.units.users import UserGateway


@dataclasses.dataclass(frozen=True)
class Units:
    """Shared by every instruction in flight; holds the joined calls and short-lived caches."""

    users: UserGateway
    chats: ChatGateway
    models: ModelGateway
    # Instruction records (RecordService's Create/List/DeleteRecords).
    records: DeadlinedStub
    ledger: Ledger
    # Caller keys (on user_unit).
    keys: KeyGateway

    @classmethod
    def over(cls, channels: UnitChannels, model_ttl_s: float = MODEL_TTL_S, key_ttl_s: float = KEY_TTL_S) -> "Units":
        return cls(
            users=UserGateway(channels.users),
            chats=ChatGateway(channels.chats),
            models=ModelGateway(channels.llms, model_ttl_s),
            records=DeadlinedStub(channels.records),
            ledger=Ledger(channels.records),
            keys=KeyGateway(channels.users, key_ttl_s),
        )
