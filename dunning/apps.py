from django.apps import AppConfig


class DunningConfig(AppConfig):
    name = "dunning"

    def ready(self) -> None:
        from dunning import receivers  # noqa: F401, PLC0415 - the lifecycle hears of every invoice change
