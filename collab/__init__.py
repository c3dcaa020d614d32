"""collab: a local small model and a remote large one, working as one."""

from collab.chat_model import CollabChatModel
from collab.policy import Policy

__all__ = ["CollabChatModel", "Policy"]
