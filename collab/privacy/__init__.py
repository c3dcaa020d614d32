"""Sensitive data: found on this machine, replaced in what leaves, restored in what returns."""

from collab.privacy.detect import Detector, Finding
from collab.privacy.gate import RemoteGate
from collab.privacy.kinds import KINDS, Kind, check_kinds
from collab.privacy.vault import Vault

__all__ = ["KINDS", "Detector", "Finding", "Kind", "RemoteGate", "Vault", "check_kinds"]
