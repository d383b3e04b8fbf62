from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SeatsConfig(AppConfig):
    name = "seats"

    def ready(self) -> None:
        from organizations.rules import team_rule_register
        from seats import webhooks  # noqa: F401 - registers the seat webhook handlers
        from seats.plans import seat_plans_ensure
        from seats.services import seat_require_empty

        team_rule_register(seat_require_empty)
        # A test database flush (transactional tests) empties the plans the data migration
        # seeded; post_migrate follows every migrate and flush, as for content types.
        post_migrate.connect(seat_plans_ensure, sender=self, dispatch_uid="seat_plans_ensure")
