import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Run every periodic job once, in order (the beat schedule's list, settings.PERIODIC_JOBS, "
        "running the same Celery tasks in this process)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--only", action="append", default=[], help="Run only this job (repeatable)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names = [name for name, _, _ in settings.PERIODIC_JOBS]
        unknown = sorted(set(options["only"]) - set(names))
        if unknown:
            raise CommandError(f"Unknown job {', '.join(unknown)}; jobs: {', '.join(names)}.")
        failed = []
        for name, task, _ in settings.PERIODIC_JOBS:
            if options["only"] and name not in options["only"]:
                continue
            try:
                result = import_string(task)()
            except Exception as error:
                logger.exception("billing job %s failed", name)
                self.stderr.write(f"{name}: failed: {error}")
                failed.append(name)
            else:
                self.stdout.write(f"{name}: {result}")
        if failed:
            raise CommandError(f"{len(failed)} job(s) failed: {', '.join(failed)}.")
