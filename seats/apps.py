from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SeatsConfig(AppConfig):
    name = "seats"

    def ready(self) -> None:
        # Models are loaded only now; these modules need them.
        from organizations.rules import team_rule_register  # noqa: PLC0415
        from seats import webhooks  # noqa: F401, PLC0415 - registers the seat webhook handlers
        from seats.plans import seat_plans_ensure  # noqa: PLC0415
        from seats.services import seat_require_empty  # noqa: PLC0415

        team_rule_register(seat_require_empty)
        # A test database flush (transactional tests) empties the plans the data migration
        # seeded; post_migrate follows every migrate and flush, as for content types.
        post_migrate.connect(seat_plans_ensure, sender=self, dispatch_uid="seat_plans_ensure")
