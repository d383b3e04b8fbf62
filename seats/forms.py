from datetime import UTC, datetime
from typing import Any

from django import forms

from seats.models import MAX_SEATS, SeatPlan
from seats.selectors import Occupancy, seat_plans
from seats.services import PreviewTerms


class SeatCountField(forms.IntegerField):
    """A whole number of seats from 1 to MAX_SEATS, with messages that say how to fix it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", "Seats")
        super().__init__(
            min_value=1,
            max_value=MAX_SEATS,
            error_messages={
                "required": "Enter a number of seats.",
                "invalid": "Enter a whole number of seats, such as 3.",
                "min_value": "Enter at least 1 seat.",
                "max_value": f"Enter at most {MAX_SEATS:,} seats.",
            },
            **kwargs,
        )


class _Timestamp(forms.IntegerField):
    widget = forms.HiddenInput

    def __init__(self) -> None:
        super().__init__(min_value=0, max_value=2**40)

    def clean(self, value: Any) -> datetime:
        seconds = super().clean(value)
        return datetime.fromtimestamp(seconds, tz=UTC)


class PurchaseForm(forms.Form):
    plan = forms.ModelChoiceField(
        queryset=SeatPlan.objects.none(),
        to_field_name="code",
        empty_label=None,
        widget=forms.RadioSelect,
        error_messages={"invalid_choice": "Choose one of the plans shown."},
    )
    seats = SeatCountField()

    def __init__(self, *args: Any, occupied: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.occupied = occupied
        self.fields["plan"].queryset = seat_plans()  # type: ignore[attr-defined]
        self.fields[
            "seats"
        ].help_text = (
            f"At least {max(occupied, 1)}: the members and open invitations that need a seat."
        )

    def clean_seats(self) -> int:
        seats: int = self.cleaned_data["seats"]
        if seats < self.occupied:
            raise forms.ValidationError(
                f"{self.occupied} people and open invitations need a seat: buy at least "
                f"{self.occupied}."
            )
        return seats


class PurchaseConfirmForm(PurchaseForm):
    key = forms.UUIDField(widget=forms.HiddenInput)


class AddForm(forms.Form):
    seats = SeatCountField(label="Seats to add")


class AddConfirmForm(AddForm):
    """The preview's terms come back with the confirmation, to detect a stale preview."""

    key = forms.UUIDField(widget=forms.HiddenInput)
    proration_date = _Timestamp()
    period_end = _Timestamp()
    unit_amount = forms.IntegerField(widget=forms.HiddenInput, min_value=1)

    def terms(self) -> PreviewTerms:
        return PreviewTerms(
            proration_date=self.cleaned_data["proration_date"],
            period_end=self.cleaned_data["period_end"],
            unit_amount=self.cleaned_data["unit_amount"],
        )


class RemoveForm(forms.Form):
    seats = SeatCountField(label="Empty seats to remove")

    def __init__(self, *args: Any, occupancy: Occupancy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.occupancy = occupancy

    def clean_seats(self) -> int:
        seats: int = self.cleaned_data["seats"]
        subscription = self.occupancy.subscription
        if subscription is not None and subscription.quantity - seats < 1:
            raise forms.ValidationError(
                "A subscription keeps at least one seat; to stop paying for seats, cancel it."
            )
        return seats

    @property
    def too_many(self) -> bool:
        """More seats asked for than are empty (the page then names who holds them)."""
        return self.is_valid() and self.cleaned_data["seats"] > self.occupancy.empty


class RemoveConfirmForm(RemoveForm):
    key = forms.UUIDField(widget=forms.HiddenInput)
