"""The starting seat plans, kept present (like Django's content types): the data migration seeds
them, and after every `migrate` or test-database flush any that are missing are created again.
Staff edit them in the admin; to retire one, untick "is active" (a deleted one comes back)."""

from typing import Any

from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.db import DEFAULT_DB_ALIAS

STARTING_PLANS: list[dict[str, Any]] = [
    {
        "code": "teams",
        "name": "Teams",
        "description": "For teams: per-seat billing, shared credits, usage by member.",
        "unit_amount": 1800,
        "position": 1,
    },
    {
        "code": "enterprise",
        "name": "Enterprise",
        "description": "For larger organizations, with priority support.",
        "unit_amount": 7200,
        "position": 2,
    },
]


def seat_plans_ensure(
    *, apps: Apps | None = None, using: str = DEFAULT_DB_ALIAS, **kwargs: Any
) -> None:
    """Create the starting plans that are missing; never touches existing ones. Also the
    post_migrate receiver (hence `apps`, the migration state's registry, and `**kwargs`)."""
    if apps is None:
        apps = global_apps
    try:
        seat_plan = apps.get_model("seats", "SeatPlan")
    except LookupError:  # the seats tables are not migrated yet
        return
    for plan in STARTING_PLANS:
        seat_plan._default_manager.using(using).get_or_create(code=plan["code"], defaults=plan)
