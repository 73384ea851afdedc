"""The fake server's authorization state: device flows, refresh-token families, JWTs.

Every method takes the current time as arguments (wall time for expiries and JWT
``exp``, monotonic time for poll pacing), so the rules read as a table and tests can
drive them with a FakeClock.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ._jwt_signer import Es256Signer

__all__ = ["AuthState", "DeviceFlow", "Outcome", "normalize_user_code"]

_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1: no vowels, no look-alikes
_SLOW_DOWN_STEP = 5.0
# Arrival gaps are measured on the server; a client that waited exactly ``interval``
# must not be punished for float rounding.
_PACING_TOLERANCE = 1e-3
_FORGET_AFTER = 3600.0

REFRESH_MODES = ("present", "missing", "null", "empty")


def normalize_user_code(text: str) -> Optional[str]:
    """``wdjb mqxr`` / ``WDJBMQXR`` -> ``WDJB-MQXR``; None when it cannot be a code."""
    letters = "".join(ch for ch in text.upper() if ch not in "- \t")
    if len(letters) != 8 or any(ch not in _USER_CODE_ALPHABET for ch in letters):
        return None
    return f"{letters[:4]}-{letters[4:]}"


def _digest(secret: str) -> str:
    # Secrets are kept only as digests, so no dump of the state ever shows one.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass
class DeviceFlow:
    """One device authorization. Mutable; guarded by the server's lock."""

    user_code: str
    expires_at: float
    interval: float
    seq: int
    state: str = "pending"  # pending | approved | denied | redeemed
    last_poll: Optional[float] = None

    def __repr__(self) -> str:
        return f"DeviceFlow(user_code={self.user_code!r}, state={self.state!r})"


@dataclass(frozen=True)
class Outcome:
    """What a token or refresh request ends in: an error code, or a token pair."""

    error: Optional[str] = None
    access_token: str = field(default="", repr=False)
    refresh_token: Optional[str] = field(default=None, repr=False)


@dataclass
class _Family:
    """Every refresh token descended from one login, and the access tokens issued to it."""

    live: Optional[str] = None  # digest of the one refresh token that still works
    spent: set[str] = field(default_factory=set)
    jtis: set[str] = field(default_factory=set)
    revoked: bool = False


class AuthState:
    """Device flows, token families and revocation. Not thread-safe: callers hold a lock.

    Refresh tokens rotate (RFC 9700 §4.14.2): each successful refresh kills the token
    presented. Presenting a spent token again is treated as theft when
    ``reuse_detection`` is on: the whole family is revoked (and its access tokens too
    when ``revoke_access_on_reuse``).
    """

    def __init__(self, *, user_id: str) -> None:
        self.user_id = user_id
        self.signer = Es256Signer()
        self.access_token_lifetime = 900.0
        self.device_code_lifetime = 600.0
        self.interval = 5.0
        self.reuse_detection = True
        self.revoke_access_on_reuse = False
        self.refresh_token_mode = "present"
        self._flows: dict[str, DeviceFlow] = {}  # by device_code digest
        self._by_user_code: dict[str, str] = {}  # user_code -> device_code digest
        self._families: list[_Family] = []
        self._family_of_refresh: dict[str, int] = {}
        self._revoked_jtis: set[str] = set()
        self.reuses = 0
        """Refresh tokens presented again after they were rotated (each one revokes)."""
        self._seq = 0

    # -- device flow -------------------------------------------------------------------

    def start_flow(self, now: float) -> tuple[str, DeviceFlow]:
        """Creates a flow; returns its device_code and the flow."""
        self._forget_old_flows(now)
        while True:
            letters = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
            user_code = f"{letters[:4]}-{letters[4:]}"
            if user_code not in self._by_user_code:
                break
        device_code = secrets.token_urlsafe(32)
        self._seq += 1
        flow = DeviceFlow(user_code, now + self.device_code_lifetime, self.interval, self._seq)
        self._flows[_digest(device_code)] = flow
        self._by_user_code[user_code] = _digest(device_code)
        return device_code, flow

    def poll(self, device_code: str, now: float, mono: float) -> Outcome:
        """One ``/auth/device/token`` poll.

        An unknown or already redeemed code answers ``expired_token``: the real server
        keeps flows in a store with a lifetime and deletes a flow once redeemed, so it
        cannot tell those apart from expiry, and for a client all three mean "start over".
        """
        flow = self._flows.get(_digest(device_code))
        if flow is None or flow.state == "redeemed" or now >= flow.expires_at:
            return Outcome("expired_token")
        previous, flow.last_poll = flow.last_poll, mono
        if previous is not None and mono - previous + _PACING_TOLERANCE < flow.interval:
            flow.interval += _SLOW_DOWN_STEP
            return Outcome("slow_down")
        if flow.state == "denied":
            return Outcome("access_denied")
        if flow.state == "pending":
            return Outcome("authorization_pending")
        flow.state = "redeemed"
        access, refresh = self.issue_login(now)
        return Outcome(None, access, refresh)

    def decide(self, user_code: str, approve: bool, now: float) -> Optional[str]:
        """Approves or denies a user code; returns None or the error code."""
        code = normalize_user_code(user_code)
        digest = self._by_user_code.get(code) if code else None
        flow = self._flows.get(digest) if digest else None
        if flow is None:
            return "invalid_user_code"
        if flow.state != "pending":
            return "user_code_already_used"
        if now >= flow.expires_at:
            return "expired_user_code"
        flow.state = "approved" if approve else "denied"
        return None

    def pending(self, now: float) -> list[DeviceFlow]:
        """Live flows awaiting a decision, oldest first."""
        flows = [f for f in self._flows.values() if f.state == "pending" and now < f.expires_at]
        return sorted(flows, key=lambda f: f.seq)

    def _forget_old_flows(self, now: float) -> None:
        for digest, flow in list(self._flows.items()):
            if now - flow.expires_at > _FORGET_AFTER:
                del self._flows[digest]
                self._by_user_code.pop(flow.user_code, None)

    # -- tokens ------------------------------------------------------------------------

    def issue_login(self, now: float) -> tuple[str, str]:
        """Starts a new token family (a login); returns (access, refresh)."""
        self._families.append(_Family())
        index = len(self._families) - 1
        refresh = self._new_refresh(index)
        return self._new_access(index, now), refresh

    def refresh(self, refresh_token: str, now: float) -> Outcome:
        """One ``/auth/refresh-mobile``; the error is always ``invalid_grant``."""
        digest = _digest(refresh_token)
        index = self._family_of_refresh.get(digest)
        if index is None:
            return Outcome("invalid_grant")
        family = self._families[index]
        if family.revoked:
            return Outcome("invalid_grant")
        if family.live != digest:
            if digest in family.spent:
                self.reuses += 1
            if self.reuse_detection:
                self._revoke_family(index, access=self.revoke_access_on_reuse)
            return Outcome("invalid_grant")
        access = self._new_access(index, now)
        if self.refresh_token_mode != "present":
            # A server that sends no new refresh token has not rotated the old one.
            return Outcome(None, access, None)
        family.spent.add(digest)
        return Outcome(None, access, self._new_refresh(index))

    def verify_access(self, token: str, now: float) -> Optional[str]:
        """The ``sub`` of a valid, unexpired, unrevoked access token; else None."""
        payload = self.signer.verify(token)
        if payload is None:
            return None
        exp, sub, jti = payload.get("exp"), payload.get("sub"), payload.get("jti")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            return None
        if not math.isfinite(exp) or now >= exp:
            return None
        if not isinstance(sub, str) or not sub:
            return None
        if isinstance(jti, str) and jti in self._revoked_jtis:
            return None
        return sub

    def make_jwt(self, payload: Mapping[str, Any]) -> str:
        """Signs an arbitrary payload with the live key."""
        return self.signer.sign(payload)

    def revoke_all(self) -> None:
        """Every token issued so far stops working; flows are untouched."""
        for index in range(len(self._families)):
            self._revoke_family(index, access=True)
        self.signer.rotate()  # also kills make_jwt tokens, which belong to no family

    def _revoke_family(self, index: int, *, access: bool) -> None:
        family = self._families[index]
        family.revoked = True
        family.live = None
        if access:
            self._revoked_jtis.update(family.jtis)

    def _new_refresh(self, index: int) -> str:
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        self._family_of_refresh[digest] = index
        self._families[index].live = digest
        return token

    def _new_access(self, index: int, now: float) -> str:
        jti = str(uuid.uuid4())
        self._families[index].jtis.add(jti)
        end = now + self.access_token_lifetime
        # Whole seconds, as the real server writes them; a sub-second lifetime (fast
        # tests) keeps its fraction so the token does not expire at once.
        exp: float = math.floor(end) if self.access_token_lifetime >= 1 else end
        payload = {"sub": self.user_id, "iat": math.floor(now), "exp": exp, "jti": jti}
        return self.signer.sign(payload)

    def __repr__(self) -> str:
        return f"AuthState(flows={len(self._flows)}, logins={len(self._families)})"
