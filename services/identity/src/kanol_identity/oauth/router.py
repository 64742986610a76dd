"""Every route of the authorisation server's machine side, for the app to include."""

from __future__ import annotations

from fastapi import APIRouter

from kanol_identity.oauth import endpoints, metadata

router = APIRouter()
router.include_router(endpoints.router)
router.include_router(metadata.router)
