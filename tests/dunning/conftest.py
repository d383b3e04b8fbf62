"""The lifecycle's tests run in the billing worlds of tests/invoices."""

from tests.invoices.conftest import _empty_outbox, step  # noqa: F401 - fixtures
