"""``collab serve``: the workflows behind an OpenAI-compatible HTTP endpoint and a web chat."""

from collab.server.app import create_app
from collab.server.background import BackgroundServer
from collab.server.protocol import Limits
from collab.server.setup import default_workflows
from collab.server.workflows import Workflow, workflows_for

__all__ = [
    "BackgroundServer",
    "Limits",
    "Workflow",
    "create_app",
    "default_workflows",
    "workflows_for",
]
