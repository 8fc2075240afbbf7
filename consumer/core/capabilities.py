"""What a Mem0 backend can do, as far as planning and calling it are concerned.

Both sides read these: the planner decides from them which operations a flush becomes, and each
Mem0 client declares its backend's with them (and may narrow them: ERASE_USER_ENTITY=false).
They live apart from both so that the client does not import the planner to say what it is.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OSS", "PLATFORM", "Capabilities"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a Mem0 backend can do, as far as planning is concerned."""

    max_batch: int = 1000
    # The self-hosted server ANDs several identifiers in one delete_all; the Platform's docs warn
    # that it may not, so there a compound scope is resolved to ids instead.
    and_delete_all: bool = False
    # The self-hosted server filters by user, agent and run only.
    app_id_and_metadata: bool = True
    # Mem0 generates every memory id as a UUID, on both backends; anything else names no
    # memory (the Platform answers 400, the self-hosted default store 502 `unknown`).
    uuid_ids: bool = True
    # Without a batch endpoint, explicit ids fan out to single deletes.
    batch_endpoint: bool = True
    # The Platform keeps an entity record per user (GET /v1/entities/), personal data of its
    # own: a user erasure deletes it too (ERASE_USER_ENTITY turns that off).
    user_entities: bool = True


PLATFORM = Capabilities()
OSS = Capabilities(
    and_delete_all=True, app_id_and_metadata=False, batch_endpoint=False, user_entities=False
)
