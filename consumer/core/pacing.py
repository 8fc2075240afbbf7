"""A client-side request rate that adapts to 429s (additive increase, multiplicative
decrease, as TCP does with its window).

Unlimited until the server throttles a real share of the requests (more than `max_share` of
those sent in the last second or two: a stray 429 is left to the retry and its Retry-After, or
random throttling would starve the consumer). Then the rate drops to half of what was being
sent, and halves again at most once per `cooldown_s` while the share stays high. Every second
without a throttle adds `recovery_per_s` requests per second; past `release_factor` times the
rate that was throttled, the limit is lifted. The caller passes the clock, so this is
deterministic under test.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AdaptiveRate"]


@dataclass(slots=True)
class AdaptiveRate:
    floor: float = 1.0  # requests per second, the lowest it ever goes
    max_share: float = 0.25  # of recent requests throttled before the rate is cut
    min_requests: int = 50  # no verdict on fewer recent requests than this
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
    _window_throttled: int = 0
    _previous_count: int = 0
    _previous_throttled: int = 0
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
        self._window_throttled += 1
        sent = self._window_count + self._previous_count
        throttled = self._window_throttled + self._previous_throttled
        if sent < self.min_requests or throttled <= self.max_share * sent:
            return
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
            # Only the window just closed counts as "recent" with the open one.
            fresh = elapsed < 2.0
            self._previous_count = self._window_count if fresh else 0
            self._previous_throttled = self._window_throttled if fresh else 0
            self._window_start = now
            self._window_count = 0
            self._window_throttled = 0
        self._window_count += 1

    def _observed_rate(self, now: float) -> float:
        """Requests per second recently sent: the last full window, or the current one."""
        elapsed = now - self._window_start
        current = self._window_count / elapsed if elapsed >= 0.1 else 0.0
        return max(self._observed, current)
