"""HTTP API and web page (``vramplan serve``) and the request rules they share with MCP.

``service`` is stdlib-only (request limits, validation, the calls into ``vramplan.api``);
``app`` is the FastAPI application (needs the ``web`` extra); ``static/`` is the page.
"""
