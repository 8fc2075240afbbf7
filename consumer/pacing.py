"""PURE: a client-side request rate that adapts to 429s (additive increase, multiplicative
decrease, as TCP does with its window).

Unlimited until the server first throttles; then the rate drops to half of what was being sent,
and after each further throttle halves again (at most once per `cooldown_s`, since the 429s of
one burst arrive together). Every second without a throttle adds `recovery_per_s` requests per
second; past `release_factor` times the rate that was throttled, the limit is lifted again.
The caller passes the clock, so this is deterministic under test.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AdaptiveRate"]


@dataclass(slots=True)
class AdaptiveRate:
    floor: float = 1.0  # requests per second, the lowest it ever goes
    recovery_per_s: float = 5.0  # requests per second regained per second of calm
    cooldown_s: float = 1.0
    release_factor: float = 2.0
    rate: float | None = None  # None: unlimited
    _next_slot: float = 0.0
    _throttled_rate: float = 0.0
    _last_cut: float = float("-inf")
    _last_gain: float = 0.0
    _window_start: float = 0.0
    _window_count: int = 0
    _observed: float = 0.0

    def reserve(self, now: float) -> float:
        """Book the next request; seconds to wait before sending it (0: at once)."""
        self._count(now)
        if self.rate is None:
            return 0.0
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1.0 / self.rate
        return slot - now

    def throttled(self, now: float) -> None:
        """The server answered 429."""
        if now - self._last_cut < self.cooldown_s:
            return
        current = self.rate if self.rate is not None else max(self._observed_rate(now), 1.0)
        self._throttled_rate = current
        self.rate = max(self.floor, current / 2.0)
        self._last_cut = now
        self._last_gain = now

    def succeeded(self, now: float) -> None:
        """A request went through; regain some rate for the calm time since the last gain."""
        if self.rate is None:
            return
        elapsed = now - self._last_gain
        if elapsed <= 0:
            return
        self._last_gain = now
        self.rate += self.recovery_per_s * elapsed
        if self.rate >= self._throttled_rate * self.release_factor:
            self.rate = None

    def _count(self, now: float) -> None:
        elapsed = now - self._window_start
        if elapsed >= 1.0:
            self._observed = self._window_count / elapsed
            self._window_start = now
            self._window_count = 0
        self._window_count += 1

    def _observed_rate(self, now: float) -> float:
        """Requests per second recently sent: the last full window, or the current one."""
        elapsed = now - self._window_start
        current = self._window_count / elapsed if elapsed >= 0.1 else 0.0
        return max(self._observed, current)
