from django import forms


class LifecycleReasonForm(forms.Form):
    """Staff's reason for a lifecycle action in the admin; it goes into the timeline and audit."""

    reason = forms.CharField(max_length=300, widget=forms.TextInput(attrs={"size": 60}))


class ExtendGraceForm(LifecycleReasonForm):
    days = forms.IntegerField(
        min_value=1,
        max_value=30,
        initial=3,
        help_text="Added to the current deadline (or to now, when suspended or already past).",
    )


class SuspendForm(LifecycleReasonForm):
    """Staff's suspension: the reason, shown to the customer, and whether the retention
    countdown starts (off by default: a staff suspension is not a non-payment)."""

    start_retention = forms.BooleanField(
        required=False,
        initial=False,
        label="Start the retention countdown",
        help_text="Delete the organization's data after BILLING_RETENTION_PERIOD unless it is "
        "restored or pays. Leave unticked to keep the data for as long as the suspension lasts.",
    )


class DeleteOrganizationForm(forms.Form):
    confirm_name = forms.CharField(
        label="Type the organization's name to confirm", max_length=100, strip=True
    )

    def __init__(self, *args: object, organization_name: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.organization_name = organization_name

    def clean_confirm_name(self) -> str:
        value: str = self.cleaned_data["confirm_name"]
        if value != self.organization_name:
            raise forms.ValidationError("That is not the organization's name.")
        return value
