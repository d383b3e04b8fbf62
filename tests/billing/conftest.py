# The billing worlds' fixture that runs an action to its end (commit, deliver, process, send).
from tests.invoices.conftest import step  # noqa: F401
