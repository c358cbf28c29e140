"""Every ``web.AppKey`` of the app, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from collab.services import Services

SERVICES: web.AppKey[Services] = web.AppKey("services")
