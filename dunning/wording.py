"""How the lifecycle's emails and pages say a length of time."""

from datetime import timedelta


def _part(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"


def duration_text(delta: timedelta) -> str:
    """A time left in words, rounded down (there is never less time than it says), with the
    email's exact deadline beside it: "2 days and 3 hours", "23 hours and 55 minutes"."""
    minutes = max(int(delta.total_seconds()) // 60, 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        parts = [_part(days, "day")] + ([_part(hours, "hour")] if hours else [])
    elif hours:
        parts = [_part(hours, "hour")] + ([_part(minutes, "minute")] if minutes else [])
    elif minutes:
        parts = [_part(minutes, "minute")]
    else:
        return "less than a minute"
    return " and ".join(parts)
